"""Workflow events go through the transactional outbox: on the topic only for a committed
change, every publication of an event id the same bytes, and `steps_executed` the same
however often a step is retried."""

import dataclasses
import json
import uuid
from collections import defaultdict
from pathlib import Path
from uuid import UUID

import dagster as dg
import pytest
from confluent_kafka import Producer
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.events.requests import build_request
from bridge_dagster.orchestrator import workflow
from bridge_dagster.orchestrator.events_out import DeliveryFailed, ProducerSink
from bridge_dagster.orchestrator.jobs import sweep_stale_workflows
from bridge_dagster.stamping import stamp_content
from tests.conftest import Topics
from tests.integration.test_stamp_workflow_recovery import _read_requests
from tests.integration.workflow_harness import (
    direct_context,
    fail_once,
    produce,
    read_all,
    workflow_resources,
)

pytestmark = pytest.mark.integration

WORKFLOWS = 3


def _broker_down(ctx: workflow.Context) -> workflow.Context:
    """The same context with a producer whose broker does not answer: nothing listens on
    the port, so every flush ends with the messages undelivered."""
    producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 2000}
    )
    return dataclasses.replace(ctx, sink=ProducerSink(producer, flush_timeout_s=5))


def _admitted(
    ctx: workflow.Context, bootstrap: str, topics: Topics
) -> tuple[list[UUID], list[workflow.Workflow]]:
    ids = [uuid.uuid4() for _ in range(WORKFLOWS)]
    produce(
        bootstrap,
        topics.requests,
        [(str(w).encode(), build_request(w, environment="test", content=f"body {w}")) for w in ids],
    )
    return ids, workflow.admit(ctx, _read_requests(bootstrap, topics)).accepted


def _publications(bootstrap: str, topic: str) -> dict[str, list[bytes]]:
    """Every message on the topic, by event id."""
    by_id: dict[str, list[bytes]] = defaultdict(list)
    for _, _, _, value in read_all(bootstrap, topic):
        by_id[json.loads(value)["event_id"]].append(value)
    return by_id


def _types(publications: dict[str, list[bytes]]) -> list[str]:
    return sorted(json.loads(values[0])["event_type"] for values in publications.values())


def _fail_next_commit_of_a_workflow_update(engine: Engine) -> None:
    """The next transaction that updates workflow_executions fails at COMMIT, as a dropped
    connection or a terminated run would."""
    fail_once(
        engine, "workflow_executions", "UPDATE", at_commit=True, message="injected commit failure"
    )


def test_a_step_whose_commit_fails_publishes_none_of_its_events(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root)
    ids, accepted = _admitted(ctx, kafka_bootstrap, topics)
    _fail_next_commit_of_a_workflow_update(ctx.engine)

    with pytest.raises(DBAPIError, match="injected commit failure"):
        workflow.start(ctx, accepted)

    # Only admission committed: each workflow's pending transition, nothing of the start.
    assert (
        _types(_publications(kafka_bootstrap, topics.workflow))
        == ["workflow_state_transition"] * WORKFLOWS
    )
    assert _outbox_rows(ctx.engine) == WORKFLOWS

    # The op's retry admits its messages again (this run's own pending workflows resume)
    # and starts them: the start's events go out, once each.
    again = workflow.admit(ctx, _read_requests(kafka_bootstrap, topics)).accepted
    assert len(workflow.start(ctx, again)) == WORKFLOWS
    published = _publications(kafka_bootstrap, topics.workflow)
    assert all(len(values) == 1 for values in published.values())
    assert _types(published) == sorted(
        ["stamp_workflow_started", "workflow_step_completed"] * WORKFLOWS
        + ["workflow_state_transition"] * 2 * WORKFLOWS
    )
    assert {UUID(json.loads(v[0])["correlation_id"]) for v in published.values()} == set(ids)


def test_a_step_retried_after_its_relay_failed_publishes_its_first_bytes_once(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root)
    ids, accepted = _admitted(ctx, kafka_bootstrap, topics)
    hashed = workflow.hash_all(ctx, workflow.start(ctx, accepted))
    deadline = workflow.Deadline.for_batch(120_000)

    # The stamp step commits its events, then the broker does not take them: the step
    # fails, as the op would, and its retry runs on the very same workflow objects.
    with pytest.raises(DeliveryFailed):
        workflow.stamp_all(_broker_down(ctx), hashed, stamp_content, deadline)
    with ctx.engine.connect() as conn:
        first = dict(
            conn.execute(
                text(
                    "SELECT o.event_id::text, o.value FROM workflow_outbox o"
                    " JOIN workflow_outbox_batches b ON b.id = o.batch_id WHERE b.sent_at IS NULL"
                )
            ).all()
        )
    assert len(first) == 2 * WORKFLOWS  # metadata_stamp_created and the step, per workflow
    stamped = workflow.stamp_all(ctx, hashed, stamp_content, deadline)
    workflow.record(ctx, stamped)

    published = _publications(kafka_bootstrap, topics.workflow)
    for event_id, value in first.items():
        # The retry built these events again with a later timestamp; the outbox kept the
        # first, and that is what went out.
        assert published[event_id] == [value.encode()]
    assert all(len(values) == 1 for values in published.values())
    with ctx.engine.connect() as conn:
        steps = conn.execute(
            text("SELECT workflow_id, steps_executed FROM workflow_executions")
        ).all()
    assert dict(steps) == {w: ["validate", "hash", "stamp", "record"] for w in ids}


def test_the_sweeper_relays_what_a_crash_left_and_prunes_ended_workflows(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root)
    _, accepted = _admitted(ctx, kafka_bootstrap, topics)
    with pytest.raises(DeliveryFailed):
        workflow.start(_broker_down(ctx), accepted)
    before = _publications(kafka_bootstrap, topics.workflow)
    resources = workflow_resources(
        pg_address, kafka_bootstrap, topics.requests, topics.workflow, project_root
    )

    first_sweep = sweep_stale_workflows.execute_in_process(resources=resources)

    after = _publications(kafka_bootstrap, topics.workflow)
    assert len(after) == len(before) + 3 * WORKFLOWS  # started, processing, validate
    # Still in flight: their sent events stay, to keep the first bytes of a re-emission.
    assert first_sweep.output_for_node("sweep_stale") == 0
    assert _outbox_rows(ctx.engine) == len(after)
    assert _pruned(first_sweep) == 0

    deadline = workflow.Deadline.for_batch(120_000)
    hashed = workflow.hash_all(ctx, accepted)
    workflow.record(ctx, workflow.stamp_all(ctx, hashed, stamp_content, deadline))
    second_sweep = sweep_stale_workflows.execute_in_process(resources=resources)

    assert _pruned(second_sweep) == len(_publications(kafka_bootstrap, topics.workflow))
    assert _outbox_rows(ctx.engine) == 0


def _pruned(result: dg.ExecuteInProcessResult) -> int:
    [output] = [e for e in result.events_for_node("sweep_stale") if e.is_successful_output]
    return output.step_output_data.metadata["outbox_events_pruned"].value


def _outbox_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM workflow_outbox")).scalar_one()
