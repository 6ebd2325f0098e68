"""Ranges the request sensor handed out are requested again when no run admitted them."""

import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from sqlalchemy import text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.events.requests import build_request
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.orchestrator.range_ledger import RANGE_TAG, REQUESTED_TAG
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.sensors.stamp_requests import build_stamp_request_sensor
from tests.conftest import Topics
from tests.integration.workflow_harness import (
    count,
    engine_for,
    produce,
    workflow_resources,
)

pytestmark = pytest.mark.integration

sensor = build_stamp_request_sensor(
    stamp_workflow, max_requests_per_run=10, max_queue_size=100, interval_s=5
)
# Dagster only queues runs that name the code location the daemon will launch them from.
QUEUE_ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("bridge_dagster"), "__repository__"),
    "stamp_workflow",
)


class Stack:
    """The sensor and the job against the real PostgreSQL and broker, on one instance."""

    def __init__(self, pg: PostgresAddress, bootstrap: str, topics: Topics, root: Path) -> None:
        self.pg = pg
        self.resources = workflow_resources(pg, bootstrap, topics.requests, topics.workflow, root)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        """One tick whose cursor is saved, as the daemon saves it with the runs it requests."""
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"kafka": self.resources["kafka"], "postgres": self.resources["postgres"]},
        ) as context:
            result = sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        self.cursor = result.cursor
        return list(result.run_requests)

    def run(self, request: dg.RunRequest, **resources: Any) -> dg.ExecuteInProcessResult:
        return stamp_workflow.execute_in_process(
            run_config=request.run_config,
            tags=request.tags,
            instance=self.instance,
            resources={**self.resources, **resources},
            raise_on_error=False,
        )

    def queue(self, request: dg.RunRequest) -> dg.DagsterRun:
        job = dg.Definitions(jobs=[stamp_workflow], resources=self.resources).get_job_def(
            stamp_workflow.name
        )
        return self.instance.create_run_for_job(
            job,
            run_config=request.run_config,
            status=dg.DagsterRunStatus.QUEUED,
            tags=request.tags,
            remote_job_origin=QUEUE_ORIGIN,
        )

    def completed(self) -> int:
        sql = "SELECT count(*) FROM workflow_executions WHERE state = 'completed'"
        return count(engine_for(self.pg), sql)

    def open_ranges(self) -> int:
        sql = "SELECT count(*) FROM request_ranges WHERE closed_at IS NULL"
        return count(engine_for(self.pg), sql)


@pytest.fixture
def stack(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> Stack:
    ids = [uuid.uuid4() for _ in range(3)]
    produce(
        kafka_bootstrap,
        topics.requests,
        [(str(w).encode(), build_request(w, environment="test", content=f"body {w}")) for w in ids],
    )
    return Stack(pg_address, kafka_bootstrap, topics, project_root)


def unreachable_postgres() -> PostgresResource:
    return PostgresResource(
        host="127.0.0.1", port=free_port(), password="unused", ssl_mode="disable"
    )


def test_a_range_whose_run_failed_before_admitting_it_is_requested_again_and_completed_once(
    stack: Stack,
) -> None:
    [first] = stack.tick()
    assert not stack.run(first, postgres=unreachable_postgres()).success

    [again] = stack.tick()

    assert again.run_config == first.run_config
    assert again.tags[RANGE_TAG] == first.tags[RANGE_TAG]
    assert again.tags[REQUESTED_TAG] == "2"
    assert again.run_key != first.run_key
    assert stack.run(again).success
    assert stack.completed() == 3
    assert stack.open_ranges() == 0
    assert stack.tick() == []


def test_a_range_is_not_requested_again_while_its_run_is_queued(stack: Stack) -> None:
    [first] = stack.tick()
    stack.queue(first)

    assert stack.tick() == []
    assert stack.open_ranges() == 1


def test_a_range_whose_queued_run_was_cancelled_is_requested_again_and_completed_once(
    stack: Stack,
) -> None:
    [first] = stack.tick()
    queued = stack.queue(first)
    stack.instance.report_run_canceled(queued)

    [again] = stack.tick()

    assert again.tags[REQUESTED_TAG] == "2"
    assert stack.run(again).success
    assert stack.completed() == 3
    assert stack.tick() == []


def test_a_range_whose_run_was_deleted_is_requested_again_and_completed_once(
    stack: Stack,
) -> None:
    [first] = stack.tick()
    stack.instance.delete_run(stack.queue(first).run_id)

    [again] = stack.tick()

    assert stack.run(again).success
    assert stack.completed() == 3
    assert stack.open_ranges() == 0


def test_a_range_requested_again_twice_counts_each_request(stack: Stack) -> None:
    [first] = stack.tick()
    broken = unreachable_postgres()
    assert not stack.run(first, postgres=broken).success
    [second] = stack.tick()
    assert not stack.run(second, postgres=broken).success

    [third] = stack.tick()

    assert third.tags[REQUESTED_TAG] == "3"
    assert stack.run(third).success
    assert stack.completed() == 3


def test_ranges_of_a_tick_whose_cursor_was_not_saved_are_handed_out_once(
    stack: Stack, kafka_bootstrap: str, topics: Topics
) -> None:
    lost_tick = stack.tick()
    stack.cursor = None  # the tick failed after recording its ranges: its cursor is not saved
    more = [uuid.uuid4() for _ in range(2)]
    produce(
        kafka_bootstrap,
        topics.requests,
        [(str(w).encode(), build_request(w, environment="test", content="x")) for w in more],
    )

    requests = stack.tick()

    assert len(lost_tick) == 1
    assert [r.tags.get(REQUESTED_TAG) for r in requests] == [None]
    with engine_for(stack.pg).connect() as conn:
        sizes = conn.execute(text("SELECT size FROM request_ranges")).scalars().all()
    assert sizes == [5]
    assert stack.run(requests[0]).success
    assert stack.completed() == 5
    assert stack.tick() == []
