"""The MetadataStamping HTTP API, served from the in-process stamping engine.

Routes live under `/api/v1/metadata-stamping`; every answer is the shared envelope.
`GET /stamp/{file_hash}` reads stored stamps through `stamp_lookup`, which
`stamp_lookup_from_engine` builds over the `metadata_stamps` table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Path, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge_dagster.db.tables import metadata_stamps
from bridge_dagster.services.envelope import ServiceError, error_response, install_envelope, ok
from bridge_dagster.stamping import (
    DEFAULT_MAX_CONTENT_BYTES,
    ContentTooLarge,
    StampingError,
    StampResult,
    StampType,
    check_content_size,
    raw_hash,
    stamp_content,
    validate_content,
)

PREFIX = "/api/v1/metadata-stamping"
SERVICE_NAME = "metadata-stamping"
MAX_BATCH_ITEMS = 1000
# JSON escapes can make a body up to 6x the text it carries (\uXXXX for one byte).
_JSON_ESCAPE_FACTOR = 6
_BODY_ALLOWANCE_BYTES = 1024 * 1024
HASH_PATTERN = r"^[0-9a-fA-F]{64}$"
NO_DATABASE_MESSAGE = (
    "looking up stamps needs a database: set POSTGRES_HOST, POSTGRES_PORT, "
    "POSTGRES_DATABASE, POSTGRES_USER and POSTGRES_PASSWORD for the stamping service"
)

StampLookup = Callable[[str], dict[str, Any] | None]


class StampStoreUnavailable(Exception):
    """The stamp store could not be read; the message says why."""


class StampOptions(BaseModel):
    stamp_type: StampType = "lightweight"
    author: str | None = Field(default=None, max_length=256)
    version: str | None = Field(default=None, max_length=64)
    stamp_id: uuid.UUID | None = Field(
        default=None, description="Makes the stamp deterministic; a new UUID4 when unset."
    )
    created_at: datetime | None = Field(
        default=None, description="Stamp time (time zone required); now when unset."
    )


class StampRequest(BaseModel):
    content: str
    file_path: str | None = Field(default=None, max_length=4096)
    content_type: str = Field(default="text/plain", max_length=255)
    options: StampOptions = Field(default_factory=StampOptions)
    metadata: dict[str, Any] | None = None
    namespace: str | None = Field(default=None, min_length=1, max_length=255)


class ValidateOptions(BaseModel):
    expected_hash: str | None = Field(default=None, pattern=HASH_PATTERN)


class ValidateRequest(BaseModel):
    content: str
    options: ValidateOptions = Field(default_factory=ValidateOptions)
    namespace: str | None = Field(default=None, min_length=1, max_length=255)


class BatchRequestItem(BaseModel):
    id: str = Field(min_length=1, max_length=255)
    content: str
    file_path: str | None = Field(default=None, max_length=4096)
    content_type: str = Field(default="text/plain", max_length=255)
    options: StampOptions = Field(default_factory=StampOptions)


class BatchRequest(BaseModel):
    items: list[BatchRequestItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
    namespace: str | None = Field(default=None, min_length=1, max_length=255)


def create_stamping_app(
    *,
    api_key: str | None = None,
    previous_api_keys: Sequence[str] = (),
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
    stamp_lookup: StampLookup | None = None,
) -> FastAPI:
    """The stamping service. Without `stamp_lookup`, GET /stamp/{file_hash} answers 503."""
    app = FastAPI(title="MetadataStampingService", version="1.0.0")
    install_envelope(app, api_key, previous_api_keys)
    _refuse_oversize_bodies(app, max_content_bytes * _JSON_ESCAPE_FACTOR + _BODY_ALLOWANCE_BYTES)

    @app.exception_handler(StampingError)
    async def _stamping_error(_: Request, exc: StampingError) -> JSONResponse:
        status = 413 if isinstance(exc, ContentTooLarge) else 422
        return error_response(status, type(exc).__name__, str(exc))

    app.include_router(_routes(max_content_bytes, stamp_lookup), prefix=PREFIX)
    return app


def stamp_lookup_from_engine(engine: Engine) -> StampLookup:
    """A lookup returning the newest `metadata_stamps` row for a file hash, as a dict."""
    query = (
        select(metadata_stamps)
        .where(metadata_stamps.c.file_hash == bindparam("file_hash"))
        .order_by(metadata_stamps.c.created_at.desc())
        .limit(1)
    )

    def lookup(file_hash: str) -> dict[str, Any] | None:
        try:
            with engine.connect() as connection:
                row = connection.execute(query, {"file_hash": file_hash}).mappings().first()
        except SQLAlchemyError as exc:
            raise StampStoreUnavailable(f"reading metadata_stamps failed: {exc}") from exc
        return dict(row) if row is not None else None

    return lookup


def _routes(max_content_bytes: int, stamp_lookup: StampLookup | None) -> APIRouter:
    router = APIRouter()

    @router.post("/stamp")
    def stamp(request: StampRequest) -> dict[str, Any]:
        started = time.perf_counter()
        result = _stamp(request, request.options, max_content_bytes)
        data = {
            **_stamp_data(result),
            "success": True,
            "file_path": request.file_path,
            "content_type": request.content_type,
            "namespace": request.namespace,
            "metadata": request.metadata or {},
            "execution_time_ms": _elapsed_ms(started),
        }
        return ok(data, message="content stamped")

    @router.post("/validate")
    def validate(request: ValidateRequest) -> dict[str, Any]:
        check_content_size(len(request.content.encode("utf-8", "surrogatepass")), max_content_bytes)
        result = validate_content(request.content, expected_hash=request.options.expected_hash)
        data = {
            "success": True,
            "is_valid": result.is_valid,
            "stamps_found": result.stamps_found,
            "current_hash": result.current_hash,
            "expected_hash": result.expected_hash,
            "namespace": request.namespace,
            "validation_details": [
                {
                    "stamp_type": check.stamp_type,
                    "stamp_id": check.stamp_id,
                    "stamp_hash": check.stamp_hash,
                    "is_valid": check.is_valid,
                    "reason": check.reason,
                }
                for check in result.details
            ],
        }
        return ok(data, message=result.message)

    @router.post("/hash")
    async def hash_file(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        started = time.perf_counter()
        data = await file.read(max_content_bytes + 1)
        check_content_size(len(data), max_content_bytes)
        return ok(
            {
                "file_hash": raw_hash(data),
                "execution_time_ms": _elapsed_ms(started),
                "file_size_bytes": len(data),
            },
            message="file hashed",
        )

    @router.get("/stamp/{file_hash}")
    def get_stamp(file_hash: Annotated[str, Path(pattern=HASH_PATTERN)]) -> dict[str, Any]:
        if stamp_lookup is None:
            raise ServiceError(503, "database_not_configured", NO_DATABASE_MESSAGE)
        try:
            row = stamp_lookup(file_hash.lower())
        except StampStoreUnavailable as exc:
            raise ServiceError(503, "database_unavailable", str(exc)) from exc
        if row is None:
            raise ServiceError(404, "not_found", f"no stamp recorded for hash {file_hash}")
        return ok(jsonable_encoder(row), message="stamp found")

    @router.post("/batch")
    def batch(request: BatchRequest) -> dict[str, Any]:
        results = [_batch_item(item, max_content_bytes) for item in request.items]
        failed = sum(1 for result in results if not result["success"])
        data = {
            "success": failed == 0,
            "total": len(results),
            "succeeded": len(results) - failed,
            "failed": failed,
            "namespace": request.namespace,
            "results": results,
        }
        return ok(data, message=f"{len(results) - failed} of {len(results)} items stamped")

    @router.get("/health")
    def health() -> dict[str, Any]:
        return ok(_health(stamp_lookup), message="healthy")

    @router.get("/health/live")
    def live() -> dict[str, Any]:
        return ok({"status": "alive", "service": SERVICE_NAME}, message="alive")

    @router.get("/health/ready")
    def ready() -> dict[str, Any]:
        return ok(_health(stamp_lookup), message="ready")

    return router


def _stamp(item: StampRequest | BatchRequestItem, options: StampOptions, limit: int) -> StampResult:
    return stamp_content(
        item.content,
        stamp_type=options.stamp_type,
        file_path=item.file_path,
        content_type=item.content_type,
        author=options.author,
        version=options.version,
        now=options.created_at,
        stamp_id=options.stamp_id,
        max_bytes=limit,
    )


def _stamp_data(result: StampResult) -> dict[str, Any]:
    return {
        "stamp_id": str(result.stamp_id),
        "file_hash": result.file_hash,
        "stamp": result.stamp,
        "stamp_type": result.stamp_type,
        "stamped_content": result.stamped_content,
        "created_at": result.created_at.isoformat(),
        "file_size": result.file_size,
    }


def _batch_item(item: BatchRequestItem, limit: int) -> dict[str, Any]:
    try:
        result = _stamp(item, item.options, limit)
    except StampingError as exc:
        return {"id": item.id, "success": False, "error": str(exc)}
    return {"id": item.id, "success": True, "error": None, **_stamp_data(result)}


def _health(stamp_lookup: StampLookup | None) -> dict[str, Any]:
    return {
        "status": "healthy",
        "service": SERVICE_NAME,
        "stamp_lookup": "configured" if stamp_lookup is not None else "not configured",
    }


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _refuse_oversize_bodies(app: FastAPI, limit: int) -> None:
    app.add_middleware(_BodyLimit, limit=limit)


class _BodyLimit:
    """Answer 413 for a body over `limit`: from Content-Length before reading it, or, when
    the client streams without one (chunked), by reading up to the limit first."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                await self._refuse(int(declared), scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        messages, size = await self._read_up_to_limit(receive)
        if size > self.limit:
            await self._refuse(size, scope, receive, send)
            return
        replay = iter(messages)

        async def replayed() -> Message:
            # Raising inside the app's body read would come back as FastAPI's 400, so
            # the body is read here and handed over as it arrived.
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    async def _read_up_to_limit(self, receive: Receive) -> tuple[list[Message], int]:
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return messages, size
            if size > self.limit:
                return messages, size

    async def _refuse(self, size: int, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "ContentTooLarge",
            f"request body is over {size:,} bytes, past the {self.limit:,}-byte limit; "
            "send less or raise BRIDGE_MAX_CONTENT_BYTES",
        )
        await response(scope, receive, send)
