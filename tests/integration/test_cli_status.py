"""`bridge-dagster status`: duration from the request, and `--failed [--since]`."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, insert, update

from bridge_dagster.db.tables import dead_letters, workflow_executions
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.topics import DEFAULT_REQUEST_TOPIC, dlq_topic
from tests.integration.test_cli_submit import START, insert_workflow, run

pytestmark = pytest.mark.integration


def failed_at(pg_url: str, workflow_id: uuid.UUID, moment: datetime) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            update(workflow_executions)
            .where(workflow_executions.c.workflow_id == workflow_id)
            .values(updated_at=moment)
        )
    engine.dispose()


def test_status_counts_the_duration_from_the_request_not_from_admission(
    pg_address: PostgresAddress, pg_url: str
) -> None:
    # The request waited 4 s on the topic and in the run queue before the bridge admitted it.
    workflow_id = insert_workflow(
        pg_url,
        "completed",
        requested_at=START,
        created_at=START + timedelta(seconds=4),
        completed_at=START + timedelta(seconds=4, milliseconds=250),
        duration_ms=250,
    )

    result = run(pg_address.env(), "status", str(workflow_id))

    assert result.exit_code == 0, result.output
    assert (
        "Duration   4,250 ms from request to completed (250 ms of it after admission)"
        in result.stdout
    )
    as_json = json.loads(run(pg_address.env(), "status", str(workflow_id), "--json").stdout)
    assert as_json["duration_ms"] == 4250


def test_status_failed_lists_failed_workflows_newest_first_with_their_reason_codes(
    pg_address: PostgresAddress, pg_url: str
) -> None:
    older = insert_workflow(pg_url, "failed", error="bad_stamp_type: stamp_type 'gold' is unknown")
    newer = insert_workflow(pg_url, "failed", error="timeout: timed out; resubmit it")
    insert_workflow(pg_url, "completed")
    failed_at(pg_url, older, START)
    failed_at(pg_url, newer, START + timedelta(minutes=1))

    result = run(pg_address.env(), "status", "--failed")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "2 workflows failed, newest first:"
    assert lines[1:] == [
        f"  2025-01-31 12:01:00.000Z  {newer}  omninode.docs  timeout: timed out; resubmit it",
        f"  2025-01-31 12:00:00.000Z  {older}  omninode.docs  bad_stamp_type: stamp_type 'gold'"
        " is unknown",
    ]


def test_status_failed_since_leaves_out_older_failures(
    pg_address: PostgresAddress, pg_url: str
) -> None:
    old = insert_workflow(pg_url, "failed", error="path_refused: outside the roots")
    recent = insert_workflow(pg_url, "failed", error="file_unreadable: gone")
    failed_at(pg_url, old, datetime.now(UTC) - timedelta(hours=3))

    result = run(pg_address.env(), "status", "--failed", "--since", "2h", "--json")

    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert [w["workflow_id"] for w in listing["workflows"]] == [str(recent)]
    assert (listing["total"], listing["workflows"][0]["code"]) == (1, "file_unreadable")


def test_status_failed_since_an_iso_time(pg_address: PostgresAddress, pg_url: str) -> None:
    before = insert_workflow(pg_url, "failed", error="bad_json: not JSON")
    after = insert_workflow(pg_url, "failed", error="bad_json: not JSON")
    failed_at(pg_url, before, START - timedelta(seconds=1))
    failed_at(pg_url, after, START)

    result = run(pg_address.env(), "status", "--failed", "--since", "2025-01-31T12:00:00Z")

    assert result.exit_code == 0, result.output
    assert str(after) in result.stdout and str(before) not in result.stdout
    assert result.stdout.startswith("1 workflow failed since 2025-01-31 12:00:00.000Z")


def test_status_failed_counts_rejected_requests_that_named_no_workflow(
    pg_address: PostgresAddress, pg_url: str
) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            insert(dead_letters).values(
                source="requests/0/7",
                letter_key="requests/0/7@1764547200000/0f3a",
                code="bad_json",
                reason="not JSON",
                dlq_topic=dlq_topic(DEFAULT_REQUEST_TOPIC),
            )
        )
    engine.dispose()

    result = run(pg_address.env(), "status", "--failed")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "0 workflows failed.",
        f"1 more rejected requests named no usable workflow id; they are on"
        f" {dlq_topic(DEFAULT_REQUEST_TOPIC)} with the reason",
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), "give a WORKFLOW_ID or --failed"),
        (("--failed", str(uuid.uuid4())), "give a WORKFLOW_ID or --failed"),
        ((str(uuid.uuid4()), "--since", "1h"), "--since applies to --failed only"),
        (("--failed", "--since", "yesterday"), "is neither an ISO time"),
    ],
)
def test_status_arguments_that_do_not_fit_are_usage_errors(
    pg_address: PostgresAddress, args: tuple[str, ...], problem: str
) -> None:
    result = run(pg_address.env(), "status", *args)

    assert result.exit_code == 2
    assert problem in result.output
