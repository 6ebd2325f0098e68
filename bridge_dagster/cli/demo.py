"""`bridge-dagster demo`: the whole bridge at work from one command, checked end to end.

It starts `bridge-dagster dev` (or adopts the one running for --data-dir), puts a varied
load on the request topic with a few requests broken on purpose, then waits, saying what
for, until every workflow has completed or failed, the broken requests are dead-lettered,
landing has caught up, the hours the load touched are aggregated in every reducer table and
the reducer's asset checks passed in those runs. It prints what happened in numbers and the
UI pages to open, and exits 0 only if all of that held within --timeout.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import click
import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from bridge_dagster.cli.submit import produce_when_room
from bridge_dagster.devstack.processes import spawn, stop, wait_for_stop_signal
from bridge_dagster.devstack.stack import DevOptions, adopt_running_stack
from bridge_dagster.events.demo import FlawedRequest, demo_requests, flawed_requests
from bridge_dagster.events.requests import build_request
from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from bridge_dagster.reducer.partitions import partition_key
from bridge_dagster.settings import ConfigError, Settings, load_settings

DEFAULT_REQUESTS = 500
MIN_REQUESTS = 10
MAX_REQUESTS = 100_000
# One request in this many is broken on purpose; at least two, so both kinds show.
FLAWED_ONE_IN = 50
CLI = Path(sys.executable).parent / "bridge-dagster"
STACK_LOG = "demo-stack.log"
STACK_START_TIMEOUT_S = 180
# dagster dev stops its run workers within 30 s; the rest of the stack needs a few more.
STACK_STOP_GRACE_S = 60
POLL_INTERVAL_S = 0.5
# A busy two-core machine can stall a healthy broker for seconds, never for this long.
BROKER_SILENCE_S = 15
BROKER_PROBE_TIMEOUT_S = 2.0
DELIVERY_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 30.0
LOCATION = "bridge_dagster"
REPOSITORY = "__repository__"
REQUEST_SENSOR = "stamp_request_sensor"
SHOWN_ASSET = "reducer_namespace_hourly"
CHECK_PASSED = "SUCCEEDED"
CHECK_SKIPPED = "SKIPPED"
CHECK_FAILED = {"FAILED", "EXECUTION_FAILED"}

CHECKS_QUERY = """
query DemoChecks($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
  }
}
"""
CHECK_EXECUTIONS_QUERY = """
query DemoCheckExecutions($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 50) { runId status }
}
"""
SENSOR_QUERY = """
query DemoSensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
  }
}
"""
RUN_QUERY = """
query DemoRun($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { jobName status } }
}
"""

TERMINAL_SQL = """
SELECT count(*) FROM workflow_executions
WHERE workflow_id = ANY(:ids) AND state IN ('completed', 'failed')
"""
DEAD_LETTERED_SQL = "SELECT count(*) FROM dead_letters WHERE source = ANY(:sources)"
LANDED_SQL = "SELECT partition, next_offset FROM landing_positions WHERE topic = :topic"
# The event time of a workflow's events lies after its request was built: the lower bound
# lets PostgreSQL skip the older days of the partitioned table.
TOUCHED_HOURS_SQL = """
SELECT DISTINCT date_trunc('hour', event_timestamp) AS hour FROM workflow_events
WHERE correlation_id = ANY(:ids) AND event_timestamp >= :since
ORDER BY hour
"""
AGGREGATED_SQL = """
SELECT count(*)
FROM reducer_landed_hours AS l
CROSS JOIN unnest(CAST(:tables AS text[])) AS t(asset)
JOIN reducer_hour_state AS s
  ON s.asset = t.asset AND s.hour = l.hour AND s.aggregated_seq >= l.touch_seq
WHERE l.hour = ANY(:hours)
"""
# The run that last aggregated each (asset, hour): its checks speak for that hour.
LATEST_AGGREGATIONS_SQL = """
SELECT DISTINCT ON (a.asset, h.hour) a.asset, a.run_id
FROM unnest(CAST(:hours AS timestamptz[])) AS h(hour)
JOIN reducer_aggregations AS a ON a.range_start <= h.hour AND h.hour < a.range_end
WHERE a.asset = ANY(:assets) AND a.status = 'completed' AND a.run_id IS NOT NULL
ORDER BY a.asset, h.hour, a.id DESC
"""
OUTCOMES_SQL = """
SELECT state, count(*) AS workflows, min(workflow_id::text) AS example, min(error) AS error
FROM workflow_executions WHERE workflow_id = ANY(:ids) GROUP BY state
"""
TIMINGS_SQL = """
SELECT count(*) AS finished,
       min(requested_at) AS first_requested,
       max(completed_at) AS last_finished,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - requested_at))
           FILTER (WHERE state = 'completed') AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - requested_at))
           FILTER (WHERE state = 'completed') AS p95_s
FROM workflow_executions WHERE workflow_id = ANY(:ids) AND state IN ('completed', 'failed')
"""
COUNTS_SQL = """
SELECT count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM workflow_executions WHERE workflow_id = ANY(:ids)
"""
FIRST_RUN_SQL = """
SELECT run_id FROM workflow_executions
WHERE workflow_id = ANY(:ids) AND state = 'completed' AND run_id IS NOT NULL
ORDER BY completed_at LIMIT 1
"""
NAMESPACE_STATS_SQL = """
SELECT namespace, sum(workflows_completed) AS completed, sum(workflows_failed) AS failed,
       sum(stamps_created) AS stamps, sum(bytes_stamped) AS bytes,
       max(latency_p95_ms) AS p95_ms
FROM reducer_namespace_hourly WHERE hour = ANY(:hours)
GROUP BY namespace ORDER BY namespace
"""


class DemoFailed(click.ClickException):
    """Something the demo waits for did not happen; the message names it and where to look."""

    def format_message(self) -> str:
        return f"Demo failed: {self.message}"


@dataclass(frozen=True)
class Stack:
    """The stack the demo talks to; `process` is set only when the demo started it."""

    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise DemoFailed(
                f"`bridge-dagster dev` stopped (exit code {self.process.returncode});"
                f" its output is in {self.log_path}"
            )


@dataclass(frozen=True)
class Load:
    """The messages to send; which must complete, and the broken ones (all dead-lettered)."""

    messages: list[tuple[UUID, bytes]]
    completing: list[UUID]
    flawed: list[FlawedRequest]

    def failing(self) -> list[UUID]:
        return [f.workflow_id for f in self.flawed if f.fails_workflow]

    def finishing(self) -> list[UUID]:
        """The workflows that end completed or failed: all but the unreadable requests."""
        return [*self.completing, *self.failing()]


@dataclass(frozen=True)
class Sent:
    sources: dict[UUID, str]  # workflow id → "<topic>/<partition>/<offset>"
    since: datetime  # shortly before the first request was built
    seconds: float


@dataclass(frozen=True)
class Goal:
    """One thing to wait for: `probe` says how much of it is done, out of how much."""

    what: str
    probe: Callable[[], tuple[int, int]]
    hint: str


@click.command(
    epilog="""\b
Examples:
  bridge-dagster demo                          500 requests, then the summary; exit 0 if all held
  bridge-dagster demo --requests 50 --keep-running   a small load; the UI stays up after
  bridge-dagster demo --ui-port 3001 --data-dir /tmp/bridge-demo

\b
While `bridge-dagster dev` runs for --data-dir, the demo uses that stack and leaves it
running; otherwise it starts one, with the same options as `bridge-dagster dev`, and
stops it at the end unless --keep-running.
"""
)
@click.option(
    "--requests",
    "count",
    type=click.IntRange(MIN_REQUESTS, MAX_REQUESTS),
    default=DEFAULT_REQUESTS,
    show_default=True,
    metavar="N",
    help=f"Requests to submit; one in {FLAWED_ONE_IN} is broken on purpose.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait, once the requests are sent, for everything to have happened.",
)
@click.option(
    "--keep-running", is_flag=True, help="Leave the stack and its UI up after the summary."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".data"),
    show_default=True,
    help="The dev stack's data directory (as for `bridge-dagster dev`).",
)
@click.option("--ui-port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option("--postgres-port", type=click.IntRange(1, 65535), default=5436, show_default=True)
@click.option("--kafka-port", type=click.IntRange(1, 65535), default=29092, show_default=True)
def demo(
    count: int,
    timeout: float,
    keep_running: bool,
    data_dir: Path,
    ui_port: int,
    postgres_port: int,
    kafka_port: int,
) -> None:
    """See the bridge work: a varied load through every part, checked, then a summary.

    Starts the stack (or uses the running one), submits N requests with a progress bar,
    waits for the workflows, the dead letters, landing, the reducer hours and their asset
    checks, and prints completed / failed / dead-lettered counts, per-namespace stats from
    reducer_namespace_hourly, throughput, p95 latency and links into the Dagster UI.
    """
    started = time.monotonic()
    options = DevOptions(data_dir.resolve(), ui_port, postgres_port, kafka_port)
    failure: click.ClickException | None = None
    with _stack(options) as stack:
        try:
            _run(stack, count, timeout)
        except click.ClickException as exc:
            failure = exc
            exc.show()  # now, before the stack stops or is held
        else:
            click.echo(f"\nDemo passed in {time.monotonic() - started:.1f} s.")
        if keep_running:
            _hold(stack)
    if failure is not None:
        raise SystemExit(failure.exit_code)


# --- the stack -----------------------------------------------------------------------------


@contextmanager
def _stack(options: DevOptions) -> Iterator[Stack]:
    if adopt_running_stack(options.data_dir):
        url = os.environ["DAGSTER_WEBSERVER_URL"]
        click.echo(f"Stack: using the running `bridge-dagster dev` ({url})")
        yield Stack(url, None, None)
        return
    process, log_path = _start_dev(options)
    try:
        adopt_running_stack(options.data_dir)
        yield Stack(f"http://127.0.0.1:{options.ui_port}", process, log_path)
    finally:
        click.echo("Stack: stopping…")
        # dev stops Dagster, the broker and PostgreSQL in order on SIGINT.
        stop(process, signal.SIGINT, STACK_STOP_GRACE_S)
        click.echo("Stack: stopped")


def _start_dev(options: DevOptions) -> tuple[subprocess.Popen[bytes], Path]:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.data_dir / STACK_LOG
    log_path.unlink(missing_ok=True)
    click.echo(f"Stack: starting `bridge-dagster dev` (its output also in {log_path})")
    command = [
        str(CLI), "dev", "--data-dir", str(options.data_dir),
        "--ui-port", str(options.ui_port),
        "--postgres-port", str(options.postgres_port),
        "--kafka-port", str(options.kafka_port),
    ]  # fmt: skip
    process = spawn(command, log_path=log_path)
    try:
        _await_ready(process, log_path)
    except BaseException:
        stop(process, signal.SIGINT, STACK_STOP_GRACE_S)
        raise
    return process, log_path


def _await_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Relay dev's lines until its "Ready." line; fail if it exits or takes too long."""
    deadline = time.monotonic() + STACK_START_TIMEOUT_S
    shown = 0
    while True:
        # Complete lines only: the last one may still be being written.
        lines = log_path.read_text(errors="replace").split("\n")[:-1]
        for line in lines[shown:]:
            if not line.startswith("Ready."):
                click.echo(f"  {line}")
        shown = len(lines)
        if any(line.startswith("Ready.") for line in lines):
            return
        if process.poll() is not None:
            raise DemoFailed(
                f"`bridge-dagster dev` exited with code {process.returncode} before the stack"
                f" was up; its output is above and in {log_path}"
            )
        if time.monotonic() > deadline:
            raise DemoFailed(
                f"the stack was not up within {STACK_START_TIMEOUT_S} s; its output is above"
                f" and in {log_path}"
            )
        time.sleep(0.3)


def _hold(stack: Stack) -> None:
    if stack.process is None:
        click.echo(f"\nThe stack keeps running: {stack.url}")
        return
    click.echo(f"\nThe UI stays up at {stack.url}; press Ctrl-C to stop the stack.")
    process = stack.process
    wait_for_stop_signal(lambda: process.poll() is None)


# --- the demo ------------------------------------------------------------------------------


def _run(stack: Stack, count: int, timeout: float) -> None:
    settings = _settings()
    bootstrap = settings.kafka_bootstrap_servers
    if bootstrap is None:
        raise DemoFailed("KAFKA_BOOTSTRAP_SERVERS is not known; start `bridge-dagster dev` first")
    engine = create_engine(settings.postgres.url(), connect_args={"connect_timeout": 10})
    load = _load(count, settings.environment)
    click.echo(
        f"\nSubmitting {count:,} requests to {settings.request_topic}: {len(load.completing):,}"
        f" to complete and {len(load.flawed)} broken on purpose, to be dead-lettered"
        f" ({len(load.failing())} of them as failed workflows)"
    )
    sent = _send(bootstrap, settings.request_topic, load.messages)
    click.echo(f"  sent in {sent.seconds:.1f} s")
    with (
        Broker(bootstrap, settings.workflow_topic) as broker,
        httpx.Client(base_url=stack.url, timeout=HTTP_TIMEOUT_S) as ui,
    ):
        watch = Watch(stack, broker, time.monotonic() + timeout, timeout)
        hours = _wait(watch, engine, ui, load, sent, settings)
        _check_outcomes(engine, load, sent)
        links = _links(stack.url, engine, ui, load, hours)
        _print_summary(engine, load, sent, hours, links)
    engine.dispose()


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _load(count: int, environment: str) -> Load:
    # A fresh seed each time: the bridge processes a workflow id once, so a repeated seed
    # would make a second demo do nothing.
    seed = random.randrange(1 << 32)
    flawed = flawed_requests(max(2, count // FLAWED_ONE_IN), seed=seed, environment=environment)
    regular = list(demo_requests(count - len(flawed), seed=seed))
    messages = [
        (r.workflow_id, build_request(r.workflow_id, environment=environment, **r.build_kwargs()))
        for r in regular
    ]
    rng = random.Random(seed)
    for item in flawed:
        messages.insert(rng.randrange(len(messages) + 1), (item.workflow_id, item.value))
    return Load(messages, [r.workflow_id for r in regular], flawed)


def _send(bootstrap: str, topic: str, messages: Sequence[tuple[UUID, bytes]]) -> Sent:
    since = datetime.now().astimezone() - timedelta(minutes=1)
    errors: list[KafkaError] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
            # A broker that is down shows as one message below, not librdkafka log lines.
            "log_level": 0,
            "error_cb": errors.append,
        }
    )
    try:
        producer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        raise DemoFailed(
            f"cannot reach the Kafka broker at {bootstrap} ({exc}); {_broker_fix()}"
        ) from None
    sources: dict[UUID, str] = {}
    failed: list[KafkaError] = []
    started = time.monotonic()
    with tqdm(total=len(messages), desc="submitting", unit="req", disable=None) as bar:

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failed.append(error)
                return
            key = UUID(message.key().decode())
            sources[key] = f"{message.topic()}/{message.partition()}/{message.offset()}"
            bar.update()

        for workflow_id, value in messages:
            produce_when_room(producer, topic, str(workflow_id).encode(), value, delivered)
        left = producer.flush(DELIVERY_TIMEOUT_S)
    if failed or left:
        reason = failed[0].str() if failed else f"{left:,} still undelivered"
        raise DemoFailed(
            f"requests did not reach {topic!r} on the Kafka broker at {bootstrap} ({reason});"
            f" {_broker_fix()}"
        )
    return Sent(sources, since, time.monotonic() - started)


def _broker_fix() -> str:
    return (
        "restart the stack (`bridge-dagster dev`), or set KAFKA_BOOTSTRAP_SERVERS to a"
        " running broker"
    )


# --- waiting -------------------------------------------------------------------------------


class Broker:
    """A consumer for the workflow topic's watermarks that also notices a broker going away."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "bridge-dagster-demo",
                "enable.auto.commit": False,
                "log_level": 0,
                "error_cb": lambda _error: None,
            }
        )
        self.last_answer = time.monotonic()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.consumer.close()

    def probe(self, what: str) -> None:
        """Fail naming the broker once it has not answered for BROKER_SILENCE_S."""
        try:
            self.consumer.list_topics(self.topic, timeout=BROKER_PROBE_TIMEOUT_S)
        except KafkaException as exc:
            self.silent(exc, what)
        else:
            self.last_answer = time.monotonic()

    def silent(self, exc: KafkaException, what: str) -> None:
        silence = time.monotonic() - self.last_answer
        if silence > BROKER_SILENCE_S:
            raise DemoFailed(
                f"the Kafka broker at {self.bootstrap} has not answered for {silence:.0f} s"
                f" ({exc.args[0].str() if exc.args else exc}) while waiting for {what};"
                f" {_broker_fix()}"
            )

    def high_watermarks(self) -> dict[int, int]:
        topic = self.consumer.list_topics(self.topic, timeout=BROKER_PROBE_TIMEOUT_S).topics
        partitions = topic[self.topic].partitions if self.topic in topic else {}
        return {
            p: self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=BROKER_PROBE_TIMEOUT_S, cached=False
            )[1]
            for p in partitions
        }


@dataclass
class Watch:
    stack: Stack
    broker: Broker
    deadline: float
    timeout: float

    def until(self, goal: Goal) -> None:
        """Poll the goal with a progress bar until it is met; fail naming it if it is not."""
        click.echo(f"Waiting for {goal.what}")
        started = time.monotonic()
        done, total = 0, 0
        with tqdm(desc="  ", unit="", disable=None, leave=False) as bar:
            while True:
                self.stack.check_alive()
                self.broker.probe(goal.what)
                try:
                    done, total = goal.probe()
                except KafkaException as exc:
                    self.broker.silent(exc, goal.what)
                except SQLAlchemyError as exc:
                    raise DemoFailed(
                        f"cannot read PostgreSQL ({_first_line(exc)}) while waiting for"
                        f" {goal.what}; check that the stack is still running"
                    ) from None
                bar.total, bar.n = total, done
                bar.refresh()
                if total and done >= total:
                    break
                if time.monotonic() > self.deadline:
                    raise DemoFailed(
                        f"{goal.what}: {done:,} of {total:,} within --timeout {self.timeout:g} s;"
                        f" {goal.hint}"
                    )
                time.sleep(POLL_INTERVAL_S)
        click.echo(f"  ✓ {done:,} of {total:,} ({time.monotonic() - started:.1f} s)")


def _wait(
    watch: Watch, engine: Engine, ui: httpx.Client, load: Load, sent: Sent, settings: Settings
) -> list[datetime]:
    """Wait for each goal in turn; the hours the load touched."""
    finishing = load.finishing()
    sensor_page = _sensor_page(watch.stack.url)
    watch.until(
        Goal(
            f"{len(finishing):,} workflows to complete or fail",
            lambda: (_count(engine, TERMINAL_SQL, ids=finishing), len(finishing)),
            f"is {REQUEST_SENSOR} running ({sensor_page})? `bridge-dagster status"
            f" {finishing[0]}` shows where one stands",
        )
    )
    sources = [sent.sources[f.workflow_id] for f in load.flawed]
    watch.until(
        Goal(
            f"{_requests(len(sources))} broken on purpose to be dead-lettered",
            lambda: (_count(engine, DEAD_LETTERED_SQL, sources=sources), len(sources)),
            "the stamp_workflow runs' logs in the UI say what they did with them",
        )
    )
    watch.until(
        Goal(
            f"landing to catch up with {settings.workflow_topic}",
            lambda: _landing_progress(engine, watch.broker),
            "is workflow_event_landing_sensor running, and did land_workflow_events fail?",
        )
    )
    with engine.connect() as conn:
        rows = conn.execute(text(TOUCHED_HOURS_SQL), {"ids": finishing, "since": sent.since})
        hours = list(rows.scalars())
    watch.until(
        Goal(
            f"{_hours(hours)} to be aggregated in the {len(HOURLY_TABLE_NAMES)} hourly tables",
            lambda: (
                _count(engine, AGGREGATED_SQL, hours=hours, tables=list(HOURLY_TABLE_NAMES)),
                len(hours) * len(HOURLY_TABLE_NAMES),
            ),
            "is reducer_refresh_sensor running, and did a reducer_hourly run fail?",
        )
    )
    watch.until(
        Goal(
            "the reducer's asset checks to pass in the runs that aggregated those hours",
            lambda: _checks_progress(engine, ui, watch.stack.url, _checks(ui), hours),
            "see the Checks tab of the reducer assets in the UI",
        )
    )
    return hours


def _count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def _landing_progress(engine: Engine, broker: Broker) -> tuple[int, int]:
    """Events landed and events on the topic, over the partitions of the workflow topic."""
    ends = broker.high_watermarks()
    with engine.connect() as conn:
        landed = dict(conn.execute(text(LANDED_SQL), {"topic": broker.topic}).all())
    return sum(min(landed.get(p, 0), end) for p, end in ends.items()), sum(ends.values())


def _checks(ui: httpx.Client) -> dict[str, list[str]]:
    """Each reducer asset's check names, as the webserver knows them."""
    keys = [{"path": [name]} for name in HOURLY_TABLE_NAMES]
    nodes = _graphql(ui, CHECKS_QUERY, {"keys": keys})["assetNodes"]
    checks = {
        node["assetKey"]["path"][-1]: [c["name"] for c in node["assetChecksOrError"]["checks"]]
        for node in nodes
        if node["assetChecksOrError"]["__typename"] == "AssetChecks"
    }
    return {asset: names for asset, names in checks.items() if names}


def _checks_progress(
    engine: Engine, ui: httpx.Client, url: str, checks: dict[str, list[str]], hours: list[datetime]
) -> tuple[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(LATEST_AGGREGATIONS_SQL), {"hours": hours, "assets": list(checks)}
        ).all()
    runs: dict[str, set[str]] = {}
    for asset, run_id in rows:
        runs.setdefault(asset, set()).add(run_id)
    done = total = 0
    for asset, names in checks.items():
        for name in names:
            statuses = _check_statuses(ui, asset, name)
            for run_id in runs.get(asset, ()):
                total += 1
                seen = statuses.get(run_id, set())
                if seen & CHECK_FAILED or seen == {CHECK_SKIPPED}:
                    status = "/".join(sorted(seen))
                    raise DemoFailed(
                        f"asset check {name} on {asset} ended {status} in run"
                        f" {url}/runs/{run_id}; its result there says which rows disagree"
                    )
                done += CHECK_PASSED in seen
    return done, total


def _check_statuses(ui: httpx.Client, asset: str, name: str) -> dict[str, set[str]]:
    """The statuses of the check's recent executions, by run.

    A check without partitions on a partitioned asset leaves two records in a run: its
    evaluation, and the partition's planned one, which ends SKIPPED.
    """
    variables = {"key": {"path": [asset]}, "name": name}
    executions = _graphql(ui, CHECK_EXECUTIONS_QUERY, variables)["assetCheckExecutions"]
    statuses: dict[str, set[str]] = {}
    for execution in executions:
        statuses.setdefault(execution["runId"], set()).add(execution["status"])
    return statuses


def _check_outcomes(engine: Engine, load: Load, sent: Sent) -> None:
    """Every request did what it was meant to: completed, or failed and dead-lettered."""
    with engine.connect() as conn:
        unexpected = conn.execute(
            text(OUTCOMES_SQL + " HAVING state <> 'completed'"), {"ids": load.completing}
        ).first()
        wrongly = conn.execute(
            text(OUTCOMES_SQL + " HAVING state <> 'failed'"), {"ids": load.failing()}
        ).first()
    if unexpected is not None:
        raise DemoFailed(
            f"{unexpected.workflows} workflows that should have completed ended"
            f" {unexpected.state} ({unexpected.error}); `bridge-dagster status"
            f" {unexpected.example}` shows one"
        )
    if wrongly is not None:
        raise DemoFailed(
            f"{wrongly.workflows} requests broken on purpose ended {wrongly.state} instead of"
            f" failed; `bridge-dagster status {wrongly.example}` shows one"
        )
    regular = [sent.sources[w] for w in load.completing]
    if (extra := _count(engine, DEAD_LETTERED_SQL, sources=regular)) != 0:
        raise DemoFailed(f"{extra} requests that completed were dead-lettered as well")


# --- the summary ---------------------------------------------------------------------------


def _sensor_page(url: str) -> str:
    return f"{url}/locations/{LOCATION}/sensors/{REQUEST_SENSOR}"


def _links(
    url: str, engine: Engine, ui: httpx.Client, load: Load, hours: list[datetime]
) -> dict[str, str]:
    """The UI pages to open, each checked: it answers 200 and shows what it names."""
    with engine.connect() as conn:
        run_id = conn.execute(text(FIRST_RUN_SQL), {"ids": load.completing}).scalar_one()
    run = _graphql(ui, RUN_QUERY, {"id": run_id})["runOrError"]
    if run["__typename"] != "Run" or run["status"] != "SUCCESS":
        raise DemoFailed(f"run {run_id} of stamp_workflow is not a successful run: {run}")
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": REQUEST_SENSOR,
    }
    sensor = _graphql(ui, SENSOR_QUERY, {"selector": selector})["sensorOrError"]
    if sensor["__typename"] != "Sensor" or sensor["sensorState"]["status"] != "RUNNING":
        raise DemoFailed(f"{REQUEST_SENSOR} is not running: {sensor}; turn it on in the UI")
    links = {
        "a stamp_workflow run": f"{url}/runs/{run_id}",
        f"{SHOWN_ASSET}, its newest hour": (
            f"{url}/assets/{SHOWN_ASSET}?view=partitions&partition={partition_key(hours[-1])}"
        ),
        "the request sensor": _sensor_page(url),
    }
    for link in links.values():
        status = ui.get(link).status_code
        if status != 200:
            raise DemoFailed(f"the UI answered HTTP {status} for {link}")
    return links


def _print_summary(
    engine: Engine, load: Load, sent: Sent, hours: list[datetime], links: dict[str, str]
) -> None:
    with engine.connect() as conn:
        counts = conn.execute(text(COUNTS_SQL), {"ids": load.finishing()}).one()
        timings = conn.execute(text(TIMINGS_SQL), {"ids": load.finishing()}).one()
        namespaces = conn.execute(text(NAMESPACE_STATS_SQL), {"hours": hours}).all()
    span = (timings.last_finished - timings.first_requested).total_seconds()
    sources = [sent.sources[w] for w, _ in load.messages]
    dead_lettered = _count(engine, DEAD_LETTERED_SQL, sources=sources)
    failed_flaws = ", ".join(dict.fromkeys(f.flaw for f in load.flawed if f.fails_workflow))
    unreadable = len(load.flawed) - len(load.failing())
    click.echo("\nSummary")
    outcomes = [
        ("completed", f"{counts.completed:,}", ""),
        ("failed", f"{counts.failed:,}", f"on purpose: {failed_flaws}"),
        (
            "dead-lettered",
            f"{dead_lettered:,}",
            f"on purpose: the failed ones and {unreadable} not JSON, with no workflow id",
        ),
    ]
    _echo_table(("outcome", "requests", ""), outcomes, "<><")
    click.echo(
        f"\nThroughput  {timings.finished / span:,.1f} workflows/s ({timings.finished:,} from the"
        f" first request to the last finish, {span:.1f} s)"
    )
    click.echo(
        f"Latency     p50 {timings.p50_s:.1f} s, p95 {timings.p95_s:.1f} s (request to completed)"
    )
    click.echo(
        f"\nreducer_namespace_hourly for {_hours(hours)}, as the reducer aggregated it"
        " (all workflows there, not only the demo's):"
    )
    rows = [
        (
            r.namespace, f"{r.completed:,}", f"{r.failed:,}", f"{r.stamps:,}", _size(r.bytes),
            "-" if r.p95_ms is None else f"{r.p95_ms / 1000:.1f} s",
        )
        for r in namespaces
    ]  # fmt: skip
    headers = ("namespace", "completed", "failed", "stamps", "bytes", "p95 latency")
    _echo_table(headers, rows, "<>>>>>")
    click.echo("\nIn the Dagster UI:")
    width = max(len(name) for name in links)
    for name, link in links.items():
        click.echo(f"  {name:<{width}}  {link}")


def _echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> None:
    """Columns padded to their widest cell; `align` has one '<' or '>' per column."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        cells = [f"{c:{a}{w}}" for c, a, w in zip(row, align, widths, strict=True)]
        click.echo("  " + "  ".join(cells).rstrip())


def _requests(count: int) -> str:
    return "1 request" if count == 1 else f"{count:,} requests"


def _hours(hours: list[datetime]) -> str:
    if len(hours) == 1:
        return f"hour {partition_key(hours[0])}"
    return f"{len(hours)} hours {partition_key(hours[0])} to {partition_key(hours[-1])}"


def _size(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count / 1024:,.1f} KB"
    return f"{count / (1024 * 1024):,.1f} MB"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _graphql(ui: httpx.Client, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    try:
        response = ui.post("/graphql", json={"query": query, "variables": variables})
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DemoFailed(
            f"the Dagster webserver at {ui.base_url} did not answer ({exc}); is the stack up?"
        ) from None
    if not isinstance(body.get("data"), dict) or body.get("errors"):
        raise DemoFailed(f"the Dagster webserver refused a query: {body.get('errors')}")
    return body["data"]
