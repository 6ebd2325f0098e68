"""Topic names and the dead-letter record written when a message cannot be processed.

The defaults follow the original deployment guide's naming; every name is configurable
(KAFKA_REQUEST_TOPIC, KAFKA_WORKFLOW_TOPIC, KAFKA_REDUCER_TOPIC). A topic's dead letters go
to `<topic>.dlq`.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import TypedDict

DEFAULT_REQUEST_TOPIC = "dev.omninode_bridge.onex.cmd.stamp-workflow-requested.v1"
DEFAULT_WORKFLOW_TOPIC = "dev.omninode_bridge.onex.workflows.v1"
DEFAULT_REDUCER_TOPIC = "dev.omninode_bridge.onex.reducer.v1"

DEAD_LETTER_VERSION = "1"


class DeadLetter(TypedDict):
    original: bytes | None
    original_text: str | None
    reason: str
    failed_at: datetime
    topic: str
    partition: int
    offset: int


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def dead_letter_value(
    original: bytes | None,
    reason: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime | None = None,
) -> bytes:
    """The JSON value of a dead letter for the message at `topic`/`partition`/`offset`.

    The original is kept byte for byte as base64, because a message is often dead-lettered
    precisely because it is not valid UTF-8 or JSON; `original_text` repeats it as text when
    it decodes, so an operator can read it without tooling. `original` is None for a
    message with no value (a tombstone).
    """
    when = failed_at or datetime.now(UTC)
    record = {
        "dead_letter_version": DEAD_LETTER_VERSION,
        "reason": reason,
        "failed_at": when.astimezone(UTC).isoformat(),
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "original_b64": None if original is None else base64.b64encode(original).decode("ascii"),
        "original_text": _as_text(original),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_dead_letter(raw: bytes) -> DeadLetter:
    """Read a record written by `dead_letter_value`; raises ValueError if it is not one."""
    try:
        record = json.loads(raw)
        source = record["source"]
        encoded = record["original_b64"]
        return DeadLetter(
            original=None if encoded is None else base64.b64decode(encoded, validate=True),
            original_text=record["original_text"],
            reason=record["reason"],
            failed_at=datetime.fromisoformat(record["failed_at"]),
            topic=source["topic"],
            partition=source["partition"],
            offset=source["offset"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a bridge dead-letter record: {exc}") from exc


def _as_text(original: bytes | None) -> str | None:
    if original is None:
        return None
    try:
        return original.decode("utf-8")
    except UnicodeDecodeError:
        return None
