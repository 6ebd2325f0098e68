"""The stamp request: the message a producer puts on the request topic to start a workflow.

This is a public interface. The Kafka value is an event envelope v1 (JSON, UTF-8) with
`event_type` = `stamp_workflow_requested` and `correlation_id` = the workflow id; the
message key should be the workflow id. Only `envelope_version`, `event_type` and `payload`
are required of the envelope, so simple producers need not fill in the rest.

Payload fields (null means absent):

| field | type | default |
|---|---|---|
| workflow_id | UUID string, required; equals correlation_id when that is set | |
| namespace | `[A-Za-z0-9._-]{1,255}` | the DEFAULT_NAMESPACE setting |
| content | UTF-8 text to stamp | |
| content_b64 | base64 (standard alphabet, padded) bytes to stamp | |
| file_path | a file under BRIDGE_ALLOWED_ROOTS; only a name when content is inline | |
| content_type | MIME type | text/plain |
| stamp_type | lightweight or rich | lightweight |
| enable_intelligence | bool | false |
| intelligence_context | text, at most 10,000 characters | |
| metadata | string → string, at most 64 entries | {} |
| write_back | bool: write the stamped file back; file_path-only requests | false |

Send exactly one of content and content_b64, or file_path alone. Inline content may be at
most BRIDGE_MAX_CONTENT_BYTES bytes. Whether file_path lies under the allowed roots is
checked later, by the workflow, because that is where the file is read.

`parse_request` checks by hand after `json.loads` instead of through pydantic validation,
because that is what gives every refusal a precise code and a fix. It is fast enough:
about 11 µs (90,000 requests/s on one core) for a typical small request.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from bridge_dagster.events.envelope import (
    ENVELOPE_VERSION,
    READABLE_ENVELOPE_VERSIONS,
    encode,
    event_id_for,
    make_event,
)
from bridge_dagster.events.types import EventType

StampType = Literal["lightweight", "rich"]
STAMP_TYPES: tuple[str, ...] = get_args(StampType)

MAX_NAMESPACE_CHARS = 255
MAX_FILE_PATH_CHARS = 4_096
MAX_CONTENT_TYPE_CHARS = 255
MAX_INTELLIGENCE_CONTEXT_CHARS = 10_000
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 4_096

_NAMESPACE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_NAMESPACE_CHARS}}}")
_EXAMPLE_UUID = "0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f"


class RejectCode(StrEnum):
    """Why a request was refused, short enough for a metric label or a dead-letter field."""

    BAD_JSON = "bad_json"
    BAD_ENVELOPE = "bad_envelope"
    WRONG_EVENT_TYPE = "wrong_event_type"
    BAD_WORKFLOW_ID = "bad_workflow_id"
    BAD_NAMESPACE = "bad_namespace"
    NO_CONTENT = "no_content"
    MULTIPLE_CONTENT = "multiple_content"
    BAD_BASE64 = "bad_base64"
    CONTENT_TOO_LARGE = "content_too_large"
    BAD_STAMP_TYPE = "bad_stamp_type"
    WRITE_BACK_WITH_CONTENT = "write_back_with_content"
    BAD_FIELD = "bad_field"


class RequestRejected(ValueError):
    """A request that will never succeed as sent: dead-letter it, do not retry it."""

    def __init__(self, code: RejectCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class StampRequest(BaseModel):
    """A checked stamp request. Make one from message bytes with `parse_request`."""

    model_config = ConfigDict(frozen=True)

    workflow_id: UUID
    namespace: str
    content: str | None = None
    content_b64: str | None = None
    file_path: str | None = None
    content_type: str = "text/plain"
    stamp_type: StampType = "lightweight"
    enable_intelligence: bool = False
    intelligence_context: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    write_back: bool = False
    # From the envelope when the producer set them: the request's event id becomes the
    # causation id of the workflow's first event, and its time the workflow's requested_at.
    request_event_id: UUID | None = None
    requested_at: datetime | None = None

    def content_bytes(self) -> bytes | None:
        """The inline content as bytes, or None when the workflow must read file_path."""
        if self.content is not None:
            return self.content.encode()
        if self.content_b64 is not None:
            return binascii.a2b_base64(self.content_b64, strict_mode=True)
        return None


_PAYLOAD_FIELDS = frozenset(StampRequest.model_fields) - {"request_event_id", "requested_at"}


def is_valid_namespace(name: str) -> bool:
    return _NAMESPACE.fullmatch(name) is not None


def parse_request(
    raw: bytes | None, *, default_namespace: str, max_content_bytes: int
) -> StampRequest:
    """Check a request message; raises RequestRejected and nothing else for bad input."""
    envelope = _load_envelope(raw)
    payload = envelope["payload"]
    _reject_unknown_fields(payload)
    workflow_id = _workflow_id(payload, envelope)
    content, content_b64, file_path = _content_fields(payload)
    _check_content_size(content, content_b64, max_content_bytes)
    write_back = _bool(payload, "write_back")
    if write_back and (content is not None or content_b64 is not None):
        raise RequestRejected(
            RejectCode.WRITE_BACK_WITH_CONTENT,
            "write_back only applies to requests that send file_path alone; "
            "drop write_back, or send file_path without content/content_b64",
        )
    # Every field was checked above; validating again through pydantic would only repeat it.
    return StampRequest.model_construct(
        workflow_id=workflow_id,
        namespace=_namespace(payload, default_namespace),
        content=content,
        content_b64=content_b64,
        file_path=file_path,
        content_type=_text(payload, "content_type", MAX_CONTENT_TYPE_CHARS) or "text/plain",
        stamp_type=_stamp_type(payload),
        enable_intelligence=_bool(payload, "enable_intelligence"),
        intelligence_context=_text(payload, "intelligence_context", MAX_INTELLIGENCE_CONTEXT_CHARS),
        metadata=_metadata(payload),
        write_back=write_back,
        request_event_id=_envelope_uuid(envelope, "event_id"),
        requested_at=_envelope_time(envelope),
    )


def build_request(
    workflow_id: UUID,
    *,
    environment: str,
    namespace: str | None = None,
    content: str | None = None,
    content_b64: str | None = None,
    file_path: str | None = None,
    content_type: str | None = None,
    stamp_type: StampType = "lightweight",
    enable_intelligence: bool = False,
    intelligence_context: str | None = None,
    metadata: Mapping[str, str] | None = None,
    write_back: bool = False,
    source_service: str = "bridge-dagster-cli",
) -> bytes:
    """The message value for a stamp request, as `parse_request` reads it.

    Fields left as None are omitted, so the consumer's defaults apply (the namespace in
    particular comes from the consumer's DEFAULT_NAMESPACE). The event id is derived from
    the workflow id, so submitting the same workflow twice sends the same event.
    """
    optional = {
        "namespace": namespace,
        "content": content,
        "content_b64": content_b64,
        "file_path": file_path,
        "content_type": content_type,
        "intelligence_context": intelligence_context,
        "metadata": None if metadata is None else dict(metadata),
    }
    payload: dict[str, Any] = {
        "workflow_id": str(workflow_id),
        "stamp_type": stamp_type,
        "enable_intelligence": enable_intelligence,
        "write_back": write_back,
    }
    payload.update((name, value) for name, value in optional.items() if value is not None)
    envelope = make_event(
        EventType.STAMP_WORKFLOW_REQUESTED,
        payload,
        correlation_id=workflow_id,
        event_id=event_id_for(workflow_id, EventType.STAMP_WORKFLOW_REQUESTED, 0),
        source_service=source_service,
        environment=environment,
    )
    return encode(envelope)


# --- envelope --------------------------------------------------------------------------


def _load_envelope(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise RequestRejected(RejectCode.BAD_JSON, "the message has no value; send a JSON envelope")
    try:
        envelope = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RequestRejected(RejectCode.BAD_JSON, f"the message is not UTF-8 ({exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise RequestRejected(RejectCode.BAD_JSON, f"the message is not JSON ({exc})") from exc
    if not isinstance(envelope, dict):
        raise RequestRejected(
            RejectCode.BAD_ENVELOPE,
            f"the message is a JSON {type(envelope).__name__}, not an object; "
            "send an event envelope object",
        )
    if envelope.get("envelope_version") not in READABLE_ENVELOPE_VERSIONS:
        raise RequestRejected(
            RejectCode.BAD_ENVELOPE,
            f"envelope_version is {envelope.get('envelope_version')!r}; "
            f"set it to {ENVELOPE_VERSION!r} (the original OmniNode envelope's)",
        )
    if envelope.get("event_type") != EventType.STAMP_WORKFLOW_REQUESTED:
        raise RequestRejected(
            RejectCode.WRONG_EVENT_TYPE,
            f"event_type is {envelope.get('event_type')!r}; this topic takes only "
            f"'{EventType.STAMP_WORKFLOW_REQUESTED}'",
        )
    if not isinstance(envelope.get("payload"), dict):
        raise RequestRejected(
            RejectCode.BAD_ENVELOPE, "payload is missing or not an object; put the request there"
        )
    return envelope


def _envelope_uuid(envelope: dict[str, Any], name: str) -> UUID | None:
    value = envelope.get(name)
    if value is None:
        return None
    parsed = _as_uuid(value)
    if parsed is None:
        raise RequestRejected(
            RejectCode.BAD_ENVELOPE, f"{name} {value!r} is not a UUID; fix it or leave it out"
        )
    return parsed


def _envelope_time(envelope: dict[str, Any]) -> datetime | None:
    value = envelope.get("event_timestamp")
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise RequestRejected(
            RejectCode.BAD_ENVELOPE,
            f"event_timestamp {value!r} is not an ISO-8601 time with a zone; "
            "send e.g. '2025-01-31T12:00:00Z' or leave it out",
        )
    return parsed.astimezone(UTC)


# --- payload ---------------------------------------------------------------------------


def _reject_unknown_fields(payload: dict[str, Any]) -> None:
    unknown = payload.keys() - _PAYLOAD_FIELDS
    if unknown:
        raise RequestRejected(
            RejectCode.BAD_FIELD,
            f"payload field(s) {', '.join(sorted(map(repr, unknown)))} are not known; "
            f"use only {', '.join(sorted(_PAYLOAD_FIELDS))}",
        )


def _workflow_id(payload: dict[str, Any], envelope: dict[str, Any]) -> UUID:
    value = payload.get("workflow_id")
    workflow_id = _as_uuid(value)
    if workflow_id is None:
        problem = "is missing" if value is None else f"{value!r} is not a UUID"
        raise RequestRejected(
            RejectCode.BAD_WORKFLOW_ID,
            f"payload.workflow_id {problem}; set it to a UUID such as '{_EXAMPLE_UUID}'",
        )
    correlation_id = _envelope_uuid(envelope, "correlation_id")
    if correlation_id is not None and correlation_id != workflow_id:
        raise RequestRejected(
            RejectCode.BAD_WORKFLOW_ID,
            f"payload.workflow_id {workflow_id} differs from the envelope's correlation_id "
            f"{correlation_id}; set both to the workflow id",
        )
    return workflow_id


def _namespace(payload: dict[str, Any], default_namespace: str) -> str:
    value = payload.get("namespace")
    if value is None:
        return default_namespace
    if not isinstance(value, str) or not is_valid_namespace(value):
        raise RequestRejected(
            RejectCode.BAD_NAMESPACE,
            f"namespace {value!r} is not valid; use 1-{MAX_NAMESPACE_CHARS} characters "
            "from A-Z a-z 0-9 . _ - (or leave it out for the default)",
        )
    return value


def _content_fields(payload: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    content = payload.get("content")
    content_b64 = payload.get("content_b64")
    file_path = _text(payload, "file_path", MAX_FILE_PATH_CHARS)
    if content is not None and content_b64 is not None:
        raise RequestRejected(
            RejectCode.MULTIPLE_CONTENT,
            "both content and content_b64 are set; send text as content or bytes as "
            "content_b64, not both",
        )
    if content is None and content_b64 is None and file_path is None:
        raise RequestRejected(
            RejectCode.NO_CONTENT,
            "the request has nothing to stamp; set content (text), content_b64 (bytes) "
            "or file_path (a file under BRIDGE_ALLOWED_ROOTS)",
        )
    if content is not None and not isinstance(content, str):
        raise _wrong_type("content", content, "a string of UTF-8 text")
    if content_b64 is not None and not isinstance(content_b64, str):
        raise _wrong_type("content_b64", content_b64, "a base64 string")
    return content, content_b64, file_path


def _check_content_size(content: str | None, content_b64: str | None, limit: int) -> None:
    if content is not None:
        try:
            size = len(content.encode())
        except UnicodeEncodeError as exc:
            raise RequestRejected(
                RejectCode.BAD_FIELD,
                f"content is not valid Unicode text ({exc.reason}); send bytes as content_b64",
            ) from exc
    elif content_b64 is not None:
        size = len(_decode_base64(content_b64))
    else:
        return
    if size > limit:
        raise RequestRejected(
            RejectCode.CONTENT_TOO_LARGE,
            f"inline content is {size:,} bytes, over the limit of {limit:,} bytes; "
            "send a smaller file, send file_path instead, or raise BRIDGE_MAX_CONTENT_BYTES",
        )


def _decode_base64(value: str) -> bytes:
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except ValueError as exc:
        raise RequestRejected(
            RejectCode.BAD_BASE64,
            f"content_b64 is not valid base64 ({exc}); use the standard alphabet with "
            "'=' padding and no line breaks",
        ) from exc


def _stamp_type(payload: dict[str, Any]) -> StampType:
    value = payload.get("stamp_type")
    if value is None:
        return "lightweight"
    if value not in STAMP_TYPES:
        raise RequestRejected(
            RejectCode.BAD_STAMP_TYPE,
            f"stamp_type {value!r} is not known; use 'lightweight' (default) or 'rich'",
        )
    return value


def _bool(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _wrong_type(name, value, "true or false")
    return value


def _text(payload: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _storable(value):
        raise _wrong_type(name, value, "a string without NUL characters")
    if not 0 < len(value) <= max_chars:
        raise RequestRejected(
            RejectCode.BAD_FIELD,
            f"{name} has {len(value):,} characters; send 1 to {max_chars:,}, or leave it out",
        )
    return value


def _metadata(payload: dict[str, Any]) -> dict[str, str]:
    value = payload.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong_type("metadata", value, "an object of string keys to string values")
    if len(value) > MAX_METADATA_ENTRIES:
        raise RequestRejected(
            RejectCode.BAD_FIELD,
            f"metadata has {len(value)} entries; send at most {MAX_METADATA_ENTRIES}",
        )
    for key, item in value.items():
        if not isinstance(item, str) or not _storable(key) or not _storable(item):
            raise _wrong_type(f"metadata[{key!r}]", item, "a string")
        if not 0 < len(key) <= MAX_METADATA_KEY_CHARS or len(item) > MAX_METADATA_VALUE_CHARS:
            raise RequestRejected(
                RejectCode.BAD_FIELD,
                f"metadata[{key[:40]!r}] is too long; keys may have 1-{MAX_METADATA_KEY_CHARS} "
                f"characters and values up to {MAX_METADATA_VALUE_CHARS:,}",
            )
    return value


# --- small helpers ---------------------------------------------------------------------


def _as_uuid(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _storable(text: str) -> bool:
    """Whether PostgreSQL can keep `text`: it refuses NUL and lone surrogates in text/JSONB."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _wrong_type(name: str, value: object, expected: str) -> RequestRejected:
    shown = repr(value)
    if len(shown) > 60:
        shown = f"a {type(value).__name__}"
    return RequestRejected(RejectCode.BAD_FIELD, f"{name} is {shown}; send {expected}")
