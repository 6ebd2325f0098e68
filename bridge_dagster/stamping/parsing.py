"""Finding and reading the stamps in content. Malformed stamps are reported, never raised."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from bridge_dagster.stamping.canonical import LIGHTWEIGHT_MARKER, RICH_END, RICH_START
from bridge_dagster.stamping.stamps import StampType

_HASH = re.compile(r"[0-9a-f]{64}")
_LIGHTWEIGHT_FIELDS_AT = len("# ONEX:")
_LIGHTWEIGHT_REQUIRED = ("uid", "hash", "ts")
_RICH_REQUIRED = ("uid", "hash", "timestamp", "integrity.algorithm", "integrity.hash")
_SHOWN_CHARS = 40


@dataclass(frozen=True)
class ParsedStamp:
    """A stamp as found in content: its fields, where it is, and what is wrong with it."""

    stamp_type: StampType
    text: str
    start: int
    end: int
    fields: Mapping[str, str]
    problems: tuple[str, ...]

    @property
    def well_formed(self) -> bool:
        return not self.problems

    @property
    def stamp_id(self) -> str | None:
        return self.fields.get("uid")

    @property
    def file_hash(self) -> str | None:
        return self.fields.get("hash")


def find_stamps(content: str) -> list[ParsedStamp]:
    """Every lightweight stamp and rich block in `content`, in order of position."""
    stamps = [*_lightweight_stamps(content), *_rich_stamps(content)]
    return sorted(stamps, key=lambda stamp: stamp.start)


def _lightweight_stamps(content: str) -> list[ParsedStamp]:
    found = []
    position = 0
    while (start := content.find(LIGHTWEIGHT_MARKER, position)) >= 0:
        end = content.find("\n", start)
        end = len(content) if end < 0 else end
        text = content[start:end]
        fields, problems = _lightweight_fields(text.rstrip("\r")[_LIGHTWEIGHT_FIELDS_AT:])
        problems += _field_problems(fields, _LIGHTWEIGHT_REQUIRED, time_key="ts")
        found.append(ParsedStamp("lightweight", text, start, end, fields, tuple(problems)))
        position = end
    return found


def _rich_stamps(content: str) -> list[ParsedStamp]:
    found = []
    position = 0
    while (start := content.find(RICH_START, position)) >= 0:
        close = content.find(RICH_END, start + len(RICH_START))
        if close < 0:
            break
        end = close + len(RICH_END)
        fields, problems = _rich_fields(content[start + len(RICH_START) : close])
        problems += _field_problems(fields, _RICH_REQUIRED, time_key="timestamp")
        problems += _integrity_problems(fields)
        found.append(ParsedStamp("rich", content[start:end], start, end, fields, tuple(problems)))
        position = end
    return found


def _lightweight_fields(text: str) -> tuple[dict[str, str], list[str]]:
    fields: dict[str, str] = {}
    problems = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(f"{_shown(item)} is not key=value")
        elif key in fields:
            problems.append(f"{_shown(key)} appears twice")
        else:
            fields[key] = value
    return fields, problems


def _rich_fields(block: str) -> tuple[dict[str, str], list[str]]:
    fields: dict[str, str] = {}
    problems = []
    section = None
    for number, raw in enumerate(block.split("\n")):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        key, sep, value = line.strip().partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            problems.append(f"line {number} {_shown(line)} is not key: value")
            continue
        indented = line[0] in " \t"
        if indented and section is None:
            problems.append(f"line {number} is indented outside a section")
            continue
        name = f"{section}.{key}" if indented else key
        if not indented:
            # A key with no value may open a section, such as "integrity:".
            section = key if not value else None
        if name in fields:
            problems.append(f"{_shown(name)} appears twice")
        else:
            fields[name] = value
    return fields, problems


def _field_problems(
    fields: Mapping[str, str], required: tuple[str, ...], time_key: str
) -> list[str]:
    problems = [f"{key} is missing" for key in required if key not in fields]
    if "uid" in fields and not _is_uuid(fields["uid"]):
        problems.append(f"uid {_shown(fields['uid'])} is not a UUID")
    if "hash" in fields and not _HASH.fullmatch(fields["hash"]):
        problems.append(f"hash {_shown(fields['hash'])} is not 64 lowercase hex characters")
    if time_key in fields and not _is_timestamp(fields[time_key]):
        problems.append(f"{time_key} {_shown(fields[time_key])} is not an ISO-8601 time")
    return problems


def _integrity_problems(fields: Mapping[str, str]) -> list[str]:
    problems = []
    algorithm = fields.get("integrity.algorithm")
    if algorithm is not None and algorithm != "BLAKE3":
        problems.append(f"integrity algorithm {_shown(algorithm)} is not BLAKE3")
    if fields.get("integrity.hash", fields.get("hash")) != fields.get("hash"):
        problems.append("integrity hash differs from hash")
    return problems


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _is_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")
