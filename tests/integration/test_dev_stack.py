"""`bridge-dagster dev` as a user runs it: the console script in its own session, real ports.

Every run uses free ports and a temporary data directory, so these tests never meet another
`bridge-dagster dev` on this machine; whatever a run leaves behind is SIGKILLed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Engine, create_engine, make_url, text

from bridge_dagster.cli.main import main
from bridge_dagster.devstack import postgres as embedded_postgres
from bridge_dagster.devstack.files import write_private
from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import EmbeddedPostgres, PostgresAddress
from bridge_dagster.devstack.processes import StackError, free_port, port_is_free, spawn
from bridge_dagster.devstack.stack import (
    INSTANCE_CONFIG,
    dagster_dev_command,
    dagster_instance_env,
)
from bridge_dagster.settings import LOG_LEVELS, load_settings

CLI = Path(sys.executable).parent / "bridge-dagster"
REQUIRED_JOBS = {"stamp_workflow", "sweep_stale_workflows"}
UI_DEADLINE_S = 60
# Longer than a slow start on a busy 2-core machine, so a failure reports the log, not a hang.
START_TIMEOUT_S = 150
# Below the 30 s after which the stack SIGKILLs Dagster, so a pass means a graceful stop.
STOP_DEADLINE_S = 25
FAIL_FAST_S = 10

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""
JOBS_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { location { name } jobs { name } } }
  }
}
"""


@dataclass(frozen=True)
class Ports:
    ui: int
    postgres: int
    kafka: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())

    def options(self) -> list[str]:
        return [
            "--ui-port",
            str(self.ui),
            "--postgres-port",
            str(self.postgres),
            "--kafka-port",
            str(self.kafka),
        ]


@dataclass
class DevRun:
    """One `bridge-dagster dev` process, its output in a file."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    ports: Ports
    output_path: Path
    started: float = field(default_factory=time.monotonic)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for_ui(self) -> float:
        """Seconds from launch until /server_info answers; fails with the output if never.

        It asks at least once, so a shared stack asked again long after its start still
        counts as up when it answers.
        """
        deadline = self.started + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"dev exited early:\n{self.output()}"
            if _ui_answers(self.ports.ui):
                return time.monotonic() - self.started
            if time.monotonic() >= deadline:
                pytest.fail(f"no UI after {START_TIMEOUT_S} s:\n{self.output()}")
            time.sleep(0.5)

    def wait_for_ready(self) -> None:
        # "Ready." follows the UI answering by a moment; tests that stop the stack wait for it
        # so the signal meets the stack's own handler, not the start-up code.
        self.wait_for_ui()
        deadline = time.monotonic() + 10
        while "Ready." not in self.output():
            assert time.monotonic() < deadline, f"no 'Ready.' line:\n{self.output()}"
            time.sleep(0.2)

    def ctrl_c(self) -> tuple[int, float]:
        """SIGINT to the CLI's process group, as a terminal's Ctrl-C; (exit code, seconds)."""
        sent = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=60)
        return code, time.monotonic() - sent

    def finish(self, timeout_s: float = FAIL_FAST_S) -> tuple[int, float]:
        """Wait for a run that is expected to end on its own; (exit code, seconds since launch)."""
        code = self.process.wait(timeout=timeout_s)
        return code, time.monotonic() - self.started


def _clean_env() -> dict[str, str]:
    # Any POSTGRES_*/KAFKA_* in the caller's shell would point the stack at other servers.
    return {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "KAFKA_"))}


def _launch(
    data_dir: Path, ports: Ports, output_path: Path, env: dict[str, str] | None = None
) -> DevRun:
    with output_path.open("wb") as out:
        process = subprocess.Popen(
            [str(CLI), "dev", "--data-dir", str(data_dir), *ports.options()],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_clean_env() | (env or {}),
            start_new_session=True,
        )
    return DevRun(process, data_dir, ports, output_path)


def _stack_processes(ports: Ports, data_dir: Path | None = None) -> list[psutil.Process]:
    """Processes whose command line names one of these ports (or contains this data dir)."""
    needles = {str(ports.ui), str(ports.postgres), str(ports.kafka)}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if proc.pid == os.getpid():
            continue
        if any(arg in needles or (data_dir and str(data_dir) in arg) for arg in args):
            found.append(proc)
    return found


def _kill_leftovers(run: DevRun) -> None:
    # The stack's parts run in sessions of their own, so the CLI's group alone is not enough.
    # Each part's group leader names a port of this run (Dagster's code servers sit in the
    # group of `dagster dev -p <ui port>`); matching the data dir too would also hit the
    # shared stack when a run reuses its data dir.
    own_group = os.getpgid(0)
    groups = {run.process.pid} if run.process.poll() is None else set()
    for proc in _stack_processes(run.ports):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(proc.pid))
    for group in groups - {own_group}:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    if run.process.poll() is None:
        run.process.wait(timeout=10)


def _new_data_dir() -> Path:
    # Not under pytest's tmp dir, which it resets to 0700: PostgreSQL runs as an unprivileged
    # user when the tests run as root. Named `.data` so `status` finds it from its parent.
    data_dir = Path(tempfile.mkdtemp(prefix="bridge-dev-test-")).resolve() / ".data"
    data_dir.mkdir()
    return data_dir


@pytest.fixture
def launch() -> Iterator[Callable[..., DevRun]]:
    """Start `bridge-dagster dev` runs; kill what any of them left behind at teardown."""
    runs: list[DevRun] = []
    outputs = Path(tempfile.mkdtemp(prefix="bridge-dev-output-"))
    created: list[Path] = []

    def start(
        data_dir: Path | None = None,
        ports: Ports | None = None,
        env: dict[str, str] | None = None,
    ) -> DevRun:
        if data_dir is None:
            data_dir = _new_data_dir()
            created.append(data_dir.parent)
        output = outputs / f"dev-{len(runs)}.txt"
        run = _launch(data_dir, ports or Ports.free(), output, env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        _kill_leftovers(run)
    for directory in [outputs, *created]:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class SharedStack:
    run: DevRun
    ui_after_s: float


@pytest.fixture(scope="module")
def stack() -> Iterator[SharedStack]:
    """One running stack for the tests that only look at it."""
    data_dir = _new_data_dir()
    run = _launch(data_dir, Ports.free(), data_dir.parent / "dev-output.txt")
    try:
        yield SharedStack(run, run.wait_for_ui())
        if run.process.poll() is None:
            run.ctrl_c()
    finally:
        _kill_leftovers(run)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def _ui_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _graphql(port: int, query: str) -> dict[str, Any]:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _bridge_location(port: int) -> dict[str, Any]:
    # The webserver can answer before the code location has finished loading.
    deadline = time.monotonic() + 30
    while True:
        workspace = _graphql(port, WORKSPACE_QUERY)["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", workspace
        entries = {entry["name"]: entry for entry in workspace["locationEntries"]}
        assert "bridge_dagster" in entries, f"locations: {sorted(entries)}"
        entry = entries["bridge_dagster"]
        if entry["loadStatus"] == "LOADED" or time.monotonic() > deadline:
            return entry
        time.sleep(0.5)


def _database(run: DevRun) -> Engine:
    """The embedded PostgreSQL's bridge database, reached the way a user would from outside."""
    password = (run.data_dir / "postgres" / "postgres-password").read_text().strip()
    return create_engine(
        f"postgresql+psycopg2://postgres:{password}@127.0.0.1:{run.ports.postgres}/omninode_bridge"
    )


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_the_ui_comes_up_within_a_minute_with_the_code_location_loaded(
    stack: SharedStack,
) -> None:
    assert stack.ui_after_s < UI_DEADLINE_S, stack.run.output()
    entry = _bridge_location(stack.run.ports.ui)
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_the_ui_lists_the_stamp_and_sweep_jobs(stack: SharedStack) -> None:
    _bridge_location(stack.run.ports.ui)
    repositories = _graphql(stack.run.ports.ui, JOBS_QUERY)["repositoriesOrError"]
    assert repositories["__typename"] == "RepositoryConnection", repositories
    jobs = {
        job["name"]
        for repository in repositories["nodes"]
        if repository["location"]["name"] == "bridge_dagster"
        for job in repository["jobs"]
    }
    assert jobs >= REQUIRED_JOBS, f"jobs listed: {sorted(jobs)}"


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_a_second_start_on_the_same_data_dir_fails_fast_and_names_the_running_one(
    stack: SharedStack, launch: Callable[..., DevRun]
) -> None:
    second = launch(data_dir=stack.run.data_dir)
    code, seconds = second.finish()
    assert code != 0
    assert seconds < FAIL_FAST_S
    assert "already running" in second.output()
    assert f"pid {stack.run.process.pid}" in second.output()
    assert stack.run.process.poll() is None
    assert _ui_answers(stack.run.ports.ui)


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_status_from_the_project_directory_reads_the_running_stacks_database(
    stack: SharedStack,
) -> None:
    unknown = uuid.uuid4()
    result = subprocess.run(
        [str(CLI), "status", str(unknown)],
        cwd=stack.run.data_dir.parent,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert f"no workflow {unknown} in the database" in result.stderr
    assert "cannot read PostgreSQL" not in result.stderr


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_submitted_demo_requests_complete_through_the_daemon(stack: SharedStack) -> None:
    result = subprocess.run(
        [str(CLI), "submit", "--demo", "40", "--wait", "--timeout", "150"],
        cwd=stack.run.data_dir.parent,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result
    assert "Completed 40, failed 0" in result.stdout


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_the_demo_uses_the_running_stack_and_leaves_it_running(stack: SharedStack) -> None:
    result = subprocess.run(
        [str(CLI), "demo", "--requests", "10", "--timeout", "240"],
        cwd=stack.run.data_dir.parent,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert result.returncode == 0, result
    assert "Stack: using the running `bridge-dagster dev`" in result.stdout
    assert f"http://127.0.0.1:{stack.run.ports.ui}/runs/" in result.stdout
    assert "Demo passed" in result.stdout
    assert "Stack: stopp" not in result.stdout
    assert stack.run.process.poll() is None
    assert _ui_answers(stack.run.ports.ui)


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_ctrl_c_stops_every_part_and_leaves_no_process_behind(
    launch: Callable[..., DevRun],
) -> None:
    run = launch()
    run.wait_for_ready()
    code, seconds = run.ctrl_c()
    output = run.output()
    assert code == 0, output
    assert seconds < STOP_DEADLINE_S, output
    stopped = [
        output.find(f"{part}: stopped") for part in ("Dagster", "Kafka broker", "PostgreSQL")
    ]
    assert -1 not in stopped, output
    assert stopped == sorted(stopped), f"parts stopped out of order:\n{output}"
    assert _stack_processes(run.ports, run.data_dir) == []
    assert all(port_is_free(port) for port in (run.ports.ui, run.ports.postgres, run.ports.kafka))


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_restart_after_a_clean_stop_keeps_the_database_rows_and_the_topics(
    launch: Callable[..., DevRun],
) -> None:
    first = launch()
    first.wait_for_ready()
    token = uuid.uuid4().hex
    engine = _database(first)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE dev_stack_probe (token text)")
        conn.execute(text("INSERT INTO dev_stack_probe VALUES (:t)"), {"t": token})
    engine.dispose()
    assert first.ctrl_c()[0] == 0, first.output()

    # New ports on purpose: the data, not the addresses, is what must survive.
    second = launch(data_dir=first.data_dir)
    second.wait_for_ready()
    engine = _database(second)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT token FROM dev_stack_probe")).scalars().all()
    engine.dispose()
    assert rows == [token]
    assert "Topics: 0 created, 5 already there" in second.output()
    assert second.ctrl_c()[0] == 0, second.output()


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("option", ["--ui-port", "--postgres-port", "--kafka-port"])
def test_a_port_in_use_fails_fast_naming_the_port_and_its_option(
    option: str, launch: Callable[..., DevRun]
) -> None:
    ports = Ports.free()
    taken = {"--ui-port": ports.ui, "--postgres-port": ports.postgres, "--kafka-port": ports.kafka}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", taken[option]))
        blocker.listen()
        run = launch(ports=ports)
        code, seconds = run.finish()
    output = run.output()
    assert code != 0
    assert seconds < FAIL_FAST_S
    assert f"port {taken[option]}" in output
    assert option in output
    assert "Traceback" not in output
    assert _stack_processes(run.ports, run.data_dir) == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("variable", "value"), [("POSTGRES_PASSWORD", ""), ("POSTGRES_PORT", "abc")]
)
def test_a_bad_postgres_variable_stops_dev_with_a_message_naming_it(
    variable: str, value: str, tmp_path: Path
) -> None:
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("POSTGRES_")}
    env[variable] = value
    result = CliRunner().invoke(main, ["dev", "--data-dir", str(tmp_path / ".data")], env=env)
    assert result.exit_code != 0
    assert variable in result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / ".data").exists()


@pytest.mark.integration
def test_stack_children_do_not_inherit_an_ignored_sigint(tmp_path: Path) -> None:
    # A shell starts `bridge-dagster dev &` with SIGINT ignored; the stack stops Dagster with
    # SIGINT, so a child that kept it ignored would only end at the SIGKILL deadline.
    log = tmp_path / "sigignore.txt"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = spawn(["grep", "SigIgn", "/proc/self/status"], log_path=log)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert child.wait(timeout=10) == 0
    ignored = int(log.read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGINT - 1))
    assert not ignored & (1 << (signal.SIGTERM - 1))


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_the_stacks_secret_files_are_readable_by_their_owner_only(stack: SharedStack) -> None:
    stack.run.wait_for_ready()
    for path in (
        stack.run.data_dir / "postgres" / "postgres-password",
        stack.run.data_dir / "dev.env",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path


@pytest.mark.integration
def test_a_private_file_written_over_a_world_readable_one_becomes_private(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secret"
    path.write_text("old")
    path.chmod(0o644)
    previous = os.umask(0)
    try:
        write_private(path, "new")
        write_private(tmp_path / "fresh", "new")
    finally:
        os.umask(previous)
    assert path.read_text() == "new"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o600


@pytest.mark.integration
def test_dagster_gets_every_variable_its_instance_config_reads_even_when_left_at_default() -> None:
    read = set(re.findall(r"\{env: (\w+)\}", INSTANCE_CONFIG.read_text()))
    settings = load_settings({"POSTGRES_HOST": "db.internal", "POSTGRES_PASSWORD": "a b+c"})

    exported = dagster_instance_env(settings)

    assert read <= set(exported), f"dagster.yaml reads {sorted(read - set(exported))} unset"
    url = make_url(exported["DAGSTER_POSTGRES_URL"])
    assert (url.host, url.port, url.username, url.database) == (
        "db.internal",
        5432,
        "postgres",
        "omninode_bridge",
    )
    assert url.password == "a b+c"
    assert url.query["sslmode"] == "prefer"


@pytest.mark.integration
def test_dagster_dev_accepts_every_log_level_and_is_given_the_configured_one() -> None:
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "dev", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    accepted = re.search(r"--log-level \[([a-z|]+)\]", help_text)
    assert accepted is not None, help_text
    assert set(LOG_LEVELS) <= set(accepted.group(1).split("|"))
    command = dagster_dev_command(3000, "warning")
    assert command[command.index("--log-level") + 1] == "warning"


@pytest.fixture
def external_database(postgres: PostgresAddress) -> Iterator[PostgresAddress]:
    """The default database name on the session server, standing in for a user's own server."""
    admin = create_engine(postgres.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS omninode_bridge WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE omninode_bridge")
    yield PostgresAddress(
        postgres.host, postgres.port, postgres.user, postgres.password, "omninode_bridge"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS omninode_bridge WITH (FORCE)")
    admin.dispose()


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_dev_runs_against_an_external_database_given_only_its_address_and_password(
    external_database: PostgresAddress, launch: Callable[..., DevRun]
) -> None:
    # POSTGRES_USER and POSTGRES_DATABASE stay unset, so their defaults apply; the port
    # has to be given only because the session server is not on 5432.
    run = launch(
        env={
            "POSTGRES_HOST": external_database.host,
            "POSTGRES_PORT": str(external_database.port),
            "POSTGRES_PASSWORD": external_database.password,
        }
    )
    run.wait_for_ready()
    entry = _bridge_location(run.ports.ui)
    code, _ = run.ctrl_c()

    output = run.output()
    assert f"PostgreSQL: using {external_database.host}:{external_database.port}" in output
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    assert code == 0, output


def _throwaway_dir() -> Path:
    # Not under pytest's tmp dir, which is 0700: PostgreSQL runs unprivileged under root.
    return Path(tempfile.mkdtemp(prefix="bridge-pg-test-"))


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_database_name_with_a_quote_and_a_hyphen_is_created() -> None:
    data_dir = _throwaway_dir()
    server = EmbeddedPostgres(data_dir, free_port(), database='odd"name-db')
    try:
        address = server.start()
        engine = create_engine(address.url())
        with engine.connect() as conn:
            name = conn.exec_driver_sql("SELECT current_database()").scalar()
        engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert name == 'odd"name-db'


@pytest.mark.integration
def test_a_pidfile_naming_another_users_process_counts_as_a_running_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = _throwaway_dir()
    server = EmbeddedPostgres(data_dir, free_port())
    server.pgdata.mkdir(parents=True)
    (server.pgdata / "PG_VERSION").write_text("17\n")
    (server.pgdata / "postmaster.pid").write_text("4242\n")

    # A stand-in, not the real os.kill: these tests run as root, and root may signal any
    # process, so os.kill never raises EPERM in this process. A real one would need this code
    # run as another user, from a checkout and interpreter that user can read, which a clone
    # anywhere under root's home is not. The data directory, its pidfile and start() are real.
    def not_permitted(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(embedded_postgres.os, "kill", not_permitted)
    try:
        with pytest.raises(StackError, match=r"pid 4242.*already running"):
            server.start()
        assert (server.pgdata / "postmaster.pid").exists()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.integration
def test_a_topic_created_meanwhile_by_someone_else_counts_as_already_there(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"race-{uuid.uuid4().hex[:8]}"

    # Someone else creates the topic right after ensure_topics listed the broker's topics:
    # the listing and the competing creation are both real; only their order is fixed, so
    # the race happens on every run instead of by chance.
    class ListingThenRival(AdminClient):
        def list_topics(self, *args: Any, **kwargs: Any) -> Any:
            metadata = super().list_topics(*args, **kwargs)
            rival = AdminClient({"bootstrap.servers": kafka_bootstrap})
            rival.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(30)
            return metadata

    monkeypatch.setattr("bridge_dagster.devstack.kafka.AdminClient", ListingThenRival)
    assert ensure_topics(kafka_bootstrap, [topic]) == []


@pytest.mark.integration
def test_a_topic_the_broker_refuses_names_the_broker_and_the_variable(
    kafka_bootstrap: str,
) -> None:
    with pytest.raises(StackError) as refused:
        ensure_topics(kafka_bootstrap, ["not a valid topic!"])
    assert kafka_bootstrap in str(refused.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(refused.value)
