"""The response envelope and API-key guard shared by both HTTP services.

Every response, success or error, is `{status, data, error, message, metadata}` so that
clients of the original services keep working unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bridge_dagster.services.api_keys import key_accepted

HEALTH_PATH_SUFFIXES = ("/health", "/health/live", "/health/ready")


class ServiceError(Exception):
    """A client-facing failure: becomes an error envelope with the given HTTP status."""

    def __init__(self, status_code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message


def ok(data: Any, message: str = "ok", metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "status": "success",
        "data": data,
        "error": None,
        "message": message,
        "metadata": metadata or {},
    }


def error_response(status_code: int, error: str, message: str) -> JSONResponse:
    body = {"status": "error", "data": None, "error": error, "message": message, "metadata": {}}
    return JSONResponse(status_code=status_code, content=body)


def install_envelope(
    app: FastAPI, api_key: str | None, previous_api_keys: Sequence[str] = ()
) -> None:
    """Wrap errors in the envelope and, when `api_key` is set, require X-API-Key off health.

    `previous_api_keys` stay accepted during a rotation, while clients move to `api_key`.
    """

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status_code, exc.error, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    if api_key is None:
        return
    accepted = (api_key, *previous_api_keys)

    open_paths: set[str] = set()

    @app.middleware("http")
    async def _require_api_key(request: Request, call_next):  # type: ignore[no-untyped-def]
        if not open_paths:
            # Exactly the app's own health routes and its API docs, read once the routes
            # exist; any other path, whatever it ends with, needs the key.
            open_paths.update(_open_paths(app))
        if request.url.path in open_paths:
            return await call_next(request)
        given = request.headers.get("X-API-Key", "")
        if not key_accepted(given, accepted):
            return error_response(
                401, "unauthorized", "missing or wrong X-API-Key header; send the API_KEY value"
            )
        return await call_next(request)


def _open_paths(app: FastAPI) -> set[str]:
    # The OpenAPI schema lists every route with its full path, included routers too.
    health = {path for path in app.openapi()["paths"] if path.endswith(HEALTH_PATH_SUFFIXES)}
    return health | {path for path in (app.docs_url, app.openapi_url) if path}
