"""The exporter's HTTP app: `/health` for probes and load balancers, `/metrics` for
Prometheus."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bridge_dagster.exporter.health import CHECKS, health_report
from bridge_dagster.exporter.metrics import BridgeCollector
from bridge_dagster.exporter.sources import Sources
from bridge_dagster.services.api_keys import key_accepted


def create_exporter_app(sources: Sources, *, metrics_keys: Sequence[str] = ()) -> FastAPI:
    """The app over `sources`; with `metrics_keys`, /metrics needs one of them. /health stays
    open: probes carry no credentials, and it tells nothing but up or down."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(sources))
    # Checks run side by side, so /health takes as long as the slowest, not the sum.
    pool = ThreadPoolExecutor(max_workers=2 * len(CHECKS), thread_name_prefix="health")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)
        sources.close()

    app = FastAPI(
        title="bridge-dagster exporter",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    @app.get("/health")
    def health() -> JSONResponse:
        healthy, body = health_report(sources, pool)
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        if metrics_keys and not key_accepted(_presented_key(request), metrics_keys):
            return PlainTextResponse(
                "missing or wrong API key: send the API_KEY value in X-API-Key, or as"
                " `Authorization: Bearer <key>` (Prometheus' `authorization` setting)\n",
                status_code=401,
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _presented_key(request: Request) -> str:
    # Prometheus sends credentials only as an Authorization header (before 3.0, when
    # `http_headers` came), so a bearer token counts as well as the services' X-API-Key.
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("X-API-Key", "")
