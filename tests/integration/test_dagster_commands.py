"""Dagster's own commands, run from the repository root as a new user types them.

`dagster definitions validate`, `dg check defs`, `dg list defs` and `dagster dev` with
nothing set; `dg launch` over a range of reducer hours against a migrated database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
from sqlalchemy import create_engine, text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.events import synthetic
from bridge_dagster.reducer.partitions import partition_key
from bridge_dagster.settings import VARIABLES
from tests.conftest import Topics
from tests.integration.reducer_harness import (
    BASE_HOUR,
    PARTITIONS_START,
    land_all,
    produce_events,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def nothing_set(**extra: str) -> dict[str, str]:
    """This process's environment without the project's variables or a DAGSTER_HOME."""
    names = {v.name for v in VARIABLES} | {"DAGSTER_HOME", "DAGSTER_POSTGRES_URL"}
    return {k: v for k, v in os.environ.items() if k not in names} | extra


def in_repo_root(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "command",
    [
        ("dagster", "definitions", "validate", "-m", "bridge_dagster.definitions"),
        ("dg", "check", "defs"),
        ("dg", "list", "defs"),
    ],
    ids=" ".join,
)
def test_dagster_commands_pass_from_the_repo_root_with_nothing_set(command: tuple[str]) -> None:
    result = in_repo_root(*command, env=nothing_set())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_dg_list_defs_shows_the_jobs_and_reducer_assets() -> None:
    result = in_repo_root("dg", "list", "defs", "--json", env=nothing_set())

    assert result.returncode == 0, result.stderr
    for name in ("stamp_workflow", "reducer_namespace_hourly", "stamp_request_sensor"):
        assert f'"{name}"' in result.stdout


def test_dagster_dev_starts_from_the_repo_root_with_nothing_set() -> None:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=nothing_set(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, so the webserver, daemon and code server it starts can all
        # be killed should it not stop them.
        start_new_session=True,
    )
    try:
        answered = wait_for_server_info(process, port, timeout_s=180)
    finally:
        # dagster dev stops its webserver, daemon and code server on SIGINT.
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate()
        # Whatever of the group outlived dagster dev.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert answered, f"no /server_info answer; dagster dev said:\n{stderr[-3000:]}"
    assert "DAGSTER_POSTGRES_URL" not in stderr


def wait_for_server_info(process: subprocess.Popen, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


@pytest.mark.integration
def test_dg_launch_materializes_a_range_of_reducer_hours(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    first, last = BASE_HOUR, BASE_HOUR + timedelta(hours=2)
    flows = synthetic.workflows(
        30,
        start=first,
        spread=timedelta(hours=3),
        namespaces=["alpha.team", "beta.team"],
        failure_rate=0,
    )
    produce_events(kafka_bootstrap, topics.workflow, synthetic.stream(flows))
    engine = create_engine(pg_address.url())
    land_all(engine, kafka_bootstrap, topics.workflow)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = nothing_set(
        **pg_address.env(),
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA_WORKFLOW_TOPIC=topics.workflow,
        KAFKA_REDUCER_TOPIC=f"{topics.workflow}.reducer",
        REDUCER_PARTITIONS_START=partition_key(PARTITIONS_START),
        DAGSTER_HOME=str(home),
    )
    selection = "reducer_namespace_hourly,reducer_size_bucket_hourly"
    span = f"{partition_key(first)}...{partition_key(last)}"

    result = in_repo_root("dg", "launch", "--assets", selection, "--partition-range", span, env=env)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with engine.connect() as conn:
        hours = (
            conn.execute(text("SELECT DISTINCT hour FROM reducer_namespace_hourly ORDER BY hour"))
            .scalars()
            .all()
        )
        completed = conn.execute(
            text("SELECT sum(workflows_completed) FROM reducer_size_bucket_hourly")
        ).scalar_one()
    engine.dispose()
    expected_hours = [first + timedelta(hours=i) for i in range(3)]
    assert hours == expected_hours
    in_range = [f for f in flows if first <= f.started_at < last + timedelta(hours=1)]
    assert completed == len(in_range)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for asset in selection.split(","):
            materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert materialized == {partition_key(h) for h in expected_hours}, asset
