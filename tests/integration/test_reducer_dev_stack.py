"""The reducer in `bridge-dagster dev`: fresh without a manual step, and backfilled on request.

One stack for the whole module, started the way test_dev_stack.py starts it (the console
script in its own session, free ports, a throwaway data dir) and killed at teardown. The
demo load is submitted once; the freshness test measures from its completions, and the
backfill test re-aggregates the hours that hold it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from bridge_dagster.cli.main import main
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from tests.integration.test_dev_stack import (
    CLI,
    DevRun,
    Ports,
    _bridge_location,
    _clean_env,
    _database,
    _kill_leftovers,
    _launch,
    _new_data_dir,
)

pytestmark = pytest.mark.integration

DEMO_REQUESTS = 200
# The target is 60 s; a shared 2-core machine gets slack, and the message records
# the seconds measured either way.
FRESHNESS_TARGET_S = 60
FRESHNESS_DEADLINE_S = 120
BACKFILL_TIMEOUT_S = 300
# The refresh sensor's runs from the freshness test may still hold the run queue (see
# _drain_refresh_runs); they are let finish first, so --timeout measures the backfill alone.
DRAIN_TIMEOUT_S = 360
IN_FLIGHT = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED"]
KEY_FORMAT = "%Y-%m-%d-%H:%M"
BRIDGE_STATE = "reducer_bridge_state"
# Runs the daemon launched on its own carry the sensor's or the schedule's name.
AUTOMATIC_TAGS = ("dagster/sensor_name", "dagster/schedule_name")

# Completed rows, the reducer's count over the hours they fall in (a minute either side, so
# an event stamped just across an hour boundary from its row still counts), and the last
# completion. An empty hourly table sums to 0.
FRESHNESS_SQL = """
WITH done AS (SELECT completed_at FROM workflow_executions WHERE state = 'completed'),
span AS (
    SELECT date_trunc('hour', min(completed_at) - interval '1 minute') AS first_hour,
           date_trunc('hour', max(completed_at) + interval '1 minute') AS last_hour,
           max(completed_at) AS last_completed
    FROM done
)
SELECT (SELECT count(*) FROM done) AS completed,
       (SELECT COALESCE(sum(n.workflows_completed), 0) FROM reducer_namespace_hourly AS n
        WHERE n.hour BETWEEN span.first_hour AND span.last_hour) AS aggregated,
       span.last_completed
FROM span
"""
RUNS_QUERY = """
query Runs($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) {
    __typename
    ... on Runs { results { runId jobName status tags { key value } } }
  }
}
"""
JOB_RUNS_QUERY = """
query JobRuns($job: String!, $statuses: [RunStatus!]) {
  runsOrError(filter: {pipelineName: $job, statuses: $statuses}) {
    __typename
    ... on Runs { results { runId } }
  }
}
"""
BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs { runId status tags { key value } } }
  }
}
"""


@dataclass(frozen=True)
class DemoLoad:
    """The demo requests, completed: when submit returned and which hours they fill."""

    finished: float  # time.time() when `submit --wait` returned
    first_hour: str  # partition keys of the first and last completion's hours
    last_hour: str


@pytest.fixture(scope="module")
def running() -> Iterator[DevRun]:
    """One `bridge-dagster dev` for the module, with the code location loaded."""
    data_dir = _new_data_dir()
    run = _launch(data_dir, Ports.free(), data_dir.parent / "dev-output.txt")
    try:
        run.wait_for_ready()
        entry = _bridge_location(run.ports.ui)
        assert entry["loadStatus"] == "LOADED", entry
        yield run
        if run.process.poll() is None:
            run.ctrl_c()
    finally:
        _kill_leftovers(run)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(running: DevRun) -> Iterator[Engine]:
    engine = _database(running)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def demo(running: DevRun, engine: Engine) -> DemoLoad:
    """`bridge-dagster submit --demo 200 --wait`, as test_dev_stack.py submits."""
    result = _cli(running, "submit", "--demo", str(DEMO_REQUESTS), "--wait", "--timeout", "150")
    finished = time.time()
    assert result.returncode == 0, result
    assert f"Completed {DEMO_REQUESTS}, failed 0" in result.stdout, result.stdout
    with engine.connect() as conn:
        first, last = conn.execute(
            text(
                "SELECT min(completed_at), max(completed_at) FROM workflow_executions"
                " WHERE state = 'completed'"
            )
        ).one()
    return DemoLoad(finished, _hour_key(first), _hour_key(last))


def _cli(run: DevRun, *args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    """The console script from the project directory, with the stack's environment."""
    return subprocess.run(
        [str(CLI), *args],
        cwd=run.data_dir.parent,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _hour_key(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0).strftime(KEY_FORMAT)


def _url(run: DevRun) -> str:
    return f"http://127.0.0.1:{run.ports.ui}"


def _log_tail(run: DevRun, lines: int = 60) -> str:
    """The Dagster log's last lines without the definitions' import-time beta warnings."""
    log = run.data_dir / "dagster.log"
    if not log.exists():
        return "(no dagster.log)"
    kept = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "Warning" not in line and "return fn(" not in line and "SensorDefinition(" not in line
    ]
    return "\n".join(kept[-lines:])


def _query(run: DevRun, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{_url(run)}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _runs(run: DevRun, run_ids: list[str]) -> list[dict[str, Any]]:
    found = _query(run, RUNS_QUERY, {"ids": run_ids})["runsOrError"]
    assert found["__typename"] == "Runs", found
    return found["results"]


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def _job_runs(run: DevRun, job: str, statuses: list[str] | None = None) -> list[str]:
    found = _query(run, JOB_RUNS_QUERY, {"job": job, "statuses": statuses})["runsOrError"]
    assert found["__typename"] == "Runs", found
    return [r["runId"] for r in found["results"]]


def _drain_refresh_runs(run: DevRun) -> str:
    """Wait until no reducer_hourly run is queued or running; say how long and how many.

    One landing of one hour can make the refresh sensor start several runs of that hour,
    since an hour whose run has started but not yet recorded every table still reads as
    stale; on two cores they hold the run queue for minutes.
    """
    started = time.monotonic()
    total = len(_job_runs(run, "reducer_hourly"))
    while _job_runs(run, "reducer_hourly", IN_FLIGHT):
        if time.monotonic() - started > DRAIN_TIMEOUT_S:
            pytest.fail(
                f"reducer_hourly runs still in flight after {DRAIN_TIMEOUT_S} s:\n" + _log_tail(run)
            )
        time.sleep(1)
    return (
        f"reducer_hourly runs so far: {total}; waited {time.monotonic() - started:.1f} s"
        " for those in flight to finish"
    )


@pytest.mark.timeout(420)
def test_completed_workflows_show_in_the_hourly_reducer_with_no_manual_step(
    running: DevRun, engine: Engine, demo: DemoLoad
) -> None:
    deadline = demo.finished + FRESHNESS_DEADLINE_S
    while True:
        with engine.connect() as conn:
            completed, aggregated, last_completed = conn.execute(text(FRESHNESS_SQL)).one()
        if completed and aggregated == completed:
            break
        if time.time() > deadline:
            pytest.fail(
                f"after {time.time() - demo.finished:.0f} s reducer_namespace_hourly counts"
                f" {aggregated} of {completed} completed workflows:\n{_log_tail(running)}"
            )
        time.sleep(0.5)
    now = time.time()
    after_submit = now - demo.finished
    after_completion = now - last_completed.timestamp()
    measured = (
        f"fresh {after_completion:.1f} s after the last completion ({after_submit:.1f} s after"
        f" `submit --wait` returned); target {FRESHNESS_TARGET_S} s, limit"
        f" {FRESHNESS_DEADLINE_S} s"
    )
    print(measured)
    assert completed == DEMO_REQUESTS
    assert after_completion < FRESHNESS_DEADLINE_S, measured

    # Only the daemon's automation made those rows: every run behind them is a sensor's.
    with engine.connect() as conn:
        run_ids = list(
            conn.execute(
                text(
                    "SELECT DISTINCT run_id FROM reducer_aggregations"
                    " WHERE asset = 'reducer_namespace_hourly' AND status = 'completed'"
                )
            ).scalars()
        )
    assert run_ids, measured
    for dagster_run in _runs(running, run_ids):
        tags = _tags(dagster_run)
        assert any(tag in tags for tag in AUTOMATIC_TAGS), (dagster_run, measured)


@pytest.mark.timeout(780)
def test_the_backfill_command_reaggregates_the_hours_through_the_daemon(
    running: DevRun, engine: Engine, demo: DemoLoad
) -> None:
    drained = _drain_refresh_runs(running)
    with engine.connect() as conn:
        before = conn.execute(
            text("SELECT COALESCE(max(id), 0) FROM reducer_aggregations")
        ).scalar()
    started = time.monotonic()
    result = _cli(
        running,
        "backfill",
        "--from",
        demo.first_hour,
        "--to",
        demo.last_hour,
        "--url",
        _url(running),
        "--wait",
        "--timeout",
        str(BACKFILL_TIMEOUT_S),
        timeout=BACKFILL_TIMEOUT_S + 60,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"{drained}\n{result}\n{_log_tail(running)}"
    found = re.search(r"^Backfill (\w+):", result.stdout, re.MULTILINE)
    assert found, result.stdout
    backfill_id = found.group(1)
    assert f"{_url(running)}/runs/b/{backfill_id}" in result.stdout
    assert f"Backfill {backfill_id} completed" in result.stdout
    print(f"{drained}; backfill {demo.first_hour}..{demo.last_hour} took {seconds:.1f} s")

    # The instance holds the backfill and its runs, all tagged with it and all successful.
    backfill = _query(running, BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
    assert backfill["__typename"] == "PartitionBackfill", backfill
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    runs = backfill["runs"]
    assert runs, backfill
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    assert all(_tags(r).get("dagster/backfill") == backfill_id for r in runs), runs
    run_ids = {r["runId"] for r in runs}

    # reducer_aggregations has a new completed row per asset, from those runs, over the range.
    with engine.connect() as conn:
        rows = (
            conn.execute(
                text(
                    "SELECT asset, range_start, range_end, status, run_id"
                    " FROM reducer_aggregations WHERE id > :before"
                ),
                {"before": before},
            )
            .mappings()
            .all()
        )
        completed, aggregated, _ = conn.execute(text(FRESHNESS_SQL)).one()
    ours = [row for row in rows if row["run_id"] in run_ids]
    assert {row["asset"] for row in ours} == {*HOURLY_TABLE_NAMES, BRIDGE_STATE}, rows
    assert all(row["status"] == "completed" for row in ours), ours
    first = datetime.strptime(demo.first_hour, KEY_FORMAT).replace(tzinfo=UTC)
    end = datetime.strptime(demo.last_hour, KEY_FORMAT).replace(tzinfo=UTC) + timedelta(hours=1)
    for row in ours:
        if row["asset"] in HOURLY_TABLE_NAMES:
            assert (row["range_start"], row["range_end"]) == (first, end), row
    # Re-aggregating changed nothing that was right.
    assert aggregated == completed == DEMO_REQUESTS


def test_a_backfill_outside_the_reducer_hours_is_refused_naming_the_first_hour(
    running: DevRun,
) -> None:
    result = _cli(
        running, "backfill", "--from", "2020-01-01-00:00", "--to", "2020-01-01-05:00",
        "--url", _url(running),
    )  # fmt: skip
    assert result.returncode == 2, result
    assert "before the first reducer hour, 2026-10-01-00:00" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("first", "last", "says"),
    [
        ("2026-11-30", "2026-11-30-12:00", "write it as YYYY-MM-DD-HH:MM in UTC"),
        ("2026-11-30-00:00", "2026-11-30-12:30", "not on the hour"),
        ("2026-11-30-12:00", "2026-11-30-00:00", "swap them"),
    ],
)
def test_a_bad_range_is_refused_before_any_request_naming_the_fix(
    first: str, last: str, says: str
) -> None:
    # Port 9 (discard) has no webserver: reaching it would fail differently.
    args = ["backfill", "--from", first, "--to", last, "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "no Dagster webserver" not in result.output


@pytest.mark.parametrize("via", ["--url", "DAGSTER_WEBSERVER_URL"])
def test_no_webserver_at_the_url_says_how_to_start_one(via: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = ["backfill", "--from", "2026-11-30-00:00", "--to", "2026-11-30-12:00"]
    if via == "--url":
        result = CliRunner().invoke(main, [*args, "--url", url])
    else:
        result = CliRunner().invoke(main, args, env={"DAGSTER_WEBSERVER_URL": url})
    assert result.exit_code == 1, result.output
    assert f"no Dagster webserver at {url}; start `bridge-dagster dev` or pass --url" in (
        result.output
    )


def test_backfill_help_teaches_by_example() -> None:
    result = CliRunner().invoke(main, ["backfill", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "bridge-dagster backfill --from 2026-11-30-00:00 --to 2026-11-30-12:00 --wait" in (
        result.output
    )
    assert "DAGSTER_WEBSERVER_URL" in result.output
