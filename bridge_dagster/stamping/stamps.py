"""Creating ONEX stamps: the lightweight line and the rich block.

Lightweight stamp, one line prepended to the content::

    # ONEX:uid=<uuid4>,hash=<blake3 hex>,ts=<ISO-8601 UTC>[,author=…][,v=…]

Rich stamp, a block appended after a blank line. Inside the markers every line is
``key: value``; ``integrity:`` opens a subsection whose lines are indented by two spaces.
An unknown file path is an empty value; author and version appear only when given::

    <!-- ONEX_METADATA_START -->
    uid: 0b6f7d2e-1c4a-4c59-9e0e-6c1d3f1f2a10
    hash: <blake3 hex>
    timestamp: 2025-01-31T12:00:00.000000Z
    protocol_version: 1.0
    file_path: src/app.py
    file_size: 1234
    content_type: text/x-python
    integrity:
      algorithm: BLAKE3
      hash: <blake3 hex>
    <!-- ONEX_METADATA_END -->

Stamping replaces any stamps the content already carries, so the result carries exactly
one, and the hash is the canonical hash (see `canonical`), the same before and after.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import AnyStr, Literal, get_args

from bridge_dagster.stamping.canonical import (
    LIGHTWEIGHT_MARKER,
    RICH_END,
    RICH_START,
    hash_if_unstamped,
    hash_unstamped,
    remove_stamps,
    utf8_bytes,
)
from bridge_dagster.stamping.errors import InvalidContent, InvalidStampField, check_content_size

StampType = Literal["lightweight", "rich"]
STAMP_TYPES: tuple[str, ...] = get_args(StampType)
PROTOCOL_VERSION = "1.0"
DEFAULT_MAX_CONTENT_BYTES = 100 * 1024 * 1024

# Stamp values must not end the stamp early or look like another stamp to the parser.
_UNSAFE_VALUE = re.compile(
    r"[\x00-\x1f\x7f\x85\u2028\u2029]|# ONEX:uid=|<!-- ONEX_METADATA_(?:START|END) -->"
)

ContentPart = str | bytes | memoryview


@dataclass(frozen=True)
class StampResult:
    """A stamp and where it goes. `content_parts` concatenated is the stamped content."""

    stamp_id: uuid.UUID
    file_hash: str
    stamp: str
    stamp_type: StampType
    created_at: datetime
    file_size: int
    # Kept apart and joined on first use: a caller that needs only the hash and the stamp
    # never pays for copying a 100 MB body. None means the content cannot take the stamp.
    content_parts: tuple[ContentPart, ...] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def stamped_content(self) -> str | None:
        """The content with the stamp in place; None when the bytes are not valid UTF-8."""
        if self.content_parts is None:
            return None
        try:
            return "".join(
                part if isinstance(part, str) else str(part, "utf-8") for part in self.content_parts
            )
        except UnicodeDecodeError:
            return None


def stamp_content(
    content: str | bytes,
    *,
    stamp_type: StampType = "lightweight",
    file_path: str | None = None,
    content_type: str = "text/plain",
    author: str | None = None,
    version: str | None = None,
    now: datetime | None = None,
    stamp_id: uuid.UUID | None = None,
    max_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
) -> StampResult:
    """Stamp `content`, replacing any stamps it already carries.

    `stamp_id` and `now` make the stamp deterministic (a workflow passes ids derived from
    its own). Bytes that are not valid UTF-8 are hashed as they are; the stamp is returned
    but `stamped_content` is None.
    """
    if stamp_type not in STAMP_TYPES:
        raise InvalidStampField(f"stamp_type {stamp_type!r} is not one of {', '.join(STAMP_TYPES)}")
    data = utf8_bytes(content)
    check_content_size(len(data), max_bytes)
    created_at = _utc(now)
    stamp_id = stamp_id or uuid.uuid4()
    file_hash = hash_if_unstamped(data)
    if file_hash is None:
        body = _without_stamps(content)
        file_hash = hash_unstamped(utf8_bytes(body))
    else:
        body = content
    replaced_stamps = body is not content
    if stamp_type == "lightweight":
        stamp = lightweight_stamp(stamp_id, file_hash, created_at, author=author, version=version)
        parts = _lightweight_parts(stamp, body, replaced_stamps=replaced_stamps)
    else:
        if _contains(body, RICH_START):
            raise InvalidContent(
                f"content holds an unterminated {RICH_START!r} marker; a rich block appended "
                "after it would be read as part of it. Remove the marker or use a "
                "lightweight stamp"
            )
        stamp = rich_stamp(
            stamp_id,
            file_hash,
            created_at,
            file_path=file_path,
            file_size=len(data),
            content_type=content_type,
            author=author,
            version=version,
        )
        parts = _rich_parts(stamp, body)
    return StampResult(
        stamp_id=stamp_id,
        file_hash=file_hash,
        stamp=stamp,
        stamp_type=stamp_type,
        created_at=created_at,
        file_size=len(data),
        content_parts=parts,
    )


def lightweight_stamp(
    stamp_id: uuid.UUID,
    file_hash: str,
    created_at: datetime,
    *,
    author: str | None = None,
    version: str | None = None,
) -> str:
    """The lightweight stamp line, without its newline."""
    line = f"{LIGHTWEIGHT_MARKER}{stamp_id},hash={file_hash},ts={format_timestamp(created_at)}"
    if author is not None:
        line += f",author={_lightweight_value('author', author)}"
    if version is not None:
        line += f",v={_lightweight_value('version', version)}"
    return line


def rich_stamp(
    stamp_id: uuid.UUID,
    file_hash: str,
    created_at: datetime,
    *,
    file_path: str | None,
    file_size: int,
    content_type: str,
    author: str | None = None,
    version: str | None = None,
) -> str:
    """The rich block from its START marker through its END marker, without a newline."""
    lines = [
        RICH_START,
        f"uid: {stamp_id}",
        f"hash: {file_hash}",
        f"timestamp: {format_timestamp(created_at)}",
        f"protocol_version: {PROTOCOL_VERSION}",
        _rich_line("file_path", file_path or ""),
        f"file_size: {file_size}",
        _rich_line("content_type", content_type),
    ]
    if author is not None:
        lines.append(_rich_line("author", author))
    if version is not None:
        lines.append(_rich_line("version", version))
    lines += ["integrity:", "  algorithm: BLAKE3", f"  hash: {file_hash}", RICH_END]
    return "\n".join(lines)


def format_timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InvalidStampField(
            f"now={now.isoformat()} has no time zone; pass an aware datetime such as "
            "datetime.now(UTC)"
        )
    return now.astimezone(UTC)


def _without_stamps(content: AnyStr) -> AnyStr:
    """`content`, which holds a stamp marker, with its stamps removed."""
    body = remove_stamps(content)
    if remove_stamps(body) != body:
        # Removing the stamps joined stray fragments into a new marker; a stamp written
        # over this content would not validate.
        raise InvalidContent(
            "content holds ONEX marker fragments that form a new stamp marker once its "
            "stamps are removed; remove the stray marker text and stamp again"
        )
    return body


def _lightweight_parts(
    stamp: str, body: AnyStr, *, replaced_stamps: bool
) -> tuple[ContentPart, ...]:
    newline = "\n" if isinstance(body, str) else b"\n"
    if replaced_stamps and body.startswith(newline):
        # Usually the newline an earlier leading stamp left behind; keeping it would add a
        # blank line on every re-stamp. Leading whitespace is not part of the hash.
        body = body[1:] if isinstance(body, str) else memoryview(body)[1:]
    return (stamp + "\n", body)


def _rich_parts(stamp: str, body: AnyStr) -> tuple[ContentPart, ...]:
    kept = len(body) - _trailing_newlines(body)
    if not kept:
        return (stamp + "\n",)
    if kept < len(body):
        body = body[:kept] if isinstance(body, str) else memoryview(body)[:kept]
    return (body, "\n\n" + stamp + "\n")


def _trailing_newlines(text: AnyStr) -> int:
    # Strip growing windows of the tail so that a huge body is not copied.
    newline = "\n" if isinstance(text, str) else b"\n"
    window = 64
    while True:
        tail = text[-window:]
        kept = len(tail.rstrip(newline))
        if kept or len(tail) == len(text):
            return len(tail) - kept
        window *= 4


def _contains(text: AnyStr, marker: str) -> bool:
    return (marker if isinstance(text, str) else marker.encode()) in text


def _lightweight_value(name: str, value: str) -> str:
    if "," in value:
        raise InvalidStampField(f"{name} {value!r} contains a comma, which ends a stamp field")
    return _safe_value(name, value)


def _rich_line(name: str, value: str) -> str:
    value = _safe_value(name, value)
    return f"{name}: {value}" if value else f"{name}:"


def _safe_value(name: str, value: str) -> str:
    if _UNSAFE_VALUE.search(value):
        raise InvalidStampField(
            f"{name} {value[:80]!r} contains a line break, a control character or an ONEX "
            "marker; remove it"
        )
    return value
