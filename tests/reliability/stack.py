"""The real stack the fault-injection scenarios run against, and the faults they inject.

An embedded PostgreSQL and broker of the suite's own (the session's servers must not be
paused or restarted under other tests), the Alembic migrations, and a `dagster-daemon`
process running the request sensor and the run queue, which launches each stamp_workflow
run in a process of its own, exactly as `bridge-dagster dev` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import psutil
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from bridge_dagster.db.migrate import upgrade
from bridge_dagster.devstack.kafka import EmbeddedKafka, ensure_topics
from bridge_dagster.devstack.postgres import EmbeddedPostgres, PostgresAddress
from bridge_dagster.devstack.processes import free_port, spawn, stop, tail
from bridge_dagster.devstack.stack import PROJECT_ROOT, instance_config
from bridge_dagster.settings import load_settings
from tests.conftest import Topics

REQUEST_SENSOR = "stamp_request_sensor"
STAMP_JOB = "stamp_workflow"
MAX_REQUESTS_PER_RUN = 1000
ORCHESTRATOR_CONCURRENCY = 2
# Files a run holds between steps; beyond it each step reads the file again, so the symlink
# scenario meets both the held and the re-read path.
RUN_CONTENT_BYTES = 4096
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
DAEMON_START_TIMEOUT_S = 120
_PID_MESSAGE = re.compile(r"Started process for run \(pid: (\d+)\)")


class ReliabilityStack:
    """Servers, migrations and the daemon under one temporary directory."""

    def __init__(self) -> None:
        # Not under pytest's tmp dir, which it resets to 0700: PostgreSQL runs as an
        # unprivileged user when the tests run as root.
        self.root = Path(tempfile.mkdtemp(prefix="bridge-reliability-"))
        self.allowed_root = self.root / "allowed"
        self.outside = self.root / "outside"
        self.postgres = EmbeddedPostgres(self.root / "postgres", free_port(), "reliability")
        self.broker = EmbeddedKafka(self.root / "kafka", free_port())
        suffix = uuid.uuid4().hex[:8]
        self.topics = Topics(f"reliability.requests.{suffix}", f"reliability.workflows.{suffix}")
        self.home = self.root / "dagster_home"
        self.daemon_log = self.root / "daemon.log"
        self.daemon: subprocess.Popen[bytes] | None = None
        # Killed daemons: their process groups may still hold a code server and its runs.
        self._killed_daemons: list[subprocess.Popen[bytes]] = []
        self.address: PostgresAddress | None = None
        self.bootstrap = ""
        self._engine: Engine | None = None
        self._instance: dg.DagsterInstance | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.allowed_root.mkdir()
        self.outside.mkdir()
        self.address = self.postgres.start()
        upgrade(self.address.url())
        self.bootstrap = self.broker.start()
        ensure_topics(
            self.bootstrap,
            [self.topics.requests, self.topics.workflow, self.topics.requests_dlq],
        )
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text(self._instance_yaml())
        self.start_daemon()

    def stop(self) -> None:
        """Stop everything this stack started, whatever state a scenario left it in."""
        self.resume_broker()
        if self._instance is not None:
            self._instance.dispose()
        if self._engine is not None:
            self._engine.dispose()
        for daemon in [*self._killed_daemons, self.daemon]:
            if daemon is not None:
                stop(daemon, signal.SIGTERM, 30)
        self.broker.stop()
        self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The daemon's environment: the servers, the topics and the suite's settings."""
        assert self.address is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "KAFKA_"))}
        env.update(self.address.env())
        env.update(
            {
                "DAGSTER_HOME": str(self.home),
                "DAGSTER_POSTGRES_URL": self.address.url(),
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "KAFKA_REQUEST_TOPIC": self.topics.requests,
                "KAFKA_WORKFLOW_TOPIC": self.topics.workflow,
                "MAX_REQUESTS_PER_RUN": str(MAX_REQUESTS_PER_RUN),
                "MAX_WORKFLOW_QUEUE_SIZE": str(MAX_REQUESTS_PER_RUN * ORCHESTRATOR_CONCURRENCY * 2),
                "ORCHESTRATOR_CONCURRENCY": str(ORCHESTRATOR_CONCURRENCY),
                "REQUEST_SENSOR_INTERVAL_S": "1",
                "BRIDGE_ALLOWED_ROOTS": str(self.allowed_root),
                "BRIDGE_MAX_RUN_CONTENT_BYTES": str(RUN_CONTENT_BYTES),
                # The suite judges the orchestrator; landing and aggregation runs would only
                # compete with it for two cores, so their sensors tick once an hour.
                "AGGREGATION_WINDOW_SIZE_MS": str(3_600_000),
                "ENVIRONMENT": "reliability",
            }
        )
        return env

    def _instance_yaml(self) -> str:
        config = yaml.safe_load(instance_config(load_settings(self.env())))
        # No run retries: a run that fails stays failed, so the bridge's own recovery (the
        # range ledger, the hand-over of unfinished workflows) is what brings its requests
        # through, and a broker outage outlasts the run's retries in a minute, not two per
        # retry. A run whose launch a killed daemon left STARTING fails in a minute, not three.
        config["run_retries"] = {"enabled": False}
        config["run_monitoring"].update({"start_timeout_seconds": 60, "poll_interval_seconds": 5})
        return yaml.safe_dump(config, sort_keys=False)

    # --- the daemon -----------------------------------------------------------------------

    def start_daemon(self) -> None:
        started = time.time()
        self.daemon = spawn(
            [
                str(Path(sys.executable).parent / "dagster-daemon"),
                "run",
                "-w",
                str(PROJECT_ROOT / "workspace.yaml"),
            ],
            log_path=self.daemon_log,
            env=self.env(),
            cwd=PROJECT_ROOT,
        )
        self.wait_for(
            lambda: bool(self.sensor_ticks(after=started)),
            DAEMON_START_TIMEOUT_S,
            "the daemon's first request-sensor tick",
        )

    def kill_daemon(self) -> None:
        """SIGKILL the daemon process alone: its code server and runs live on, orphaned."""
        assert self.daemon is not None
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait()
        self._killed_daemons.append(self.daemon)
        self.daemon = None

    def check_daemon(self) -> None:
        if self.daemon is None or self.daemon.poll() is not None:
            raise AssertionError(f"the daemon is not running:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.daemon_log, lines)

    # --- faults on the servers ------------------------------------------------------------

    def _broker_processes(self) -> list[psutil.Process]:
        """The broker: noida-db's launcher script and the server binary it runs."""
        port = str(self.broker.port)
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            args = proc.info["cmdline"] or []
            if "--kafka-port" in args and port in args:
                found.append(proc)
        return found

    def pause_broker(self) -> None:
        """SIGSTOP the broker: connections stay open and nothing answers, as in a partition."""
        processes = self._broker_processes()
        assert processes, "no broker process"
        for proc in processes:
            proc.send_signal(signal.SIGSTOP)

    def resume_broker(self) -> None:
        for proc in self._broker_processes():
            proc.send_signal(signal.SIGCONT)

    def stop_broker(self) -> None:
        self.broker.stop()

    def start_broker(self) -> None:
        self.broker.start()

    def restart_postgres(self) -> None:
        """A fast shutdown (clients' transactions rolled back) and a start on the same port."""
        self.postgres.stop()
        self.postgres.start()

    # --- Dagster's storage, as a user reads it --------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            assert self.address is not None
            # A restart drops every pooled connection: check each before use.
            self._engine = create_engine(self.address.url(), pool_pre_ping=True)
        return self._engine

    @property
    def instance(self) -> dg.DagsterInstance:
        if self._instance is None:
            assert self.address is not None
            overrides = {"storage": {"postgres": {"postgres_url": self.address.url()}}}
            ref = InstanceRef.from_dir(str(self.home), overrides=overrides)
            self._instance = dg.DagsterInstance.from_ref(ref)
        return self._instance

    def stamp_runs(
        self, *, after: float, statuses: list[dg.DagsterRunStatus] | None = None
    ) -> list[dg.DagsterRun]:
        """stamp_workflow runs created after `after` (time.time()), newest first."""
        records = self.instance.get_run_records(
            dg.RunsFilter(job_name=STAMP_JOB, statuses=statuses or [])
        )
        return [r.dagster_run for r in records if r.create_timestamp.timestamp() >= after]

    def seconds_to_run_tagged(self, tag: str, *, after: float) -> float | None:
        """Seconds from `after` to the creation of the first stamp_workflow run since then
        that carries `tag`; None if there is none."""
        records = self.instance.get_run_records(dg.RunsFilter(job_name=STAMP_JOB))
        created = [
            r.create_timestamp.timestamp()
            for r in records
            if tag in r.dagster_run.tags and r.create_timestamp.timestamp() >= after
        ]
        return min(created) - after if created else None

    def runs_in_flight(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(dg.RunsFilter(job_name=STAMP_JOB, statuses=IN_FLIGHT)))

    def run_worker_pid(self, run_id: str) -> int | None:
        """The pid of the process executing the run, from its event log."""
        for entry in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            found = _PID_MESSAGE.search(entry.message or "")
            if found:
                return int(found.group(1))
        return None

    def sensor_ticks(
        self, *, after: float, statuses: list[TickStatus] | None = None
    ) -> list[dg.InstigatorTick]:
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name == REQUEST_SENSOR:
                return list(
                    self.instance.get_ticks(
                        state.instigator_origin_id,
                        state.selector_id,
                        after=after,
                        statuses=statuses,
                    )
                )
        return []

    def wait_for(
        self, condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2
    ) -> None:
        """Poll `condition` until it holds. Fails naming `what` with the daemon's log if it
        never does, or if the daemon died meanwhile."""
        started = time.monotonic()
        while True:
            # A server a scenario restarts or pauses refuses queries meanwhile.
            with contextlib.suppress(SQLAlchemyError):
                if condition():
                    return
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(
                    f"the daemon exited while waiting for {what}:\n{self.log_tail()}"
                )
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"no {what} within {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(interval_s)

    def progress(self, ids: list[str]) -> dict[str, int]:
        """How many of these workflows are in each state; a row exists once its run's
        admission has committed."""
        return dict(
            self.query(
                "SELECT state, count(*) FROM workflow_executions"
                " WHERE workflow_id = ANY(CAST(:ids AS uuid[])) GROUP BY state",
                ids=ids,
            )
        )

    def query(self, sql: str, **params: object) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
