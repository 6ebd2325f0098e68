"""stamp_workflow against a real stamping service that misbehaves for some requests.

The service is the project's own app served by uvicorn on a real socket; a middleware owned
by the test makes it answer 500, sleep past the timeout, or trickle its answer for requests
whose content carries a marker. The runs go through execute_in_process against the real
PostgreSQL and broker.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.requests import build_request
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.resources.stamping import StampingResource
from bridge_dagster.resources.tree import TreeResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings
from bridge_dagster.services.stamping_app import create_stamping_app
from tests.conftest import Topics
from tests.integration.onextree_server import serve
from tests.integration.workflow_harness import (
    engine_for,
    produce,
    whole_topic_ranges,
    workflow_resources,
)

pytestmark = pytest.mark.integration

# ORCHESTRATOR_STEP_TIMEOUT_MS of the runs, unless a test says otherwise.
STEP_TIMEOUT_MS = 1000
# Long enough that a client waiting for it would notice, short enough that uvicorn's
# shutdown, which waits for requests in flight, stays quick.
MISBEHAVE_S = 4.0


@pytest.fixture
def misbehaving_service() -> Iterator[str]:
    app = create_stamping_app()

    @app.middleware("http")
    async def _misbehave(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        body = (await request.body()).decode()
        if "SERVER_ERROR" in body:
            return JSONResponse({"message": "stamp store unavailable"}, status_code=500)
        if "SLOW" in body:
            await asyncio.sleep(MISBEHAVE_S)
        answer = await call_next(request)
        if "TRICKLE" not in body:
            return answer
        chunks = [chunk async for chunk in answer.body_iterator]  # type: ignore[attr-defined]
        return StreamingResponse(_trickle(b"".join(chunks)), media_type="application/json")

    with serve(app) as url:
        yield url


async def _trickle(payload: bytes) -> AsyncIterator[bytes]:
    for byte in payload:
        yield bytes([byte])
        await asyncio.sleep(MISBEHAVE_S / len(payload))


def _run(
    pg: PostgresAddress,
    bootstrap: str,
    topics: Topics,
    root: Path,
    service_url: str,
    contents: list[str],
    *,
    step_timeout_ms: int = STEP_TIMEOUT_MS,
    tree_url: str | None = None,
) -> dict[uuid.UUID, tuple[str, str | None]]:
    """Send one request per content, run one batch; each workflow's (state, error). With a
    `tree_url`, every request asks that tree service for intelligence."""
    ids = [uuid.uuid4() for _ in contents]
    produce(
        bootstrap,
        topics.requests,
        [
            (
                str(w).encode(),
                build_request(
                    w, environment="test", content=c, enable_intelligence=tree_url is not None
                ),
            )
            for w, c in zip(ids, contents, strict=True)
        ],
    )
    resources: dict[str, Any] = workflow_resources(
        pg, bootstrap, topics.requests, topics.workflow, root
    )
    # As definitions.py sets them: both from the one setting.
    resources["stamping"] = StampingResource(
        service_url=service_url, timeout_s=step_timeout_ms / 1000, max_retries=2
    )
    if tree_url is not None:
        resources["tree"] = TreeResource(
            service_url=tree_url, timeout_s=step_timeout_ms / 1000, max_retries=2
        )
    resources["workflow_settings"] = WorkflowSettings(
        allowed_roots=[str(root)], environment="test", step_timeout_ms=step_timeout_ms
    )
    result = stamp_workflow.execute_in_process(
        run_config=whole_topic_ranges(bootstrap, topics.requests), resources=resources
    )
    assert result.success
    with engine_for(pg).connect() as conn:
        rows = conn.execute(text("SELECT workflow_id, state, error FROM workflow_executions"))
        states = {row.workflow_id: (row.state, row.error) for row in rows}
    return {w: states[w] for w in ids}


def _code(outcome: tuple[str, str | None]) -> str:
    state, error = outcome
    return state if error is None else f"{state} {error.partition(':')[0]}"


def test_a_service_error_for_one_request_fails_that_workflow_only(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    misbehaving_service: str,
) -> None:
    contents = ["print(1)\n", "SERVER_ERROR print(2)\n", "print(3)\n"]

    outcomes = _run(
        pg_address, kafka_bootstrap, topics, project_root, misbehaving_service, contents
    )

    assert [_code(o) for o in outcomes.values()] == [
        "completed",
        "failed stamp_failed",
        "completed",
    ]
    error = list(outcomes.values())[1][1]
    assert error is not None and "3 attempts" in error and "stamp store unavailable" in error


def test_a_request_the_service_answers_too_slowly_fails_with_stamp_timeout(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    misbehaving_service: str,
) -> None:
    contents = ["SLOW print(1)\n", "print(2)\n"]

    outcomes = _run(
        pg_address, kafka_bootstrap, topics, project_root, misbehaving_service, contents
    )

    assert [_code(o) for o in outcomes.values()] == ["failed stamp_timeout", "completed"]


def test_a_trickled_answer_fails_its_request_at_the_timeout(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    misbehaving_service: str,
) -> None:
    contents = ["TRICKLE print(1)\n", "print(2)\n"]

    started = time.monotonic()
    outcomes = _run(
        pg_address, kafka_bootstrap, topics, project_root, misbehaving_service, contents
    )

    assert [_code(o) for o in outcomes.values()] == ["failed stamp_timeout", "completed"]
    # The trickle alone lasts MISBEHAVE_S; the whole run must not wait for it.
    assert time.monotonic() - started < MISBEHAVE_S + 3


def test_a_batch_past_its_deadline_fails_its_unfinished_requests_with_the_reason(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    misbehaving_service: str,
) -> None:
    # Step timeout 0.3 s: the batch stops calling the service 3 s after it started, so of
    # 15 requests that each use a whole call, at most 11 are tried.
    contents = [f"SLOW print({i})\n" for i in range(15)]

    outcomes = _run(
        pg_address,
        kafka_bootstrap,
        topics,
        project_root,
        misbehaving_service,
        contents,
        step_timeout_ms=300,
    )

    codes = [_code(o) for o in outcomes.values()]
    assert set(codes) == {"failed stamp_timeout", "failed batch_deadline"}
    assert codes.count("failed stamp_timeout") <= 11
    deadline_error = next(e for s, e in outcomes.values() if e and e.startswith("batch_deadline"))
    assert "ORCHESTRATOR_STEP_TIMEOUT_MS" in deadline_error


def test_a_hung_tree_service_cannot_keep_a_batch_past_its_deadline(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    misbehaving_service: str,
) -> None:
    hung_tree = FastAPI()
    calls: list[float] = []

    @hung_tree.post("/intelligence")
    async def _hang() -> None:
        calls.append(time.monotonic())
        await asyncio.sleep(MISBEHAVE_S)

    contents = [f"print({i})\n" for i in range(15)]
    with serve(hung_tree) as tree_url:
        outcomes = _run(
            pg_address,
            kafka_bootstrap,
            topics,
            project_root,
            misbehaving_service,
            contents,
            step_timeout_ms=300,
            tree_url=tree_url,
        )

    # Each call degrades after 0.3 s; once the 3 s are gone no more are made, and every
    # workflow still unfinished fails with the reason.
    assert len(calls) <= 11
    assert {_code(o) for o in outcomes.values()} == {"failed batch_deadline"}
