"""Dagster resource for stamping: the in-process engine or the MetadataStamping service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

import dagster as dg
from pydantic import Field, PrivateAttr

from bridge_dagster.resources.http_client import (
    EnvelopeClient,
    ServiceRejected,
    ServiceTimedOut,
    ServiceUnavailable,
    ServiceUnreachable,
)
from bridge_dagster.stamping import (
    InvalidContent,
    StampingError,
    StampResult,
    StampType,
    stamp_content,
)

_STAMPING_PREFIX = "/api/v1/metadata-stamping"


class StampingServiceRejected(StampingError):
    """The service answered 4xx: the request itself is wrong, so it is not retried."""


class StampingServiceUnavailable(RuntimeError):
    """The service kept failing (connection errors or 5xx) until the retries ran out."""


# The workflow steps tell these apart by the client's classes: a timeout fails its request,
# an unreachable service fails the run, so that a retry of the run takes the batch over.
class StampingServiceTimedOut(StampingServiceUnavailable, ServiceTimedOut):
    """The service took the whole call timeout without finishing its answer."""


class StampingServiceUnreachable(StampingServiceUnavailable, ServiceUnreachable):
    """No attempt reached the service."""


class _Backend(Protocol):
    def stamp(
        self,
        content: str | bytes,
        *,
        stamp_type: StampType,
        file_path: str | None,
        content_type: str,
        stamp_id: uuid.UUID | None,
        now: datetime | None,
    ) -> StampResult: ...

    def close(self) -> None: ...


class StampingResource(dg.ConfigurableResource):
    """Stamps content for workflows, in process or through the MetadataStamping service.

    Both backends return the same `StampResult`; rejected content raises a `StampingError`
    (a ValueError) either way.
    """

    service_url: str | None = Field(
        default=None,
        description="MetadataStamping service base URL (METADATA_STAMPING_SERVICE_URL); "
        "unset stamps in process.",
    )
    timeout_s: float = Field(
        default=30.0, gt=0, description="The longest one call may take, retries included."
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        description="Retries after connection errors and 5xx answers, while the call has time.",
    )
    api_key: str | None = Field(default=None, description="X-API-Key for the service.")

    _backend: _Backend | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.service_url:
            self._backend = _HttpBackend(
                self.service_url, self.timeout_s, self.max_retries, self.api_key
            )
        else:
            self._backend = _EngineBackend()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._backend is not None:
            self._backend.close()

    def stamp(
        self,
        content: str | bytes,
        *,
        stamp_type: StampType = "lightweight",
        file_path: str | None = None,
        content_type: str = "text/plain",
        stamp_id: uuid.UUID | None = None,
        now: datetime | None = None,
    ) -> StampResult:
        """Stamp `content`, replacing stamps it carries; see `stamping.stamp_content`."""
        return self._ready().stamp(
            content,
            stamp_type=stamp_type,
            file_path=file_path,
            content_type=content_type,
            stamp_id=stamp_id,
            now=now,
        )

    def _ready(self) -> _Backend:
        if self._backend is None:
            raise RuntimeError(
                "StampingResource is not set up; use it inside a run or dg.build_resources"
            )
        return self._backend


class _EngineBackend:
    def stamp(
        self,
        content: str | bytes,
        *,
        stamp_type: StampType,
        file_path: str | None,
        content_type: str,
        stamp_id: uuid.UUID | None,
        now: datetime | None,
    ) -> StampResult:
        return stamp_content(
            content,
            stamp_type=stamp_type,
            file_path=file_path,
            content_type=content_type,
            stamp_id=stamp_id,
            now=now,
        )

    def close(self) -> None:
        """Nothing to release: the engine holds no connections."""


class _HttpBackend:
    def __init__(
        self, service_url: str, timeout_s: float, max_retries: int, api_key: str | None
    ) -> None:
        self.client = EnvelopeClient(
            service_url.rstrip("/") + _STAMPING_PREFIX, timeout_s, max_retries, api_key
        )

    def stamp(
        self,
        content: str | bytes,
        *,
        stamp_type: StampType,
        file_path: str | None,
        content_type: str,
        stamp_id: uuid.UUID | None,
        now: datetime | None,
    ) -> StampResult:
        options: dict[str, Any] = {"stamp_type": stamp_type}
        if stamp_id is not None:
            options["stamp_id"] = str(stamp_id)
        if now is not None:
            options["created_at"] = now.isoformat()
        body = {
            "content": _text(content),
            "file_path": file_path,
            "content_type": content_type,
            "options": options,
        }
        data = self._post("/stamp", body)
        text = data["stamped_content"]
        return StampResult(
            stamp_id=uuid.UUID(data["stamp_id"]),
            file_hash=data["file_hash"],
            stamp=data["stamp"],
            stamp_type=data["stamp_type"],
            created_at=datetime.fromisoformat(data["created_at"]),
            file_size=data["file_size"],
            content_parts=None if text is None else (text,),
        )

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        # Stamping stores nothing on the service, so the client may repeat a request.
        try:
            return self.client.post(path, body)
        except ServiceRejected as exc:
            raise StampingServiceRejected(str(exc)) from exc
        except ServiceUnavailable as exc:
            kind = StampingServiceUnavailable
            if isinstance(exc, ServiceTimedOut):
                kind = StampingServiceTimedOut
            elif isinstance(exc, ServiceUnreachable):
                kind = StampingServiceUnreachable
            raise kind(
                f"stamping service: {exc}; check that it runs (bridge-dagster serve stamping) "
                "or unset METADATA_STAMPING_SERVICE_URL to stamp in process"
            ) from exc


def _text(content: str | bytes) -> str:
    if isinstance(content, str):
        return content
    try:
        return content.decode()
    except UnicodeDecodeError:
        raise InvalidContent(
            "content is not valid UTF-8, and the stamping service takes text only; unset "
            "METADATA_STAMPING_SERVICE_URL to stamp binary content in process"
        ) from None
