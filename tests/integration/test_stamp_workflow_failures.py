"""A stamp_workflow run whose batch had failures says so: a tag, and a warning per workflow."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import dagster as dg
import pytest

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.requests import build_request
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.orchestrator.ops import FAILED_TAG, MAX_FAILURE_WARNINGS
from tests.conftest import Topics
from tests.integration.workflow_harness import produce, whole_topic_ranges, workflow_resources

pytestmark = pytest.mark.integration


def good(workflow_id: uuid.UUID) -> tuple[bytes, bytes]:
    return str(workflow_id).encode(), build_request(
        workflow_id, environment="test", content="print('ok')\n"
    )


def bad_stamp_type(workflow_id: uuid.UUID) -> tuple[bytes, bytes]:
    # build_request checks its fields, so the bad value goes in after it.
    value = build_request(workflow_id, environment="test", content="x").replace(
        b'"lightweight"', b'"gold"'
    )
    return str(workflow_id).encode(), value


def run_topic(
    pg: PostgresAddress, bootstrap: str, topics: Topics, root: Path
) -> tuple[dg.DagsterInstance, dg.ExecuteInProcessResult]:
    instance = dg.DagsterInstance.ephemeral()
    result = stamp_workflow.execute_in_process(
        run_config=whole_topic_ranges(bootstrap, topics.requests),
        resources=workflow_resources(pg, bootstrap, topics.requests, topics.workflow, root),
        instance=instance,
    )
    assert result.success
    return instance, result


def warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if entry.level == logging.WARNING and entry.dagster_event is None
    ]


def test_a_run_with_failed_workflows_is_tagged_and_names_each_with_its_reason_code(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    failing = [uuid.uuid4(), uuid.uuid4()]
    messages = [good(uuid.uuid4()), *map(bad_stamp_type, failing), good(uuid.uuid4())]
    produce(kafka_bootstrap, topics.requests, messages)

    instance, result = run_topic(pg_address, kafka_bootstrap, topics, project_root)

    assert instance.get_run_by_id(result.run_id).tags[FAILED_TAG] == "2"
    logged = warnings(instance, result.run_id)
    assert len(logged) == 2
    for workflow_id in failing:
        [line] = [w for w in logged if str(workflow_id) in w]
        assert line.startswith(f"workflow {workflow_id} failed (bad_stamp_type): ")


def test_a_run_without_failures_carries_no_failure_tag_or_warning(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    produce(kafka_bootstrap, topics.requests, [good(uuid.uuid4()) for _ in range(3)])

    instance, result = run_topic(pg_address, kafka_bootstrap, topics, project_root)

    assert FAILED_TAG not in instance.get_run_by_id(result.run_id).tags
    assert warnings(instance, result.run_id) == []


def test_failure_warnings_are_capped_with_one_line_for_the_rest(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    extra = 5
    bad = [bad_stamp_type(uuid.uuid4()) for _ in range(MAX_FAILURE_WARNINGS + extra)]
    produce(kafka_bootstrap, topics.requests, bad)

    instance, result = run_topic(pg_address, kafka_bootstrap, topics, project_root)

    assert instance.get_run_by_id(result.run_id).tags[FAILED_TAG] == str(len(bad))
    logged = warnings(instance, result.run_id)
    assert len(logged) == MAX_FAILURE_WARNINGS + 1
    assert logged[-1].startswith(f"{extra} more workflows failed in this run; list them all")
    assert "bridge-dagster status --failed --since " in logged[-1]


def test_a_message_without_a_workflow_id_is_counted_and_pointed_to_the_dead_letter_topic(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    produce(kafka_bootstrap, topics.requests, [(None, b"{not json"), good(uuid.uuid4())])

    instance, result = run_topic(pg_address, kafka_bootstrap, topics, project_root)

    assert instance.get_run_by_id(result.run_id).tags[FAILED_TAG] == "1"
    [line] = warnings(instance, result.run_id)
    assert line.startswith("1 failed requests created no workflow of their own")
    assert topics.requests_dlq in line


def test_the_offsets_read_are_labelled_half_open(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    # One key, so the three land in one partition, at offsets 0, 1 and 2.
    values = [good(uuid.uuid4())[1] for _ in range(3)]
    produce(kafka_bootstrap, topics.requests, [(b"one-key", value) for value in values])

    _, result = run_topic(pg_address, kafka_bootstrap, topics, project_root)

    [output] = [
        e
        for e in result.all_node_events
        if e.is_successful_output and e.node_name == "load_requests"
    ]
    label = output.step_output_data.metadata["offsets [start, end)"].value
    assert label.endswith("] [0, 3)") and label.startswith(f"{topics.requests}[")
