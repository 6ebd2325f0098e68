"""Topic names and the dead-letter record written when a message cannot be processed.

The defaults follow the original deployment guide's naming; every name is configurable
(KAFKA_REQUEST_TOPIC, KAFKA_WORKFLOW_TOPIC, KAFKA_REDUCER_TOPIC). A topic's dead letters go
to `<topic>.dlq`, each record bounded so that it always fits the broker's message limit.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import TypedDict

import blake3

DEFAULT_REQUEST_TOPIC = "dev.omninode_bridge.onex.cmd.stamp-workflow-requested.v1"
DEFAULT_WORKFLOW_TOPIC = "dev.omninode_bridge.onex.workflows.v1"
DEFAULT_REDUCER_TOPIC = "dev.omninode_bridge.onex.reducer.v1"

DEAD_LETTER_VERSION = "1"

# Kafka's, Redpanda's and the embedded broker's default max.message.bytes (the embedded
# broker reports it for every topic); the producers send at most PRODUCER_MESSAGE_MAX_BYTES,
# below it, and a dead-letter record is at most MAX_DEAD_LETTER_BYTES, well below that.
BROKER_MESSAGE_MAX_BYTES = 1_048_588
PRODUCER_MESSAGE_MAX_BYTES = 1_000_000
MAX_DEAD_LETTER_BYTES = 600_000
# A record keeps this much of its original (base64 makes it 266,668 bytes) and of its
# reason, which may quote a field of the message.
MAX_DEAD_LETTER_ORIGINAL = 200_000
MAX_DEAD_LETTER_REASON = 4_000


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

    The value is at most MAX_DEAD_LETTER_BYTES: a longer original keeps its first
    MAX_DEAD_LETTER_ORIGINAL bytes and the reason says so, with the whole one's size and
    BLAKE3; text that escaping would blow up (control characters take six bytes each) is
    left to `original_b64` alone.
    """
    when = failed_at or datetime.now(UTC)
    kept = original
    if original is not None and len(original) > MAX_DEAD_LETTER_ORIGINAL:
        kept = original[:MAX_DEAD_LETTER_ORIGINAL]
        reason = (
            f"{reason[:MAX_DEAD_LETTER_REASON]} (original_b64 holds the first"
            f" {MAX_DEAD_LETTER_ORIGINAL} of {len(original)} bytes; blake3 of the whole:"
            f" {blake3.blake3(original).hexdigest()})"
        )
    else:
        reason = reason[:MAX_DEAD_LETTER_REASON]
    record = {
        "dead_letter_version": DEAD_LETTER_VERSION,
        "reason": reason,
        "failed_at": when.astimezone(UTC).isoformat(),
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "original_b64": None if kept is None else base64.b64encode(kept).decode("ascii"),
        "original_text": _as_text(kept),
    }
    value = _compact_json(record)
    if len(value) > MAX_DEAD_LETTER_BYTES:
        value = _compact_json({**record, "original_text": None})
    return value


def dead_letter_key(position: str, timestamp_ms: int, original: bytes | None) -> str:
    """What makes a dead letter the same one: where its message was, when the broker
    wrote it and a digest of its bytes.

    The offset alone is not enough: a recreated topic reuses offsets, and without topic ids
    (the embedded broker reports none) the write time tells the generations apart, while a
    re-read of the same message gives the same key. It is also the record's Kafka key, so a
    consumer can tell a republished record (byte-identical) from a new one.
    """
    digest = blake3.blake3(original or b"").hexdigest()[:32]
    return f"{position}@{timestamp_ms}/{digest}"


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


def _compact_json(record: dict[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _as_text(original: bytes | None) -> str | None:
    if original is None:
        return None
    try:
        return original.decode("utf-8")
    except UnicodeDecodeError:
        return None
