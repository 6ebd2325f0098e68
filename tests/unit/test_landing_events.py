"""What landing accepts from the workflow topic, and the reason it gives for what it refuses."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_dagster.events.envelope import encode, make_event, sign
from bridge_dagster.events.landing import (
    Admission,
    LandedEvent,
    RejectCode,
    Rejected,
    parse_event,
)
from bridge_dagster.events.types import EventType

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ADMISSION = Admission(now=NOW, horizon=NOW - timedelta(days=30))
WORKFLOW_ID = uuid.UUID("3c9a7e52-1f0b-4d8e-a6c4-5b2e9d0f1a37")


def original(**changes: Any) -> dict[str, Any]:
    """A completion as the original OmniNode ModelOnexEnvelopeV1 writes it: every field."""
    envelope = {
        "envelope_version": "1.0",
        "event_id": "7d1f3c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b",
        "event_type": "stamp_workflow_completed",
        "event_version": "1.0",
        "event_timestamp": "2026-12-01T10:15:00.123456+00:00",
        "source_node_id": "omninode-orchestrator-1",
        "source_service": "omninode-bridge-orchestrator",
        "source_version": "1.0.0",
        "correlation_id": str(WORKFLOW_ID),
        "causation_id": None,
        "environment": "dev",
        "partition_key": str(WORKFLOW_ID),
        "payload": {
            "workflow_id": str(WORKFLOW_ID),
            "namespace": "omninode.services",
            "content_type": "text/x-python",
            "file_size": 1234,
            "latency_ms": 42.5,
        },
        "metadata": {},
    }
    envelope.update(changes)
    return envelope


def parse(envelope: Any, admission: Admission = ADMISSION) -> LandedEvent | Rejected:
    raw = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return parse_event(raw, None, admission)


def test_the_original_omninode_envelope_lands_with_its_payload_fields() -> None:
    event = parse(original())
    assert isinstance(event, LandedEvent)
    assert (event.namespace, event.content_type, event.file_size, event.latency_ms) == (
        "omninode.services",
        "text/x-python",
        1234,
        42.5,
    )
    assert event.correlation_id == str(WORKFLOW_ID)
    assert json.loads(event.envelope_json) == original()


def test_this_projects_earlier_envelope_version_lands_too() -> None:
    assert isinstance(parse(original(envelope_version="1")), LandedEvent)


def test_an_event_this_project_writes_lands() -> None:
    envelope = make_event(
        EventType.WORKFLOW_STATE_TRANSITION,
        {"to_state": "processing"},
        correlation_id=WORKFLOW_ID,
        environment="test",
        timestamp=NOW,
    )
    event = parse_event(encode(envelope), None, ADMISSION)
    assert isinstance(event, LandedEvent) and event.state == "processing"


@pytest.mark.parametrize(
    ("event_type", "state"),
    [
        ("stamp_workflow_completed", "completed"),
        ("stamp_workflow_failed", "failed"),
        ("stamp_workflow_requested", "pending"),
        ("blake3_hash_generated", "processing"),
    ],
)
def test_an_event_other_than_a_transition_implies_its_types_state(
    event_type: str, state: str
) -> None:
    event = parse(original(event_type=event_type))
    assert isinstance(event, LandedEvent) and event.state == state


def test_a_timestamp_postgresql_reads_as_written_is_kept_verbatim() -> None:
    event = parse(original(event_timestamp="2026-12-01T10:15:00Z"))
    assert isinstance(event, LandedEvent) and event.timestamp_text == "2026-12-01T10:15:00Z"


@pytest.mark.parametrize(
    ("stamp", "written"),
    [
        ("2026-12-01 10:15:00+02:00", "2026-12-01T08:15:00+00:00"),
        ("2026-W48-2T10:15:00Z", "2026-11-24T10:15:00+00:00"),
        ("20261201T101500Z", "2026-12-01T10:15:00+00:00"),
    ],
)
def test_another_timestamp_form_is_rewritten_in_utc_iso_format(stamp: str, written: str) -> None:
    event = parse(original(event_timestamp=stamp))
    assert isinstance(event, LandedEvent)
    assert event.timestamp_text == written


@pytest.mark.parametrize(
    ("stamp", "written"),
    [
        # PostgreSQL refuses offsets beyond ±15:59.
        ("2026-12-01T10:15:00+16:00", "2026-11-30T18:15:00+00:00"),
        ("2026-12-01T10:15:00-20:00", "2026-12-02T06:15:00+00:00"),
        # PostgreSQL rounds a seventh digit where Python truncates: into the next day here.
        ("2026-11-30T23:59:59.9999999Z", "2026-11-30T23:59:59.999999+00:00"),
    ],
)
def test_a_timestamp_postgresql_would_refuse_or_read_otherwise_is_rewritten(
    stamp: str, written: str
) -> None:
    event = parse(original(event_timestamp=stamp))
    assert isinstance(event, LandedEvent)
    assert (event.timestamp_text, event.utc_hour) == (written, written[:13])


@pytest.mark.parametrize(
    "value",
    [
        "3c9a7e52-1f0b-4d8e-a6c4-5b2e9d0f1a  ",
        "3c9a7e52-1f0b-4d8e-a6c4-5b2e9d0f1a_3",
        "+c9a7e52-1f0b-4d8e-a6c4-5b2e9d0f1a37",
    ],
)
def test_an_id_with_spaces_or_signs_among_its_digits_is_not_a_uuid(value: str) -> None:
    # Python's UUID() takes these (int() does), PostgreSQL does not.
    for name in ("event_id", "correlation_id"):
        refused = parse(original(**{name: value}))
        assert isinstance(refused, Rejected) and refused.code == RejectCode.NOT_AN_ENVELOPE


@pytest.mark.parametrize(
    "value",
    [
        "3C9A7E52-1F0B-4D8E-A6C4-5B2E9D0F1A37",
        "{3c9a7e52-1f0b-4d8e-a6c4-5b2e9d0f1a37}",
        "urn:uuid:3c9a7e52-1f0b-4d8e-a6c4-5b2e9d0f1a37",
        "3c9a7e521f0b4d8ea6c45b2e9d0f1a37",
    ],
)
def test_another_form_of_a_uuid_lands_in_canonical_form(value: str) -> None:
    event = parse(original(correlation_id=value))
    assert isinstance(event, LandedEvent) and event.correlation_id == str(WORKFLOW_ID)


@pytest.mark.parametrize(
    ("stamp", "hour"),
    [
        ("2026-12-01T00:15:00.5Z", "2026-12-01T00"),
        ("2026-12-01T00:15:00+00:00", "2026-12-01T00"),
        ("2026-12-01T01:15:00+02:00", "2026-11-30T23"),
        ("2026-12-01 00:15:00-01:30", "2026-12-01T01"),
        ("2026-W48-2T10:15:00Z", "2026-11-24T10"),
    ],
)
def test_the_hour_of_an_event_is_its_utc_hour_whatever_the_offset(stamp: str, hour: str) -> None:
    event = parse(original(event_timestamp=stamp))
    assert isinstance(event, LandedEvent) and event.utc_hour == hour


REFUSED = [
    ("empty", b"", RejectCode.EMPTY),
    ("not utf-8", b'{"a": "\xff"}', RejectCode.NOT_UTF8),
    ("not json", b"{nope", RejectCode.BAD_JSON),
    ("lone surrogate", b'{"a": "\\ud800"}', RejectCode.BAD_JSON),
    ("nul", json.dumps(original(payload={"namespace": "a\x00b"})).encode(), RejectCode.BAD_JSON),
    ("a list", b"[1, 2]", RejectCode.NOT_AN_ENVELOPE),
    ("version 2.0", original(envelope_version="2.0"), RejectCode.UNKNOWN_ENVELOPE_VERSION),
    ("no version", original(envelope_version=None), RejectCode.UNKNOWN_ENVELOPE_VERSION),
    (
        "request type",
        original(event_type="stamp_workflow_requested2"),
        RejectCode.UNKNOWN_EVENT_TYPE,
    ),
    ("reducer type", original(event_type="aggregation_started"), RejectCode.UNKNOWN_EVENT_TYPE),
    ("no payload", original(payload=None), RejectCode.NOT_AN_ENVELOPE),
    ("bad event id", original(event_id="nope"), RejectCode.NOT_AN_ENVELOPE),
    ("no correlation", original(correlation_id=None), RejectCode.NOT_AN_ENVELOPE),
    ("bad time", original(event_timestamp="yesterday"), RejectCode.BAD_TIMESTAMP),
    ("naive time", original(event_timestamp="2026-12-01T10:15:00"), RejectCode.BAD_TIMESTAMP),
    ("future", original(event_timestamp="2026-12-03T10:15:00Z"), RejectCode.BAD_TIMESTAMP),
    ("expired", original(event_timestamp="2026-10-01T10:15:00Z"), RejectCode.EXPIRED),
    ("bad namespace", original(payload={"namespace": "a b"}), RejectCode.BAD_FIELD),
    ("size as text", original(payload={"file_size": "12"}), RejectCode.BAD_FIELD),
    ("size as bool", original(payload={"file_size": True}), RejectCode.BAD_FIELD),
    ("negative latency", original(payload={"latency_ms": -1}), RejectCode.BAD_FIELD),
    (
        "unknown state",
        original(event_type="workflow_state_transition", payload={"to_state": "done"}),
        RejectCode.BAD_FIELD,
    ),
]


@pytest.mark.parametrize(
    ("message", "code"), [(m, c) for _, m, c in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_malformed_event_is_refused_with_a_reason_that_starts_with_its_code(
    message: Any, code: RejectCode
) -> None:
    refused = parse(message)
    assert isinstance(refused, Rejected)
    assert refused.code == code
    assert refused.reason.startswith(f"{code}: ")


def test_with_a_signing_key_an_unsigned_event_is_refused() -> None:
    admission = Admission(now=NOW, horizon=ADMISSION.horizon, signing_key="k1")
    refused = parse_event(json.dumps(original()).encode(), None, admission)
    assert isinstance(refused, Rejected) and refused.code == RejectCode.BAD_SIGNATURE


def test_with_a_signing_key_an_event_signed_with_another_key_is_refused() -> None:
    admission = Admission(now=NOW, horizon=ADMISSION.horizon, signing_key="k1")
    raw = json.dumps(original()).encode()
    refused = parse_event(raw, sign(raw, "k2").encode(), admission)
    assert isinstance(refused, Rejected) and refused.code == RejectCode.BAD_SIGNATURE


def test_with_a_signing_key_an_altered_event_is_refused() -> None:
    admission = Admission(now=NOW, horizon=ADMISSION.horizon, signing_key="k1")
    raw = json.dumps(original()).encode()
    signature = sign(raw, "k1").encode()
    refused = parse_event(raw.replace(b"1234", b"9999"), signature, admission)
    assert isinstance(refused, Rejected) and refused.code == RejectCode.BAD_SIGNATURE


def test_with_a_signing_key_a_correctly_signed_event_lands() -> None:
    admission = Admission(now=NOW, horizon=ADMISSION.horizon, signing_key="k1")
    raw = json.dumps(original()).encode()
    assert isinstance(parse_event(raw, sign(raw, "k1").encode(), admission), LandedEvent)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["envelope_version", "event_id", "event_type", "event_timestamp", "correlation_id"]
        ),
        json_values,
    ),
    payload=st.dictionaries(
        st.sampled_from(["namespace", "content_type", "file_size", "latency_ms", "to_state"]),
        json_values,
    ),
)
def test_any_envelope_is_either_landed_or_refused_never_an_error(
    fields: dict[str, Any], payload: dict[str, Any]
) -> None:
    assert isinstance(parse(original(**fields, payload=payload)), LandedEvent | Rejected)


@given(raw=st.binary(max_size=300))
def test_any_bytes_are_either_landed_or_refused_never_an_error(raw: bytes) -> None:
    assert isinstance(parse_event(raw, None, ADMISSION), LandedEvent | Rejected)
