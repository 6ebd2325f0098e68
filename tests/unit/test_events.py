import base64
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_dagster.events import (
    DEFAULT_REQUEST_TOPIC,
    DEFAULT_WORKFLOW_TOPIC,
    EnvelopeError,
    EventEnvelope,
    EventType,
    dead_letter_value,
    decode,
    dlq_topic,
    encode,
    event_id_for,
    make_event,
    parse_dead_letter,
    sign,
    verify,
)

WORKFLOW_ID = uuid.UUID("9b2f3c1e-4d5a-4e6f-8a7b-1c2d3e4f5a6b")


def an_event(**overrides: Any) -> EventEnvelope:
    arguments: dict[str, Any] = {
        "correlation_id": WORKFLOW_ID,
        "environment": "test",
        "timestamp": datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
    }
    arguments.update(overrides)
    return make_event(EventType.BLAKE3_HASH_GENERATED, {"file_hash": "ab" * 32}, **arguments)


def envelope_dict(event: EventEnvelope | None = None, **overrides: Any) -> dict[str, Any]:
    fields = json.loads(encode(event or an_event()))
    fields.update(overrides)
    return fields


# --- event types and topics --------------------------------------------------------------


def test_event_types_are_the_workflow_and_reducer_types() -> None:
    assert {t.value for t in EventType} == {
        "stamp_workflow_requested",
        "stamp_workflow_started",
        "workflow_step_completed",
        "onextree_intelligence_requested",
        "onextree_intelligence_received",
        "blake3_hash_generated",
        "metadata_stamp_created",
        "workflow_state_transition",
        "stamp_workflow_completed",
        "stamp_workflow_failed",
        "aggregation_started",
        "aggregation_completed",
        "aggregation_failed",
    }


def test_default_topics_follow_the_deployment_guide() -> None:
    assert DEFAULT_REQUEST_TOPIC == "dev.omninode_bridge.onex.cmd.stamp-workflow-requested.v1"
    assert DEFAULT_WORKFLOW_TOPIC == "dev.omninode_bridge.onex.workflows.v1"


def test_dead_letter_topic_appends_dlq() -> None:
    assert dlq_topic("requests.v1") == "requests.v1.dlq"


# --- envelope ----------------------------------------------------------------------------


def test_envelope_round_trips_through_encode_and_decode() -> None:
    event = an_event(causation_id=uuid.uuid4(), metadata={"run_id": "r1"})
    assert decode(encode(event)) == event


def test_encoded_envelope_is_compact_utf8_json() -> None:
    raw = encode(an_event(metadata={"note": "café"}))
    assert b": " not in raw
    assert b", " not in raw
    assert "café".encode() in raw


def test_made_event_is_partitioned_by_its_correlation_id() -> None:
    assert an_event().partition_key == str(WORKFLOW_ID)


def test_made_event_without_correlation_has_no_partition_key() -> None:
    assert an_event(correlation_id=None).partition_key is None


def test_made_event_carries_source_and_version_fields() -> None:
    event = an_event()
    assert event.envelope_version == "1.0"
    assert event.event_version == "1.0"
    assert event.event_type == "blake3_hash_generated"
    assert event.source_service == "bridge-dagster-orchestrator"
    assert event.source_version
    assert event.source_node_id


def test_made_event_defaults_to_the_current_utc_time() -> None:
    before = datetime.now(UTC)
    event = make_event(EventType.AGGREGATION_STARTED, {}, correlation_id=None, environment="t")
    assert before <= event.event_timestamp <= datetime.now(UTC)


def test_timestamp_in_another_zone_is_stored_as_utc() -> None:
    plus_two = datetime(2025, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    event = an_event(timestamp=plus_two)
    assert event.event_timestamp == plus_two
    assert event.event_timestamp.utcoffset() == timedelta(0)


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        an_event(timestamp=datetime(2025, 1, 31, 12, 0))


def test_envelope_is_frozen() -> None:
    event = an_event()
    with pytest.raises(ValueError, match="frozen"):
        event.event_type = "other"  # type: ignore[misc]


def test_encode_writes_uuids_and_times_inside_the_payload() -> None:
    event = make_event(
        EventType.STAMP_WORKFLOW_STARTED,
        {"workflow_id": WORKFLOW_ID, "at": datetime(2025, 1, 1, tzinfo=UTC)},
        correlation_id=WORKFLOW_ID,
        environment="test",
    )
    payload = json.loads(encode(event))["payload"]
    assert payload == {"workflow_id": str(WORKFLOW_ID), "at": "2025-01-01T00:00:00Z"}


def test_decode_ignores_unknown_top_level_fields() -> None:
    event = an_event()
    raw = json.dumps(envelope_dict(event, added_later="x")).encode()
    assert decode(raw) == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps(envelope_dict(envelope_version="2")).encode(), "'2' is not supported"),
        (json.dumps(envelope_dict(event_id="nope")).encode(), "field event_id"),
        (json.dumps(envelope_dict(payload=[1])).encode(), "field payload"),
        (json.dumps(envelope_dict(metadata={"n": 1})).encode(), "field metadata.n"),
        (
            json.dumps(envelope_dict(event_timestamp="2025-01-31T12:00:00")).encode(),
            "field event_timestamp",
        ),
    ],
    ids=[
        "bad-json",
        "not-utf8",
        "not-object",
        "wrong-version",
        "bad-event-id",
        "payload-not-object",
        "metadata-not-str",
        "naive-time",
    ],
)
def test_decode_refuses_what_is_not_a_v1_envelope_and_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        decode(raw)


def test_decode_names_a_missing_field() -> None:
    fields = envelope_dict()
    del fields["source_service"]
    with pytest.raises(EnvelopeError, match="source_service"):
        decode(json.dumps(fields).encode())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)

envelopes = st.builds(
    EventEnvelope,
    event_id=st.uuids(),
    event_type=st.sampled_from(list(EventType)).map(str),
    event_timestamp=st.datetimes(timezones=st.just(UTC)),
    source_node_id=st.text(),
    source_service=st.text(),
    source_version=st.text(),
    correlation_id=st.none() | st.uuids(),
    causation_id=st.none() | st.uuids(),
    environment=st.text(min_size=1),
    partition_key=st.none() | st.text(),
    payload=st.dictionaries(st.text(), json_values, max_size=5),
    metadata=st.dictionaries(st.text(), st.text(), max_size=5),
)


@given(envelopes)
def test_any_envelope_round_trips(event: EventEnvelope) -> None:
    assert decode(encode(event)) == event


@given(st.binary())
def test_arbitrary_bytes_decode_or_raise_envelope_error(raw: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(raw)


# --- deterministic event ids ---------------------------------------------------------------


def test_same_workflow_event_and_sequence_give_the_same_event_id() -> None:
    first = event_id_for(WORKFLOW_ID, EventType.STAMP_WORKFLOW_STARTED, 0)
    again = event_id_for(WORKFLOW_ID, EventType.STAMP_WORKFLOW_STARTED, 0)
    assert first == again


def test_event_id_differs_by_sequence() -> None:
    first = event_id_for(WORKFLOW_ID, EventType.WORKFLOW_STEP_COMPLETED, 1)
    second = event_id_for(WORKFLOW_ID, EventType.WORKFLOW_STEP_COMPLETED, 2)
    assert first != second


def test_event_id_differs_by_event_type() -> None:
    started = event_id_for(WORKFLOW_ID, EventType.STAMP_WORKFLOW_STARTED, 0)
    failed = event_id_for(WORKFLOW_ID, EventType.STAMP_WORKFLOW_FAILED, 0)
    assert started != failed


def test_event_id_differs_by_workflow() -> None:
    mine = event_id_for(WORKFLOW_ID, EventType.STAMP_WORKFLOW_STARTED, 0)
    theirs = event_id_for(uuid.uuid4(), EventType.STAMP_WORKFLOW_STARTED, 0)
    assert mine != theirs


def test_event_id_is_stable_across_releases() -> None:
    # Landing de-duplicates on event_id: a changed derivation would let a re-processed
    # workflow land its events twice.
    assert event_id_for(WORKFLOW_ID, "stamp_workflow_started", 0) == uuid.UUID(
        "2f804e4f-2644-52d5-bfb8-2944007f285a"
    )


def test_event_id_is_used_when_given() -> None:
    event_id = event_id_for(WORKFLOW_ID, EventType.BLAKE3_HASH_GENERATED, 3)
    assert an_event(event_id=event_id).event_id == event_id


def test_made_events_without_an_id_get_distinct_random_ids() -> None:
    assert an_event().event_id != an_event().event_id


# --- signing -------------------------------------------------------------------------------


def test_signature_verifies_with_the_same_key() -> None:
    raw = encode(an_event())
    assert verify(raw, sign(raw, "secret"), "secret")


def test_signature_is_hex_sha256() -> None:
    signature = sign(b"x", "secret")
    assert len(signature) == 64
    assert int(signature, 16) >= 0


def test_tampered_message_fails_verification() -> None:
    raw = encode(an_event())
    signature = sign(raw, "secret")
    assert not verify(raw.replace(b"test", b"prod"), signature, "secret")


def test_signature_from_another_key_fails_verification() -> None:
    raw = encode(an_event())
    assert not verify(raw, sign(raw, "other"), "secret")


# --- dead letters --------------------------------------------------------------------------


FAILED_AT = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def test_dead_letter_round_trips_a_non_utf8_original() -> None:
    original = b"\xff\xfe not utf-8 \x00"
    raw = dead_letter_value(
        original, "bad_json: not UTF-8", topic="t", partition=2, offset=41, failed_at=FAILED_AT
    )
    assert parse_dead_letter(raw) == {
        "original": original,
        "original_text": None,
        "reason": "bad_json: not UTF-8",
        "failed_at": FAILED_AT,
        "topic": "t",
        "partition": 2,
        "offset": 41,
    }


def test_dead_letter_repeats_a_utf8_original_as_text() -> None:
    raw = dead_letter_value(b'{"a": "\xc3\xa9"}', "r", topic="t", partition=0, offset=0)
    record = json.loads(raw)
    assert record["original_text"] == '{"a": "é"}'
    assert base64.b64decode(record["original_b64"]) == b'{"a": "\xc3\xa9"}'


def test_dead_letter_of_a_message_without_value_keeps_none() -> None:
    raw = dead_letter_value(None, "empty", topic="t", partition=0, offset=7)
    assert parse_dead_letter(raw)["original"] is None


def test_dead_letter_defaults_to_the_current_time() -> None:
    before = datetime.now(UTC)
    raw = dead_letter_value(b"x", "r", topic="t", partition=0, offset=0)
    assert before <= parse_dead_letter(raw)["failed_at"] <= datetime.now(UTC)


def test_parse_dead_letter_refuses_other_json() -> None:
    with pytest.raises(ValueError, match="not a bridge dead-letter record"):
        parse_dead_letter(b'{"reason": "only this"}')
