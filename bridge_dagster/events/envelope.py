"""Event envelope v1: the JSON wrapper around every event on the workflow topic.

Producers key each message by the workflow id (`partition_key`), so one workflow's events
stay ordered in one partition. Unknown top-level fields are ignored on decode so that an
additive change does not need a new envelope version; a breaking one bumps
`envelope_version`, which `decode` refuses.

Versions: writers emit the original OmniNode `ModelOnexEnvelopeV1` values, envelope_version
and event_version "1.0"; readers also accept "1", which this project wrote before it matched
the original exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import uuid
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from bridge_dagster.events.types import EventType

ENVELOPE_VERSION = "1.0"
# Every envelope_version a reader accepts, the written one first.
READABLE_ENVELOPE_VERSIONS = ("1.0", "1")
EVENT_VERSION = "1.0"
DEFAULT_SOURCE_SERVICE = "bridge-dagster-orchestrator"

# Fixed forever: changing it changes every deterministic event id and defeats landing's
# de-duplication of events that were published before the change.
EVENT_ID_NAMESPACE = UUID("6f1c1f0e-3b0a-5d3e-9a47-0b7d2c1e8a55")

UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda value: value.astimezone(UTC))]


class EnvelopeError(ValueError):
    """Raw bytes that are not a v1 event envelope; the message says why."""


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    envelope_version: Literal["1.0", "1"] = ENVELOPE_VERSION
    event_id: UUID
    event_type: str = Field(min_length=1)
    event_version: str = Field(default=EVENT_VERSION, min_length=1)
    event_timestamp: UtcDatetime
    source_node_id: str
    source_service: str
    source_version: str
    correlation_id: UUID | None
    causation_id: UUID | None = None
    environment: str = Field(min_length=1)
    partition_key: str | None = None
    payload: dict[str, Any]
    metadata: dict[str, str] = Field(default_factory=dict)


def encode(envelope: EventEnvelope) -> bytes:
    """Compact UTF-8 JSON.

    pydantic's Rust serialiser measured 3.5x faster here than building a dict and calling
    `json.dumps` (2 µs against 7 µs for a typical event), and it also writes UUIDs and
    datetimes nested inside the payload, which `json.dumps` refuses. Timestamps are written
    as ISO-8601 with a `Z` suffix.
    """
    return envelope.model_dump_json().encode()


def decode(raw: bytes) -> EventEnvelope:
    try:
        return EventEnvelope.model_validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    if first["type"] == "json_invalid":
        return f"not an event envelope: invalid JSON ({first['msg']})"
    if not loc:
        return f"not an event envelope: expected a JSON object ({first['msg']})"
    if loc == "envelope_version":
        return (
            f"envelope_version {first.get('input')!r} is not supported; "
            f"this consumer reads versions {', '.join(READABLE_ENVELOPE_VERSIONS)}"
        )
    problems = len(exc.errors())
    more = f" (and {problems - 1} more problem(s))" if problems > 1 else ""
    return f"bad event envelope: field {loc}: {first['msg']}{more}"


def event_id_for(workflow_id: UUID, event_type: str, seq: int) -> UUID:
    """The id of the `seq`-th event of `event_type` in a workflow.

    Deterministic on purpose: when a workflow is processed again (a retried run, or the
    sensor re-reading offsets it had not committed before a crash), it republishes events
    with the same ids, and landing, which inserts on `event_id` with ON CONFLICT DO NOTHING,
    keeps exactly one copy of each.
    """
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{workflow_id}/{event_type}/{seq}")


def make_event(
    event_type: EventType,
    payload: dict[str, Any],
    *,
    correlation_id: UUID | None,
    causation_id: UUID | None = None,
    event_id: UUID | None = None,
    source_service: str = DEFAULT_SOURCE_SERVICE,
    environment: str,
    timestamp: datetime | None = None,
    metadata: dict[str, str] | None = None,
) -> EventEnvelope:
    """An envelope stamped with this node and version, partitioned by its correlation id.

    Without `event_id` the id is random; pass `event_id_for(...)` for workflow events.
    """
    return EventEnvelope(
        event_id=event_id or uuid.uuid4(),
        event_type=str(event_type),
        event_timestamp=timestamp or datetime.now(UTC),
        source_node_id=_source_node_id(),
        source_service=source_service,
        source_version=_source_version(),
        correlation_id=correlation_id,
        causation_id=causation_id,
        environment=environment,
        partition_key=None if correlation_id is None else str(correlation_id),
        payload=payload,
        metadata=metadata or {},
    )


def sign(raw: bytes, key: str) -> str:
    """HMAC-SHA256 of the encoded envelope, hex; sent in the `x-signature` header."""
    return hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()


def verify(raw: bytes, signature: str, key: str) -> bool:
    # Constant-time comparison, so response timing does not leak the expected signature.
    return hmac.compare_digest(sign(raw, key), signature)


@cache
def _source_version() -> str:
    try:
        return version("bridge-dagster")
    except PackageNotFoundError:
        return "0.0.0"


@cache
def _source_node_id() -> str:
    # The host name is the pod name under Kubernetes, which is what an operator looks for.
    return socket.gethostname()
