import base64
import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_dagster.events import (
    EventType,
    RejectCode,
    RequestRejected,
    StampRequest,
    build_request,
    decode,
    event_id_for,
    is_valid_namespace,
    parse_request,
)

WORKFLOW_ID = uuid.UUID("3c9a7e52-1f0b-4d8e-a6c4-5b2e9d0f1a37")
LIMIT = 1_000


def parse(raw: bytes | None) -> StampRequest:
    return parse_request(raw, default_namespace="omninode.bridge", max_content_bytes=LIMIT)


def message(payload: Any, **envelope: Any) -> bytes:
    fields = {
        "envelope_version": "1",
        "event_type": "stamp_workflow_requested",
        "correlation_id": str(WORKFLOW_ID),
        "payload": payload,
    }
    fields.update(envelope)
    return json.dumps(fields).encode()


def request(**payload: Any) -> bytes:
    return message({"workflow_id": str(WORKFLOW_ID), "content": "print('hi')\n", **payload})


def rejection(raw: bytes | None) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        parse(raw)
    return caught.value


# --- accepted requests ---------------------------------------------------------------------


def test_minimal_request_gets_the_defaults() -> None:
    parsed = parse(message({"workflow_id": str(WORKFLOW_ID), "content": "x"}))
    assert parsed == StampRequest(
        workflow_id=WORKFLOW_ID,
        namespace="omninode.bridge",
        content="x",
        content_type="text/plain",
        stamp_type="lightweight",
        enable_intelligence=False,
        intelligence_context=None,
        metadata={},
        write_back=False,
    )


def test_null_fields_count_as_absent() -> None:
    parsed = parse(request(namespace=None, stamp_type=None, metadata=None, write_back=None))
    assert (parsed.namespace, parsed.stamp_type, parsed.metadata, parsed.write_back) == (
        "omninode.bridge",
        "lightweight",
        {},
        False,
    )


def test_every_field_is_read() -> None:
    parsed = parse(
        request(
            namespace="team-a.docs",
            file_path="docs/readme.md",
            content_type="text/markdown",
            stamp_type="rich",
            enable_intelligence=True,
            intelligence_context="why this file exists",
            metadata={"author": "ana"},
        )
    )
    assert parsed.model_dump(exclude={"workflow_id", "content"}) == {
        "namespace": "team-a.docs",
        "content_b64": None,
        "file_path": "docs/readme.md",
        "content_type": "text/markdown",
        "stamp_type": "rich",
        "enable_intelligence": True,
        "intelligence_context": "why this file exists",
        "metadata": {"author": "ana"},
        "write_back": False,
        "request_event_id": None,
        "requested_at": None,
    }


def test_request_without_correlation_id_is_accepted() -> None:
    raw = message({"workflow_id": str(WORKFLOW_ID), "content": "x"}, correlation_id=None)
    assert parse(raw).workflow_id == WORKFLOW_ID


def test_envelope_event_id_and_time_are_kept() -> None:
    event_id = uuid.uuid4()
    raw = message(
        {"workflow_id": str(WORKFLOW_ID), "content": "x"},
        event_id=str(event_id),
        event_timestamp="2025-01-31T14:00:00+02:00",
    )
    parsed = parse(raw)
    assert parsed.request_event_id == event_id
    assert parsed.requested_at == datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def test_file_path_alone_is_enough_content() -> None:
    raw = message({"workflow_id": str(WORKFLOW_ID), "file_path": "/srv/project/main.py"})
    parsed = parse(raw)
    assert parsed.file_path == "/srv/project/main.py"
    assert parsed.content_bytes() is None


def test_write_back_is_accepted_with_file_path_alone() -> None:
    raw = message({"workflow_id": str(WORKFLOW_ID), "file_path": "/srv/a.py", "write_back": True})
    assert parse(raw).write_back


def test_content_at_the_size_limit_is_accepted() -> None:
    assert parse(request(content="é" * (LIMIT // 2))).content_bytes() == "é".encode() * (LIMIT // 2)


def test_text_content_bytes_are_its_utf8_encoding() -> None:
    assert parse(request(content="café")).content_bytes() == "café".encode()


def test_base64_content_bytes_are_decoded() -> None:
    raw = message({"workflow_id": str(WORKFLOW_ID), "content_b64": "AP8K"})
    assert parse(raw).content_bytes() == b"\x00\xff\n"


def test_empty_message_value_is_rejected() -> None:
    assert rejection(None).code == RejectCode.BAD_JSON


# --- rejections ----------------------------------------------------------------------------

REJECTIONS = [
    ("not-json", b"{oops", RejectCode.BAD_JSON, "not JSON"),
    ("not-utf8", b'{"a": "\xff"}', RejectCode.BAD_JSON, "not UTF-8"),
    ("not-object", b"[1, 2, 3]", RejectCode.BAD_ENVELOPE, "JSON list, not an object"),
    ("no-version", message({}, envelope_version=None), RejectCode.BAD_ENVELOPE, "set it to '1.0'"),
    ("payload-list", message([]), RejectCode.BAD_ENVELOPE, "payload is missing or not an object"),
    (
        "bad-correlation",
        message({"workflow_id": str(WORKFLOW_ID), "content": "x"}, correlation_id="nope"),
        RejectCode.BAD_ENVELOPE,
        "correlation_id 'nope' is not a UUID",
    ),
    (
        "bad-event-time",
        message({"workflow_id": str(WORKFLOW_ID), "content": "x"}, event_timestamp="2025-01-31"),
        RejectCode.BAD_ENVELOPE,
        "event_timestamp",
    ),
    (
        "wrong-event-type",
        message({}, event_type="stamp_workflow_started"),
        RejectCode.WRONG_EVENT_TYPE,
        "only 'stamp_workflow_requested'",
    ),
    (
        "missing-workflow-id",
        message({"content": "x"}),
        RejectCode.BAD_WORKFLOW_ID,
        "workflow_id is missing",
    ),
    (
        "bad-workflow-id",
        message({"workflow_id": "42", "content": "x"}),
        RejectCode.BAD_WORKFLOW_ID,
        "'42' is not a UUID",
    ),
    (
        "numeric-workflow-id",
        message({"workflow_id": 42, "content": "x"}),
        RejectCode.BAD_WORKFLOW_ID,
        "42 is not a UUID",
    ),
    (
        "correlation-mismatch",
        message({"workflow_id": str(uuid.uuid4()), "content": "x"}),
        RejectCode.BAD_WORKFLOW_ID,
        "differs from the envelope's correlation_id",
    ),
    (
        "unknown-field",
        request(contents="x"),
        RejectCode.BAD_FIELD,
        "'contents' are not known",
    ),
    (
        "no-content",
        message({"workflow_id": str(WORKFLOW_ID)}),
        RejectCode.NO_CONTENT,
        "set content \\(text\\), content_b64 \\(bytes\\) or file_path",
    ),
    (
        "two-kinds-of-content",
        request(content_b64="eA=="),
        RejectCode.MULTIPLE_CONTENT,
        "not both",
    ),
    (
        "content-not-text",
        request(content=["x"]),
        RejectCode.BAD_FIELD,
        "content is \\['x'\\]; send a string",
    ),
    (
        "unknown-stamp-type",
        request(stamp_type="heavy"),
        RejectCode.BAD_STAMP_TYPE,
        "'heavy' is not known; use 'lightweight' \\(default\\) or 'rich'",
    ),
    (
        "oversize-text",
        request(content="x" * (LIMIT + 1)),
        RejectCode.CONTENT_TOO_LARGE,
        "1,001 bytes, over the limit of 1,000 bytes.*BRIDGE_MAX_CONTENT_BYTES",
    ),
    (
        "oversize-multibyte-text",
        request(content="é" * (LIMIT // 2 + 1)),
        RejectCode.CONTENT_TOO_LARGE,
        "1,002 bytes",
    ),
    (
        "oversize-bytes",
        message(
            {
                "workflow_id": str(WORKFLOW_ID),
                "content_b64": base64.b64encode(b"\0" * (LIMIT + 1)).decode(),
            }
        ),
        RejectCode.CONTENT_TOO_LARGE,
        "1,001 bytes",
    ),
    (
        "bad-base64",
        message({"workflow_id": str(WORKFLOW_ID), "content_b64": "not base64!"}),
        RejectCode.BAD_BASE64,
        "content_b64 is not valid base64",
    ),
    (
        "unpadded-base64",
        message({"workflow_id": str(WORKFLOW_ID), "content_b64": "eA"}),
        RejectCode.BAD_BASE64,
        "'=' padding",
    ),
    (
        "base64-with-line-breaks",
        message({"workflow_id": str(WORKFLOW_ID), "content_b64": "eA==\neA=="}),
        RejectCode.BAD_BASE64,
        "no line breaks",
    ),
    (
        "namespace-with-slash",
        request(namespace="a/b"),
        RejectCode.BAD_NAMESPACE,
        "'a/b' is not valid",
    ),
    ("empty-namespace", request(namespace=""), RejectCode.BAD_NAMESPACE, "1-255 characters"),
    ("long-namespace", request(namespace="n" * 256), RejectCode.BAD_NAMESPACE, "1-255"),
    (
        "metadata-not-object",
        request(metadata=["a"]),
        RejectCode.BAD_FIELD,
        "metadata is \\['a'\\]; send an object",
    ),
    (
        "metadata-value-not-str",
        request(metadata={"retries": 3}),
        RejectCode.BAD_FIELD,
        "metadata\\['retries'\\] is 3; send a string",
    ),
    (
        "metadata-too-many",
        request(metadata={str(i): "v" for i in range(65)}),
        RejectCode.BAD_FIELD,
        "65 entries; send at most 64",
    ),
    (
        "metadata-value-too-long",
        request(metadata={"k": "v" * 4_097}),
        RejectCode.BAD_FIELD,
        "too long",
    ),
    (
        "write-back-with-content",
        request(file_path="/srv/a.py", write_back=True),
        RejectCode.WRITE_BACK_WITH_CONTENT,
        "send file_path without content",
    ),
    (
        "write-back-not-bool",
        message({"workflow_id": str(WORKFLOW_ID), "file_path": "/a", "write_back": "yes"}),
        RejectCode.BAD_FIELD,
        "write_back is 'yes'; send true or false",
    ),
    (
        "intelligence-flag-not-bool",
        request(enable_intelligence=1),
        RejectCode.BAD_FIELD,
        "enable_intelligence is 1",
    ),
    (
        "long-intelligence-context",
        request(intelligence_context="c" * 10_001),
        RejectCode.BAD_FIELD,
        "10,001 characters; send 1 to 10,000",
    ),
    ("empty-file-path", request(file_path=""), RejectCode.BAD_FIELD, "file_path has 0 characters"),
    (
        "nul-in-file-path",
        request(file_path="a\u0000b"),
        RejectCode.BAD_FIELD,
        "without NUL characters",
    ),
    (
        "lone-surrogate-in-content",
        request(content="\ud800"),
        RejectCode.BAD_FIELD,
        "send bytes as content_b64",
    ),
]


@pytest.mark.parametrize(
    ("raw", "code", "reason"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_bad_request_is_rejected_with_a_code_and_a_reason(
    raw: bytes, code: RejectCode, reason: str
) -> None:
    with pytest.raises(RequestRejected, match=reason) as caught:
        parse(raw)
    assert caught.value.code == code


def test_every_reject_code_is_exercised() -> None:
    exercised = {case[2] for case in REJECTIONS}
    assert exercised == set(RejectCode)


def test_rejection_is_a_value_error_carrying_code_and_reason() -> None:
    refused = rejection(request(stamp_type="heavy"))
    assert isinstance(refused, ValueError)
    assert str(refused) == f"bad_stamp_type: {refused.reason}"


# --- namespaces ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["omninode.bridge", "a", "Team_1-docs", "n" * 255])
def test_sane_namespace_is_valid(name: str) -> None:
    assert is_valid_namespace(name)


@pytest.mark.parametrize("name", ["", "a b", "a/b", "ünï", "n" * 256, "a\n"])
def test_other_namespace_is_invalid(name: str) -> None:
    assert not is_valid_namespace(name)


# --- build_request → parse_request ---------------------------------------------------------


def test_built_text_request_parses_back() -> None:
    raw = build_request(WORKFLOW_ID, environment="test", namespace="ns", content="hello")
    parsed = parse(raw)
    assert (parsed.workflow_id, parsed.namespace, parsed.content) == (WORKFLOW_ID, "ns", "hello")


def test_built_bytes_request_parses_back() -> None:
    raw = build_request(WORKFLOW_ID, environment="test", content_b64="AP8=", file_path="a.bin")
    parsed = parse(raw)
    assert (parsed.content_bytes(), parsed.file_path) == (b"\x00\xff", "a.bin")


def test_built_file_request_parses_back() -> None:
    raw = build_request(
        WORKFLOW_ID,
        environment="test",
        file_path="/srv/project/a.py",
        stamp_type="rich",
        enable_intelligence=True,
        intelligence_context="ctx",
        metadata={"k": "v"},
        write_back=True,
        content_type="text/x-python",
    )
    assert parse(raw).model_dump(exclude={"requested_at", "request_event_id"}) == {
        "workflow_id": WORKFLOW_ID,
        "namespace": "omninode.bridge",
        "content": None,
        "content_b64": None,
        "file_path": "/srv/project/a.py",
        "content_type": "text/x-python",
        "stamp_type": "rich",
        "enable_intelligence": True,
        "intelligence_context": "ctx",
        "metadata": {"k": "v"},
        "write_back": True,
    }


def test_built_request_is_a_full_v1_envelope_keyed_by_the_workflow() -> None:
    envelope = decode(build_request(WORKFLOW_ID, environment="test", content="x"))
    assert envelope.event_type == EventType.STAMP_WORKFLOW_REQUESTED
    assert envelope.correlation_id == WORKFLOW_ID
    assert envelope.partition_key == str(WORKFLOW_ID)
    assert envelope.environment == "test"


def test_resubmitting_a_workflow_sends_the_same_event_id() -> None:
    first = parse(build_request(WORKFLOW_ID, environment="test", content="x"))
    again = parse(build_request(WORKFLOW_ID, environment="test", content="x"))
    assert first.request_event_id == again.request_event_id
    assert first.request_event_id == event_id_for(
        WORKFLOW_ID, EventType.STAMP_WORKFLOW_REQUESTED, 0
    )


def test_built_request_records_when_it_was_sent() -> None:
    before = datetime.now(UTC)
    sent = parse(build_request(WORKFLOW_ID, environment="test", content="x")).requested_at
    assert sent is not None
    assert before <= sent <= datetime.now(UTC)


# --- properties ----------------------------------------------------------------------------


def parse_or_reject(raw: bytes) -> None:
    with contextlib.suppress(RequestRejected):
        parse(raw)


@given(st.binary())
def test_arbitrary_bytes_never_raise_anything_but_a_rejection(raw: bytes) -> None:
    parse_or_reject(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=10,
)
payload_fields = st.sampled_from(
    [
        "workflow_id",
        "namespace",
        "content",
        "content_b64",
        "file_path",
        "content_type",
        "stamp_type",
        "enable_intelligence",
        "intelligence_context",
        "metadata",
        "write_back",
    ]
)


@given(
    payload=st.dictionaries(payload_fields, json_values | st.uuids().map(str)),
    envelope=st.dictionaries(
        st.sampled_from(["envelope_version", "event_type", "correlation_id", "event_timestamp"]),
        json_values,
    ),
)
def test_arbitrary_payloads_never_raise_anything_but_a_rejection(
    payload: dict[str, Any], envelope: dict[str, Any]
) -> None:
    parse_or_reject(message(payload, **envelope))


@given(
    content=st.text(max_size=200),
    namespace=st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
    stamp_type=st.sampled_from(["lightweight", "rich"]),
    metadata=st.dictionaries(
        st.text(min_size=1, max_size=20), st.text(max_size=20), max_size=5
    ).filter(lambda m: all("\x00" not in k + v for k, v in m.items())),
)
def test_any_valid_text_request_round_trips(
    content: str, namespace: str, stamp_type: str, metadata: dict[str, str]
) -> None:
    raw = build_request(
        WORKFLOW_ID,
        environment="test",
        namespace=namespace,
        content=content,
        stamp_type=stamp_type,  # type: ignore[arg-type]
        metadata=metadata,
    )
    parsed = parse(raw)
    assert (parsed.content, parsed.namespace, parsed.stamp_type, parsed.metadata) == (
        content,
        namespace,
        stamp_type,
        metadata,
    )


def test_request_in_the_original_omninode_envelope_is_accepted() -> None:
    # Shaped as the original's ModelOnexEnvelopeV1 serialises it: every field, versions "1.0".
    original = {
        "envelope_version": "1.0",
        "event_id": "7d1f3c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b",
        "event_type": "stamp_workflow_requested",
        "event_version": "1.0",
        "event_timestamp": "2026-11-30T10:15:00.123456+00:00",
        "source_node_id": "omninode-producer-1",
        "source_service": "omninode-bridge-client",
        "source_version": "1.0.0",
        "correlation_id": str(WORKFLOW_ID),
        "causation_id": None,
        "environment": "dev",
        "partition_key": str(WORKFLOW_ID),
        "payload": {"workflow_id": str(WORKFLOW_ID), "content": "print('hi')\n"},
        "metadata": {},
    }
    assert parse(json.dumps(original).encode()).workflow_id == WORKFLOW_ID


def test_request_in_this_projects_earlier_envelope_version_is_accepted() -> None:
    assert parse(request()).workflow_id == WORKFLOW_ID


def test_built_request_carries_the_original_versions() -> None:
    raw = json.loads(build_request(workflow_id=WORKFLOW_ID, content="x", environment="dev"))
    assert (raw["envelope_version"], raw["event_version"]) == ("1.0", "1.0")
