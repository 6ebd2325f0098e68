"""Ranges the request sensor handed out are requested again when no run admitted them, and
workflows a run admitted but did not finish are resumed by a new run once it has ended."""

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
from bridge_dagster.orchestrator.resumption import ATTEMPT_TAG, RESUME_TAG
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.stamping import StampingResource
from bridge_dagster.sensors.stamp_requests import build_stamp_request_sensor
from tests.conftest import Topics
from tests.integration.workflow_harness import (
    HAPPY_PATH,
    count,
    engine_for,
    events_by_workflow,
    produce,
    workflow_resources,
)

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 2
sensor = build_stamp_request_sensor(
    stamp_workflow,
    max_requests_per_run=10,
    max_queue_size=100,
    interval_s=5,
    max_workflow_attempts=MAX_ATTEMPTS,
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


def unreachable_stamping() -> StampingResource:
    """A stamping service nobody listens on: the run fails after admitting its workflows."""
    return StampingResource(service_url=f"http://127.0.0.1:{free_port()}", max_retries=0)


def states(stack: Stack) -> dict[str, int]:
    with engine_for(stack.pg).connect() as conn:
        rows = conn.execute(text("SELECT state, count(*) FROM workflow_executions GROUP BY 1"))
        return {r[0]: r[1] for r in rows}


def test_workflows_of_a_run_that_ended_after_admitting_them_are_resumed_and_complete_once(
    stack: Stack, kafka_bootstrap: str, topics: Topics
) -> None:
    [first] = stack.tick()
    assert not stack.run(first, stamping=unreachable_stamping()).success
    assert states(stack) == {"processing": 3}

    [resume] = stack.tick()

    assert resume.tags[ATTEMPT_TAG] == "2"
    assert RESUME_TAG in resume.tags and RANGE_TAG not in resume.tags
    result = stack.run(resume)
    assert result.success
    assert result.output_for_node("record_results")["completed"] == 3
    assert states(stack) == {"completed": 3}
    assert stack.tick() == []
    events = events_by_workflow(kafka_bootstrap, topics.workflow)
    assert all(
        len({e["event_id"] for e in envelopes}) == len(HAPPY_PATH) for envelopes in events.values()
    )


def test_workflows_are_not_resumed_while_their_run_is_still_going(stack: Stack) -> None:
    [first] = stack.tick()
    assert not stack.run(first, stamping=unreachable_stamping()).success
    [resume] = stack.tick()
    stack.queue(resume)

    assert stack.tick() == []


def test_after_its_attempts_a_workflow_fails_with_its_reason(stack: Stack) -> None:
    [first] = stack.tick()
    assert not stack.run(first, stamping=unreachable_stamping()).success
    [second] = stack.tick()
    assert not stack.run(second, stamping=unreachable_stamping()).success

    [last] = stack.tick()

    assert last.tags[ATTEMPT_TAG] == str(MAX_ATTEMPTS + 1)
    assert stack.run(last).success
    assert states(stack) == {"failed": 3}
    with engine_for(stack.pg).connect() as conn:
        errors = conn.execute(text("SELECT error FROM workflow_executions")).scalars().all()
    assert all(
        e.startswith(f"abandoned: {MAX_ATTEMPTS} runs ended before it finished") for e in errors
    )
    assert stack.tick() == []
