"""Launchpad runs, write-back, crash recovery and the stale-workflow sweeper."""

import dataclasses
import json
import os
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.events.requests import build_request
from bridge_dagster.orchestrator import workflow
from bridge_dagster.orchestrator.jobs import stamp_workflow, sweep_stale_workflows
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.stamping import StampingResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings
from bridge_dagster.stamping import canonical_hash, stamp_content, validate_content
from tests.conftest import Topics
from tests.integration.workflow_harness import (
    HAPPY_PATH,
    count,
    direct_context,
    engine_for,
    events_by_workflow,
    produce,
    read_all,
    whole_topic_ranges,
    workflow_resources,
)

pytestmark = pytest.mark.integration


def _resources(pg: PostgresAddress, bootstrap: str, topics: Topics, root: Path) -> dict[str, Any]:
    return workflow_resources(pg, bootstrap, topics.requests, topics.workflow, root)


def test_a_launchpad_request_is_stamped_without_kafka_input(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    workflow_id = str(uuid.uuid4())
    config = {
        "ops": {
            "load_requests": {
                "config": {
                    "requests": [
                        {
                            "workflow_id": workflow_id,
                            "content": "print('hi')\n",
                            "file_path": "hi.py",
                            "content_type": "text/x-python",
                            "stamp_type": "rich",
                        }
                    ]
                }
            }
        }
    }

    result = stamp_workflow.execute_in_process(
        run_config=config, resources=_resources(pg_address, kafka_bootstrap, topics, project_root)
    )

    assert result.output_for_node("record_results")["completed"] == 1
    with engine_for(pg_address).connect() as conn:
        row = conn.execute(
            text(
                "SELECT state, file_hash, stamp_type FROM workflow_executions"
                " WHERE workflow_id = :w"
            ),
            {"w": workflow_id},
        ).one()
    assert tuple(row) == ("completed", canonical_hash("print('hi')\n"), "rich")


def test_write_back_leaves_a_valid_stamp_in_the_file(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    path = project_root / "notes.md"
    path.write_text("# Notes\n\nSome text.\n")
    workflow_id = uuid.uuid4()
    produce(
        kafka_bootstrap,
        topics.requests,
        [
            (
                str(workflow_id).encode(),
                build_request(
                    workflow_id, environment="test", file_path=str(path), write_back=True
                ),
            )
        ],
    )

    stamp_workflow.execute_in_process(
        run_config=whole_topic_ranges(kafka_bootstrap, topics.requests),
        resources=_resources(pg_address, kafka_bootstrap, topics, project_root),
    )

    stamped = path.read_text()
    assert stamped.startswith("# ONEX:uid=")
    assert validate_content(stamped).is_valid
    assert not list(project_root.glob(".notes.md.*"))


def test_a_retry_of_a_crashed_run_finishes_its_workflows_once(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    ids = [uuid.uuid4() for _ in range(20)]
    produce(
        kafka_bootstrap,
        topics.requests,
        [(str(w).encode(), build_request(w, environment="test", content=f"body {w}")) for w in ids],
    )
    config = whole_topic_ranges(kafka_bootstrap, topics.requests)
    run_id = str(uuid.uuid4())
    _crash_after_validation(pg_address, kafka_bootstrap, topics, project_root, run_id)
    engine = engine_for(pg_address)
    assert (
        count(engine, "SELECT count(*) FROM workflow_executions WHERE state = 'processing'") == 20
    )

    # Dagster's run retry re-executes with the crashed run as root; execute_in_process
    # takes that id directly.
    result = stamp_workflow.execute_in_process(
        run_config=config,
        run_id=run_id,
        resources=_resources(pg_address, kafka_bootstrap, topics, project_root),
    )

    assert result.output_for_node("record_results")["completed"] == 20
    assert count(engine, "SELECT count(*) FROM workflow_executions WHERE state = 'completed'") == 20
    assert count(engine, "SELECT count(*) FROM fsm_transitions") == 60
    events = events_by_workflow(kafka_bootstrap, topics.workflow)
    for workflow_id in ids:
        envelopes = events[workflow_id]
        # The retry emits the crashed attempt's events again, but the outbox already holds
        # their ids: each event is published once, as a workflow that never crashed.
        assert [(e["event_type"]) for e in envelopes] == [t for t, _ in HAPPY_PATH]
        assert len({e["event_id"] for e in envelopes}) == len(HAPPY_PATH)
        assert envelopes[-1]["event_type"] == "stamp_workflow_completed"


def _crash_after_validation(
    pg: PostgresAddress, bootstrap: str, topics: Topics, root: Path, run_id: str
) -> None:
    """Run admit and start under `run_id`, then stop, as a run killed mid-way would."""
    ctx = direct_context(pg, bootstrap, topics, root, run_id)
    workflow.start(ctx, workflow.admit(ctx, _read_requests(bootstrap, topics)).accepted)


def _read_requests(bootstrap: str, topics: Topics) -> list[workflow.Incoming]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "direct", "enable.auto.commit": False}
    )
    ranges = whole_topic_ranges(bootstrap, topics.requests)["ops"]["load_requests"]["config"]
    incoming = []
    for r in ranges["ranges"]:
        consumer.assign([TopicPartition(r["topic"], r["partition"], r["start"])])
        incoming += [
            workflow.Incoming.from_message(m)
            for m in consumer.consume(r["end"] - r["start"], timeout=10)
        ]
    consumer.close()
    return incoming


def test_a_file_gone_after_validation_fails_only_its_own_workflow(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    paths = {uuid.uuid4(): project_root / f"f{i}.txt" for i in range(3)}
    for workflow_id, path in paths.items():
        path.write_text(f"file {workflow_id}")
    produce(
        kafka_bootstrap,
        topics.requests,
        [
            (str(w).encode(), build_request(w, environment="test", file_path=str(p)))
            for w, p in paths.items()
        ],
    )
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root, "run")
    # No room to hold file content, so each step reads the file again.
    ctx = dataclasses.replace(ctx, max_run_content_bytes=0)
    started = workflow.start(
        ctx, workflow.admit(ctx, _read_requests(kafka_bootstrap, topics)).accepted
    )
    gone = started[0]
    assert gone.file is not None and gone.content is None
    gone.file.path.unlink()

    hashed = workflow.hash_all(ctx, started)
    deadline = workflow.Deadline.for_batch(120_000)
    done = workflow.record(ctx, workflow.stamp_all(ctx, hashed, stamp_content, deadline))

    assert {w.workflow_id for w in done} == set(paths) - {gone.workflow_id}
    with engine_for(pg_address).connect() as conn:
        error = conn.execute(
            text("SELECT error FROM workflow_executions WHERE workflow_id = :w"),
            {"w": gone.workflow_id},
        ).scalar_one()
    assert error.startswith("file_unreadable:")


def test_the_sweeper_fails_workflows_that_outlived_their_run(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    engine = engine_for(pg_address)
    stuck = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_executions (workflow_id, namespace, state, updated_at)"
                " VALUES (:w, 'ns', 'processing', now() - interval '1 hour')"
            ),
            {"w": stuck},
        )
    resources = _resources(pg_address, kafka_bootstrap, topics, project_root)
    resources["workflow_settings"] = WorkflowSettings(workflow_timeout_ms=60_000)

    result = sweep_stale_workflows.execute_in_process(resources=resources)

    assert result.output_for_node("sweep_stale") == 1
    with engine.connect() as conn:
        state, error = conn.execute(
            text("SELECT state, error FROM workflow_executions WHERE workflow_id = :w"),
            {"w": stuck},
        ).one()
    assert state == "failed"
    assert "timed out" in error
    events = events_by_workflow(kafka_bootstrap, topics.workflow)[stuck]
    assert [e["event_type"] for e in events] == [
        "workflow_state_transition",
        "stamp_workflow_failed",
    ]


def test_the_sweeper_leaves_recent_workflows_alone(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    engine = engine_for(pg_address)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_executions (workflow_id, namespace, state)"
                " VALUES (:w, 'ns', 'processing')"
            ),
            {"w": uuid.uuid4()},
        )
    resources = _resources(pg_address, kafka_bootstrap, topics, project_root)
    resources["workflow_settings"] = WorkflowSettings(workflow_timeout_ms=60_000)

    result = sweep_stale_workflows.execute_in_process(resources=resources)

    assert result.output_for_node("sweep_stale") == 0
    assert read_all(kafka_bootstrap, topics.workflow) == []


def test_a_database_outage_fails_the_run_and_leaves_the_requests_for_a_retry(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    workflow_id = uuid.uuid4()
    produce(
        kafka_bootstrap,
        topics.requests,
        [
            (
                str(workflow_id).encode(),
                build_request(workflow_id, environment="test", content="body"),
            )
        ],
    )
    resources = _resources(pg_address, kafka_bootstrap, topics, project_root)
    resources["postgres"] = PostgresResource(
        host="127.0.0.1", port=free_port(), password="unused", ssl_mode="disable"
    )

    result = stamp_workflow.execute_in_process(
        run_config=whole_topic_ranges(kafka_bootstrap, topics.requests),
        resources=resources,
        raise_on_error=False,
    )

    assert not result.success
    assert read_all(kafka_bootstrap, topics.requests_dlq) == []
    # The request is still on its topic; the run's retry (or a re-execution) will read it.
    assert count(engine_for(pg_address), "SELECT count(*) FROM workflow_executions") == 0


def test_the_sweeper_spares_workflows_whose_run_is_still_going(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    # Any job serves: the sweeper looks only at whether the owning run has ended.
    live_run = instance.create_run_for_job(
        sweep_stale_workflows, status=dg.DagsterRunStatus.STARTED
    )
    engine = engine_for(pg_address)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_executions"
                " (workflow_id, namespace, state, run_id, updated_at)"
                " VALUES (:w, 'ns', 'processing', :r, now() - interval '1 hour')"
            ),
            {"w": uuid.uuid4(), "r": live_run.run_id},
        )
    resources = _resources(pg_address, kafka_bootstrap, topics, project_root)
    resources["workflow_settings"] = WorkflowSettings(workflow_timeout_ms=60_000)

    result = sweep_stale_workflows.execute_in_process(resources=resources, instance=instance)

    assert result.output_for_node("sweep_stale") == 0
    assert count(engine, "SELECT count(*) FROM workflow_executions WHERE state = 'failed'") == 0


# execute_job rebuilds the job by import path, so its resources come from these variables.
RETRY_ENV = "BRIDGE_TEST_RETRY_RESOURCES"


def _job_from_env(stamping: StampingResource) -> dg.JobDefinition:
    spec = json.loads(os.environ[RETRY_ENV])
    resources = workflow_resources(
        PostgresAddress(**spec["pg"]),
        spec["bootstrap"],
        spec["requests"],
        spec["workflow"],
        Path(spec["root"]),
    )
    resources["stamping"] = stamping
    return dg.Definitions(jobs=[stamp_workflow], resources=resources).get_job_def("stamp_workflow")


def stamp_workflow_in_an_outage() -> dg.JobDefinition:
    """stamp_workflow whose stamping service nobody listens on: its stamp step fails."""
    url = json.loads(os.environ[RETRY_ENV])["dead_stamping_url"]
    return _job_from_env(StampingResource(service_url=url, max_retries=0, timeout_s=1))


def stamp_workflow_after_the_outage() -> dg.JobDefinition:
    return _job_from_env(StampingResource())


def test_re_executing_a_failed_run_resumes_its_workflows_under_its_root_run(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [uuid.uuid4() for _ in range(10)]
    produce(
        kafka_bootstrap,
        topics.requests,
        [(str(w).encode(), build_request(w, environment="test", content=f"body {w}")) for w in ids],
    )
    spec = {
        "pg": dataclasses.asdict(pg_address),
        "bootstrap": kafka_bootstrap,
        "requests": topics.requests,
        "workflow": topics.workflow,
        "root": str(project_root),
        # A stamping service nobody listens on: the stamp step fails, as in an outage.
        "dead_stamping_url": f"http://127.0.0.1:{free_port()}",
    }
    monkeypatch.setenv(RETRY_ENV, json.dumps(spec))
    config = whole_topic_ranges(kafka_bootstrap, topics.requests)
    instance = dg.DagsterInstance.ephemeral()

    failed = dg.execute_job(
        dg.reconstructable(stamp_workflow_in_an_outage), instance, run_config=config
    )
    assert not failed.success
    engine = engine_for(pg_address)
    assert (
        count(engine, "SELECT count(*) FROM workflow_executions WHERE state = 'processing'") == 10
    )

    # The service is back; re-execute every step, as the daemon's ALL_STEPS retry does.
    retried = dg.execute_job(
        dg.reconstructable(stamp_workflow_after_the_outage),
        instance,
        run_config=config,
        reexecution_options=dg.ReexecutionOptions(parent_run_id=failed.run_id),
    )

    assert retried.success
    assert instance.get_run_by_id(retried.run_id).root_run_id == failed.run_id
    assert count(engine, "SELECT count(*) FROM workflow_executions WHERE state = 'completed'") == 10
    assert count(engine, "SELECT count(*) FROM fsm_transitions") == 30
    events = events_by_workflow(kafka_bootstrap, topics.workflow)
    assert all(len({e["event_id"] for e in events[w]}) == len(HAPPY_PATH) for w in ids)
