"""`bridge-dagster dev`: database, broker, migrations, Dagster, started and stopped in turn."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from bridge_dagster.db.migrate import upgrade
from bridge_dagster.devstack.files import write_private
from bridge_dagster.devstack.kafka import EmbeddedKafka, ensure_topics
from bridge_dagster.devstack.postgres import EmbeddedPostgres
from bridge_dagster.devstack.processes import (
    StackError,
    require_free_port,
    spawn,
    stop,
    tail,
    wait_for_stop_signal,
)
from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.settings import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The embedded stack's Dagster instance. It lives here rather than in the repository root so
# that a plain `dagster dev` or `dg` there, with nothing set, uses Dagster's own defaults.
INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")
ENV_FILE = "dev.env"


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    ui_port: int
    postgres_port: int
    kafka_port: int


def run_dev_stack(options: DevOptions, say: Callable[[str], None]) -> int:
    """Start everything, wait for Ctrl-C (or a part dying), stop everything; return exit code."""
    settings = load_settings()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    with _single_instance(options.data_dir), ExitStack() as stack:
        require_free_port(options.ui_port, "the Dagster UI", "--ui-port")
        env = dict(os.environ)
        env.update(_postgres_env(settings, options, stack, say))
        env.update(_kafka_env(settings, options, stack, say))
        effective = load_settings(env)
        _prepare(env, effective, say)
        # `backfill` finds the UI through DAGSTER_WEBSERVER_URL, whatever --ui-port was.
        env["DAGSTER_WEBSERVER_URL"] = f"http://127.0.0.1:{options.ui_port}"
        _publish_connection(options.data_dir, env, stack)
        env["DAGSTER_HOME"] = str(_dagster_home(options.data_dir, effective))
        env.update(dagster_instance_env(effective))
        dagster = _start_dagster(env, effective.log_level, options, stack, say)
        return _wait_for_stop(dagster, options, say)


@contextmanager
def _single_instance(data_dir: Path) -> Iterator[None]:
    # flock is released by the kernel when the process dies, so no stale lock survives a crash.
    lock_path = data_dir / "dev.lock"
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            pid = lock.read().strip() or "?"
            raise StackError(
                f"bridge-dagster dev is already running for {data_dir} (pid {pid}); use that"
                " one, or stop it with Ctrl-C in its terminal before starting another"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _postgres_env(
    settings: Settings, options: DevOptions, stack: ExitStack, say: Callable[[str], None]
) -> dict[str, str]:
    if settings.postgres.host is not None:
        say(f"PostgreSQL: using {settings.postgres.host}:{settings.postgres.port} (POSTGRES_HOST)")
        return {}
    require_free_port(options.postgres_port, "the embedded PostgreSQL", "--postgres-port")
    server = EmbeddedPostgres(
        options.data_dir / "postgres", options.postgres_port, settings.postgres.database
    )
    started = time.monotonic()
    address = server.start()
    stack.callback(_announce_stop(say, "PostgreSQL", server.stop))
    say(
        f"PostgreSQL: embedded on 127.0.0.1:{address.port}, data in {server.pgdata}"
        f" ({time.monotonic() - started:.1f} s)"
    )
    return address.env()


def _kafka_env(
    settings: Settings, options: DevOptions, stack: ExitStack, say: Callable[[str], None]
) -> dict[str, str]:
    if settings.kafka_bootstrap_servers is not None:
        say(f"Kafka: using {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)")
        return {}
    require_free_port(options.kafka_port, "the embedded Kafka broker", "--kafka-port")
    broker = EmbeddedKafka(options.data_dir / "kafka", options.kafka_port)
    started = time.monotonic()
    bootstrap = broker.start()
    stack.callback(_announce_stop(say, "Kafka broker", broker.stop))
    say(
        f"Kafka: embedded broker on {bootstrap}, data in {broker.data_dir}"
        f" ({time.monotonic() - started:.1f} s)"
    )
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}


def _prepare(env: dict[str, str], settings: Settings, say: Callable[[str], None]) -> None:
    upgrade(settings.postgres.url())
    say("Database: migrated to head")
    topics = [
        settings.request_topic,
        settings.workflow_topic,
        settings.reducer_topic,
        dlq_topic(settings.request_topic),
        dlq_topic(settings.workflow_topic),
    ]
    created = ensure_topics(
        env["KAFKA_BOOTSTRAP_SERVERS"], topics, security=settings.kafka_security
    )
    say(f"Topics: {len(created)} created, {len(topics) - len(created)} already there")


def _publish_connection(data_dir: Path, env: dict[str, str], stack: ExitStack) -> None:
    """Leave the stack's addresses for `submit`, `status` and `migrate` in other shells."""
    path = data_dir / ENV_FILE
    names = [
        name
        for name in env
        if name.startswith(("POSTGRES_", "KAFKA_BOOTSTRAP", "DAGSTER_WEBSERVER_URL"))
    ]
    write_private(path, "".join(f"{name}={env[name]}\n" for name in sorted(names)))
    stack.callback(lambda: path.unlink(missing_ok=True))


def adopt_running_stack(data_dir: Path) -> bool:
    """Take a running dev stack's addresses for variables the environment leaves unset.

    Returns whether a stack was running there.
    """
    path = data_dir / ENV_FILE
    if not path.exists() or not _stack_running(data_dir):
        return False
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        os.environ.setdefault(name, value)
    return True


def _stack_running(data_dir: Path) -> bool:
    with (data_dir / "dev.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def dagster_instance_env(settings: Settings) -> dict[str, str]:
    """Every variable dagster.yaml reads through {env: …}, from the effective settings.

    A variable left unset to take the project's default is unset for Dagster too, which
    has no such default and would fail to load its instance.
    """
    pg = settings.postgres
    if pg.host is None or pg.password is None:
        raise StackError(
            "Dagster's instance needs POSTGRES_HOST and POSTGRES_PASSWORD; set both, or unset"
            " POSTGRES_HOST to use the embedded PostgreSQL"
        )
    return {
        # One URL carries host, port, user, password, database and POSTGRES_SSL_MODE.
        "DAGSTER_POSTGRES_URL": pg.url(),
        "ORCHESTRATOR_CONCURRENCY": str(settings.orchestrator_concurrency),
    }


def instance_config(settings: Settings) -> str:
    """INSTANCE_CONFIG with the run queue's per-kind limits, which Dagster reads only as
    literal numbers: stamp_workflow batches take at most ORCHESTRATOR_CONCURRENCY slots, and
    slots beyond those stay free for one landing, REDUCER_CONCURRENCY aggregations and one
    maintenance run. Without them a busy orchestrator holds every slot and the reducer waits
    behind its batches, minutes at 100 workflows/s."""
    config = yaml.safe_load(INSTANCE_CONFIG.read_text())
    limits = {
        "stamping": settings.orchestrator_concurrency,
        "landing": 1,
        "reducer": settings.reducer_concurrency,
    }
    queue = config["run_coordinator"]["config"]
    queue["max_concurrent_runs"] = sum(limits.values()) + 1
    queue["tag_concurrency_limits"] = [
        {"key": "bridge/kind", "value": kind, "limit": limit} for kind, limit in limits.items()
    ]
    header = "# Written by bridge-dagster from bridge_dagster/devstack/dagster.yaml; edit that.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def _dagster_home(data_dir: Path, settings: Settings) -> Path:
    home = data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_config(settings))
    return home


def dagster_dev_command(ui_port: int, log_level: str) -> list[str]:
    # LOG_LEVEL's values are the names `dagster dev --log-level` accepts.
    return [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(ui_port),
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "--log-level",
        log_level,
    ]


def _start_dagster(
    env: dict[str, str],
    log_level: str,
    options: DevOptions,
    stack: ExitStack,
    say: Callable[[str], None],
) -> subprocess.Popen[bytes]:
    log_path = options.data_dir / "dagster.log"
    started = time.monotonic()
    process = spawn(
        dagster_dev_command(options.ui_port, log_level),
        log_path=log_path,
        env=env,
        cwd=PROJECT_ROOT,
    )
    # dagster dev stops its webserver, daemon and code server on SIGINT.
    stack.callback(_announce_stop(say, "Dagster", lambda: stop(process, signal.SIGINT, 30)))
    _wait_for_ui(process, options.ui_port, log_path)
    say(
        f"Dagster: UI at http://127.0.0.1:{options.ui_port} ({time.monotonic() - started:.1f} s);"
        f" log in {log_path}"
    )
    return process


def _wait_for_ui(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(
                f"dagster dev exited with code {process.returncode}:\n{tail(log_path)}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise StackError(f"the Dagster UI did not answer within 120 s:\n{tail(log_path)}")


def _wait_for_stop(
    dagster: subprocess.Popen[bytes], options: DevOptions, say: Callable[[str], None]
) -> int:
    say("Ready. Press Ctrl-C to stop everything.")
    if not wait_for_stop_signal(lambda: dagster.poll() is None):
        say(
            f"Dagster exited unexpectedly (code {dagster.returncode}); stopping the rest."
            f" Log: {options.data_dir / 'dagster.log'}"
        )
        return 1
    say("Stopping…")
    return 0


def _announce_stop(
    say: Callable[[str], None], what: str, action: Callable[[], None]
) -> Callable[[], None]:
    def run() -> None:
        action()
        say(f"{what}: stopped")

    return run
