"""Event envelope v1, event types, topic names and stamp requests (no Dagster)."""

from bridge_dagster.events.envelope import (
    EnvelopeError,
    EventEnvelope,
    decode,
    encode,
    event_id_for,
    make_event,
    sign,
    verify,
)
from bridge_dagster.events.requests import (
    RejectCode,
    RequestRejected,
    StampRequest,
    build_request,
    is_valid_namespace,
    parse_request,
)
from bridge_dagster.events.topics import (
    DEFAULT_REQUEST_TOPIC,
    DEFAULT_WORKFLOW_TOPIC,
    DeadLetter,
    dead_letter_value,
    dlq_topic,
    parse_dead_letter,
)
from bridge_dagster.events.types import EventType

__all__ = [
    "DEFAULT_REQUEST_TOPIC",
    "DEFAULT_WORKFLOW_TOPIC",
    "DeadLetter",
    "EnvelopeError",
    "EventEnvelope",
    "EventType",
    "RejectCode",
    "RequestRejected",
    "StampRequest",
    "build_request",
    "dead_letter_value",
    "decode",
    "dlq_topic",
    "encode",
    "event_id_for",
    "is_valid_namespace",
    "make_event",
    "parse_dead_letter",
    "parse_request",
    "sign",
    "verify",
]
