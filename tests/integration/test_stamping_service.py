"""The MetadataStamping service over real HTTP, driven by StampingResource and httpx."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine

from bridge_dagster.db.tables import metadata_stamps
from bridge_dagster.resources.http_client import BACKOFF_BASE_S
from bridge_dagster.resources.stamping import (
    StampingResource,
    StampingServiceRejected,
    StampingServiceUnavailable,
)
from bridge_dagster.services.stamping_app import (
    PREFIX,
    create_stamping_app,
    stamp_lookup_from_engine,
)
from bridge_dagster.stamping import canonical_hash, raw_hash, stamp_content
from tests.integration.onextree_server import serve

pytestmark = pytest.mark.integration

API_KEY = "test-key-123"
CONTENT = "def main():\n    return 42\n"
NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
STAMP_ID = uuid.UUID("0b6f7d2e-1c4a-4c59-9e0e-6c1d3f1f2a10")


@contextmanager
def stamping(url: str, **config: object) -> Iterator[StampingResource]:
    with dg.build_resources({"stamping": StampingResource(service_url=url, **config)}) as res:
        yield res.stamping


def count_requests(app: FastAPI) -> list[str]:
    """Paths of the requests the app receives, in order."""
    seen: list[str] = []

    @app.middleware("http")
    async def _count(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        seen.append(request.url.path)
        return await call_next(request)

    return seen


@pytest.fixture
def service_url() -> Iterator[str]:
    with serve(create_stamping_app()) as url:
        yield url


def test_a_stamp_made_by_the_service_equals_the_in_process_stamp(service_url: str) -> None:
    with stamping(service_url) as resource:
        remote = resource.stamp(CONTENT.encode(), stamp_type="rich", stamp_id=STAMP_ID, now=NOW)
    local = stamp_content(CONTENT, stamp_type="rich", stamp_id=STAMP_ID, now=NOW)

    assert remote == local
    assert remote.stamped_content == local.stamped_content


def test_a_stamp_through_the_service_carries_the_canonical_hash(service_url: str) -> None:
    with stamping(service_url) as resource:
        result = resource.stamp("\n" + CONTENT + "\n\n\n")

    assert result.file_hash == canonical_hash(CONTENT)


def test_the_service_validates_content_it_stamped(service_url: str) -> None:
    with stamping(service_url) as resource:
        stamped = resource.stamp(CONTENT).stamped_content

    response = httpx.post(f"{service_url}{PREFIX}/validate", json={"content": stamped})

    data = response.json()["data"]
    assert (data["is_valid"], data["stamps_found"]) == (True, 1)
    assert data["validation_details"][0]["stamp_hash"] == canonical_hash(CONTENT)


def test_an_uploaded_file_is_hashed_as_raw_bytes(service_url: str) -> None:
    upload = b"\n  raw bytes, kept as they are  \n\n\n"

    response = httpx.post(f"{service_url}{PREFIX}/hash", files={"file": ("f.bin", upload)})

    data = response.json()["data"]
    assert (data["file_hash"], data["file_size_bytes"]) == (raw_hash(upload), len(upload))


def test_a_rejected_request_is_not_retried() -> None:
    app = create_stamping_app(max_content_bytes=10)
    seen = count_requests(app)

    with (
        serve(app) as url,
        stamping(url, max_retries=3) as resource,
        pytest.raises(StampingServiceRejected, match=r"413.*over the 10-byte limit"),
    ):
        resource.stamp("far more than ten bytes")

    assert seen == [f"{PREFIX}/stamp"]


def test_a_server_error_is_retried_until_the_service_answers() -> None:
    app = create_stamping_app()
    failures_left = [2]

    @app.middleware("http")
    async def _fail_twice(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        if failures_left[0]:
            failures_left[0] -= 1
            return JSONResponse({"message": "warming up"}, status_code=503)
        return await call_next(request)

    with serve(app) as url, stamping(url, max_retries=2) as resource:
        result = resource.stamp(CONTENT)

    assert result.file_hash == canonical_hash(CONTENT)
    assert failures_left == [0]


def test_a_stopped_service_fails_clearly_once_retries_run_out() -> None:
    with serve(create_stamping_app()) as url:
        pass  # the service stops here

    started = time.monotonic()
    with (
        stamping(url, max_retries=2, timeout_s=2.0) as resource,
        pytest.raises(StampingServiceUnavailable) as failure,
    ):
        resource.stamp(CONTENT)

    assert url in str(failure.value)
    assert "after 3 attempts" in str(failure.value)
    assert "METADATA_STAMPING_SERVICE_URL" in str(failure.value)
    assert time.monotonic() - started >= BACKOFF_BASE_S * (1 + 2)


def test_the_api_key_is_required_off_health() -> None:
    with serve(create_stamping_app(api_key=API_KEY)) as url:
        without = httpx.post(f"{url}{PREFIX}/stamp", json={"content": CONTENT})
        with_key = httpx.post(
            f"{url}{PREFIX}/stamp", json={"content": CONTENT}, headers={"X-API-Key": API_KEY}
        )
        health = httpx.get(f"{url}{PREFIX}/health")

    assert (without.status_code, with_key.status_code, health.status_code) == (401, 200, 200)


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"content": "'
        for _ in range(64):
            yield b"x" * 65_536
        yield b'"}'

    with serve(create_stamping_app(max_content_bytes=10)) as url:
        response = httpx.post(
            f"{url}{PREFIX}/stamp", content=chunks(), headers={"content-type": "application/json"}
        )

    assert response.status_code == 413
    assert "BRIDGE_MAX_CONTENT_BYTES" in response.json()["message"]


def test_a_streamed_body_within_the_limit_is_served_as_usual(service_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"content": '
        yield json.dumps(CONTENT).encode()
        yield b"}"

    response = httpx.post(
        f"{service_url}{PREFIX}/stamp",
        content=chunks(),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 200
    assert response.json()["data"]["file_hash"] == canonical_hash(CONTENT)


def test_a_path_that_only_ends_like_health_still_needs_the_api_key() -> None:
    with serve(create_stamping_app(api_key=API_KEY)) as url:
        lookalike = httpx.get(f"{url}{PREFIX}/stamp/health")

    assert lookalike.status_code == 401


def test_the_resource_sends_the_api_key() -> None:
    with (
        serve(create_stamping_app(api_key=API_KEY)) as url,
        stamping(url, api_key=API_KEY) as resource,
    ):
        assert resource.stamp(CONTENT).file_hash == canonical_hash(CONTENT)


def test_looking_up_a_stamp_without_a_database_answers_503(service_url: str) -> None:
    response = httpx.get(f"{service_url}{PREFIX}/stamp/{canonical_hash(CONTENT)}")

    assert response.status_code == 503
    assert "POSTGRES_HOST" in response.json()["message"]


def test_a_stored_stamp_is_found_by_its_hash_and_an_unknown_hash_is_404() -> None:
    # A dict stands in for the table here; the PostgreSQL-backed lookup has its own test.
    stored = stamp_content(CONTENT, stamp_id=STAMP_ID, now=NOW)
    rows = {stored.file_hash: {"stamp_id": stored.stamp_id, "stamp": stored.stamp}}

    with serve(create_stamping_app(stamp_lookup=rows.get)) as url:
        found = httpx.get(f"{url}{PREFIX}/stamp/{stored.file_hash}")
        missing = httpx.get(f"{url}{PREFIX}/stamp/{canonical_hash('other')}")

    assert found.json()["data"] == {"stamp_id": str(STAMP_ID), "stamp": stored.stamp}
    assert missing.status_code == 404


def test_a_malformed_hash_is_refused(service_url: str) -> None:
    response = httpx.get(f"{service_url}{PREFIX}/stamp/not-a-hash")

    assert response.status_code == 422


def test_the_database_lookup_serves_the_newest_stamp_for_a_hash(pg_url: str) -> None:
    older = stamp_content(CONTENT, now=NOW)
    newer = stamp_content(CONTENT, now=NOW + timedelta(hours=1))
    engine = create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(
            metadata_stamps.insert(),
            [
                {
                    "stamp_id": result.stamp_id,
                    "file_hash": result.file_hash,
                    "namespace": "tests",
                    "stamp_type": result.stamp_type,
                    "stamp": result.stamp,
                    "created_at": result.created_at,
                }
                for result in (older, newer)
            ],
        )

    with serve(create_stamping_app(stamp_lookup=stamp_lookup_from_engine(engine))) as url:
        found = httpx.get(f"{url}{PREFIX}/stamp/{newer.file_hash}")
    engine.dispose()

    assert found.json()["data"]["stamp_id"] == str(newer.stamp_id)
    assert found.json()["data"]["stamp"] == newer.stamp
