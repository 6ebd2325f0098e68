"""Reducer benchmark: landing against a bare COPY, an hour's aggregation cost, and freshness.

One run starts a private stack on free ports (embedded PostgreSQL, the embedded broker, later
the Dagster daemon) and measures, on the same servers:

1. Landing. N synthetic workflow events (default 1,000,000; --quick 100,000), shaped as
   stamp_workflow publishes them and in about time order over the last two days, are
   produced to a 3-partition topic. `land` then takes them into a fresh migrated database in
   batches of 10,000: landing_events_per_s. The same rows, copied out of workflow_events
   (untimed), go by one bare COPY into the workflow_events of a second fresh migrated
   database with the same day partitions: copy_rows_per_s. landing_ratio = landing / copy.
   Where landing's time goes (read + parse, COPY, de-duplication, attribution) is measured
   by wrapping landing's stages for that one run.
2. Aggregation. One hour holding 100,000 events and one holding 1,000,000 (--quick: 10,000
   and 100,000) are written straight into workflow_events by COPY (untimed), vacuumed and
   analyzed. Each of the five hourly tables is then computed for the hour by `aggregate`;
   aggregate_100k_s and aggregate_1m_s are the sums over the five, the hour's cost. Their
   ratio shows how the cost grows with the hour (linear: about 10). Each hour is aggregated a
   second time too, as the refresh sensor does all through the hour in progress.
3. Freshness. `dagster-daemon` runs the real definitions. Stamp requests arrive at a steady
   100 workflows/s (--rate) for 5 minutes (--quick: 1 minute); the orchestrator stamps them
   and publishes their events, the landing sensor lands them and the refresh sensor
   re-aggregates the hour. reducer_namespace_hourly is polled every second: the k-th
   completion (by workflow_executions.completed_at) is shown when the sum of
   workflows_completed first reaches k. freshness_p50_s / freshness_p95_s are over those
   delays (the 1 s poll adds up to 1 s).

Prints progress to stderr and one JSON object as the last line of stdout, with at least:
  events, landing_events_per_s, copy_rows_per_s, landing_ratio, aggregate_100k_s,
  aggregate_1m_s, freshness_p95_s
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from servers import start_servers
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.cli.submit import produce_when_room
from bridge_dagster.db.migrate import upgrade
from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import spawn, stop, tail
from bridge_dagster.devstack.stack import instance_config
from bridge_dagster.events import synthetic
from bridge_dagster.events.demo import DemoRequest, demo_requests
from bridge_dagster.events.envelope import EventEnvelope, encode
from bridge_dagster.events.landing import Admission, LandedEvent, parse_event
from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.reducer import aggregate, event_days, landing
from bridge_dagster.reducer.landing import COPY_COLUMNS, LandingConfig, LandingResult, land
from bridge_dagster.reducer.sql import query
from bridge_dagster.resources.kafka import RECEIVE_MAX_BYTES
from bridge_dagster.settings import VARIABLES, load_settings

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 3
DEFAULT_NAMESPACE = "omninode.bridge"
NAMESPACES = (DEFAULT_NAMESPACE, "team.search", "team.billing", "team.docs")
LANDING_BATCH = 10_000
# A synthetic workflow emits 11 events, or 6 when it fails (10%); 10 per workflow leaves
# enough to cut the stream at exactly the count wanted.
EVENTS_PER_WORKFLOW = 10
PARSE_SAMPLE = 100_000
# Landing sends each batch's rows to COPY as bytes in one write; the baseline sends its rows
# as bytes in writes of about a batch, so both feed the server alike.
COPY_BUFFER = 8 << 20
WARM_UP_WORKFLOWS = 20
# landing.py's functions timed during the landing run, and the stage each one is.
LANDING_STAGES = {
    "_batches": "read_parse",
    "_prepare": "lookup",
    "_new_rows": "dedupe",
    "_attribute": "attribute",
    "_copy_data": "copy_build",
    "_commit_batch": "commit",
    "_record_namespaces": "namespaces",
    "_copy": "copy",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    args = _parse_args()
    began = time.monotonic()
    count = args.events or (100_000 if args.quick else 1_000_000)
    small, large = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    result: dict[str, Any] = {"events": count, "quick": args.quick}
    with ExitStack() as stack:
        data = _data_dir(args.data_dir, stack)
        pg, bootstrap = start_servers(data, stack)
        result |= _landing_phase(pg, bootstrap, count)
        result |= _aggregation_phase(pg, small, large)
        if args.skip_freshness:
            result |= {"freshness_p50_s": None, "freshness_p95_s": None}
        else:
            duration = 60 if args.quick else args.freshness_s
            result |= _freshness_phase(pg, bootstrap, data, stack, args, duration)
    result["notes"] = _notes(args, small, large) + result.pop("freshness_notes", [])
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(result))


def _data_dir(kept: Path | None, stack: ExitStack) -> Path:
    """A temporary directory, removed after the servers stop, unless --data-dir keeps one."""
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=False)
        return kept.resolve()
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bridge-bench-")))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100,000 events, hours of 10,000 and 100,000 events, 1 minute of freshness load",
    )
    parser.add_argument("--events", type=int, help="events to land (overrides the mode's count)")
    parser.add_argument(
        "--skip-freshness", action="store_true", help="skip the daemon and the freshness load"
    )
    parser.add_argument(
        "--freshness-s",
        type=int,
        default=300,
        help="seconds of freshness load outside --quick (default 300)",
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=100,
        help="stamp requests per second during the freshness load (default 100)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="ORCHESTRATOR_CONCURRENCY for the daemon: runs in progress at once (default 4)",
    )
    parser.add_argument(
        "--reducer-concurrency",
        type=int,
        help="REDUCER_CONCURRENCY: reducer_hourly runs queued or running at once (default:"
        " the project's)",
    )
    parser.add_argument(
        "--window-ms",
        type=int,
        default=5_000,
        help="AGGREGATION_WINDOW_SIZE_MS: landing and refresh sensor interval (default 5000)",
    )
    parser.add_argument(
        "--tail-s",
        type=int,
        default=600,
        help="after the freshness load, at most this long for the last completions to show"
        " (default 600; a reducer_hourly run alone took minutes on a loaded 2-core machine)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="a new directory to keep the servers' data and logs in (daemon.log among them)",
    )
    return parser.parse_args()


def _notes(args: argparse.Namespace, small: int, large: int) -> list[str]:
    notes = [
        "landing_events_per_s counts messages read over the wall time of land(); the"
        " baseline is one COPY of the same rows in one transaction into an identical table",
        f"aggregate_*_s sum the five hourly tables over one hour of {small:,} / {large:,}"
        " events (first pass; *_repeat_s is a second pass over the same hour)",
    ]
    if args.quick:
        notes.append(
            "quick mode uses 10x smaller hours: aggregate_100k_s is an hour of 10,000 events"
            " and aggregate_1m_s one of 100,000"
        )
    if not args.skip_freshness:
        notes.append(
            "freshness: from workflow_executions.completed_at (the recording transaction's"
            " start) to the first 1 s poll of reducer_namespace_hourly that counts it"
        )
    return notes


# --- servers and databases -------------------------------------------------------------


def _admin(pg: PostgresAddress) -> Engine:
    return create_engine(pg.url("postgres"), isolation_level="AUTOCOMMIT")


def _fresh_database(pg: PostgresAddress, name: str) -> tuple[PostgresAddress, Engine]:
    admin = _admin(pg)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    address = PostgresAddress(pg.host, pg.port, pg.user, pg.password, name)
    upgrade(address.url())
    return address, create_engine(address.url(), pool_size=2)


def _drop_database(pg: PostgresAddress, engine: Engine, name: str) -> None:
    """Drop a phase's database, so its autovacuum cannot run into the next phase's timing."""
    engine.dispose()
    admin = _admin(pg)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


def _checkpoint(engine: Engine) -> None:
    # So that a checkpoint of the untimed set-up does not land inside the timed part.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("CHECKPOINT")


def _vacuum(engine: Engine) -> None:
    # Sets hint bits and the visibility map now, rather than in the first timed scan.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) workflow_events")


# --- 1. landing against a bare COPY ------------------------------------------------------


def _landing_phase(pg: PostgresAddress, bootstrap: str, count: int) -> dict[str, Any]:
    topic = "bench.landing.workflows"
    ensure_topics(bootstrap, [topic, dlq_topic(topic)], partitions=PARTITIONS)
    log(f"landing: producing {count:,} synthetic events to {topic}")
    produce_s = _produce_events(bootstrap, topic, _landing_stream(count))
    log(f"  produced in {produce_s:.1f} s ({count / produce_s:,.0f} events/s)")
    consume_rate, sample = _consume_only(bootstrap, topic, count)
    parse_rate = _parse_only(sample)
    log(f"  bare consume {consume_rate:,.0f} events/s; parse_event {parse_rate:,.0f} events/s")

    _address, engine = _fresh_database(pg, "landing")
    _checkpoint(engine)
    result, seconds, stages = _timed_landing(engine, bootstrap, topic, count)
    landing_rate = result.read / seconds
    log(
        f"  land: {result.read:,} read, {result.landed:,} landed in {result.batches} batches,"
        f" {seconds:.1f} s ({landing_rate:,.0f} events/s)"
    )
    if result.landed != count or result.dead_lettered:
        log(f"  WARNING: landed {result.landed} of {count}, {result.dead_lettered} dead letters")

    rows, days = _copy_out(engine)
    _drop_database(pg, engine, "landing")
    copy_s = _bare_copy(pg, rows, days)
    copy_rate = result.landed / copy_s
    log(f"  bare COPY: {copy_s:.1f} s ({copy_rate:,.0f} rows/s)")
    return {
        "landing_events_per_s": round(landing_rate, 1),
        "copy_rows_per_s": round(copy_rate, 1),
        "landing_ratio": round(landing_rate / copy_rate, 3),
        "landing_s": round(seconds, 2),
        "copy_s": round(copy_s, 2),
        "landing_batches": result.batches,
        "landing_landed": result.landed,
        "landing_stages_s": {k: round(v, 2) for k, v in stages.items()},
        "produce_events_per_s": round(count / produce_s, 1),
        "consume_only_events_per_s": round(consume_rate, 1),
        "parse_only_events_per_s": round(parse_rate, 1),
    }


def _landing_stream(count: int) -> Iterator[EventEnvelope]:
    """`count` events over the last two days, in about time order as a live topic has them."""
    now = datetime.now(UTC)
    flows = synthetic.workflows(
        count // EVENTS_PER_WORKFLOW + 100,
        start=now - timedelta(hours=47),
        spread=timedelta(hours=46),
        namespaces=NAMESPACES,
        seed=11,
    )
    flows.sort(key=lambda w: w.started_at)
    return itertools.islice(synthetic.stream(flows, environment="bench"), count)


def _produce_events(bootstrap: str, topic: str, envelopes: Iterable[EventEnvelope]) -> float:
    """Produce every envelope keyed by its workflow, as the orchestrator does; seconds taken."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            # The orchestrator's own producer compresses with lz4 (resources/kafka.py), so
            # landing decompresses what it would in production.
            "compression.type": "lz4",
            "linger.ms": 50,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
        }
    )
    started = time.perf_counter()
    sent = 0
    for envelope in envelopes:
        produce_when_room(producer, topic, str(envelope.correlation_id).encode(), encode(envelope))
        sent += 1
        if sent % 100_000 == 0:
            log(f"  {sent:,} produced")
    if producer.flush(120):
        raise RuntimeError(f"the broker did not take every event for {topic} within 120 s")
    seconds = time.perf_counter() - started
    stored = _topic_size(bootstrap, topic)
    if stored != sent:
        raise RuntimeError(f"{topic} holds {stored} messages, {sent} were produced")
    return seconds


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            # land() knows a partition is read to its end by this event.
            "enable.partition.eof": True,
            # The embedded broker ignores fetch.max.bytes and answers with the whole backlog.
            "receive.message.max.bytes": RECEIVE_MAX_BYTES,
        }
    )


def _topic_size(bootstrap: str, topic: str) -> int:
    consumer = _consumer(bootstrap, "bench-sizes")
    try:
        marks = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()
    return sum(high - low for low, high in marks)


def _consume_only(bootstrap: str, topic: str, count: int) -> tuple[float, list[bytes]]:
    """Read the topic with nothing else done: the floor of landing's read side."""
    consumer = _consumer(bootstrap, "bench-consume-only")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    sample: list[bytes] = []
    seen = ended = 0
    started = time.perf_counter()
    try:
        while ended < PARTITIONS and seen < count:
            messages = consumer.consume(10_000, 10.0)
            if not messages:
                raise RuntimeError(f"{topic}: nothing within 10 s after {seen} messages")
            for message in messages:
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    ended += 1
                elif error is not None:
                    raise RuntimeError(error.str())
                else:
                    seen += 1
                    if len(sample) < PARSE_SAMPLE:
                        sample.append(message.value())
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    return seen / seconds, sample


def _parse_only(sample: list[bytes]) -> float:
    """parse_event alone over a sample: the Python cost landing pays per message."""
    admission = _admission(days=30)
    started = time.perf_counter()
    for value in sample:
        parse_event(value, None, admission)
    return len(sample) / (time.perf_counter() - started)


def _admission(days: int) -> Admission:
    now = datetime.now(UTC)
    return Admission(now=now, horizon=event_days.day_start(now.date() - timedelta(days=days)))


class _StageClock:
    """Seconds spent in landing's stages during one land(), by wrapping its module functions.

    land() reads and parses a batch on the calling thread while its look-up thread reads what
    the previous one needs from the database and its commit thread writes the one before, so
    read_parse, lookup and commit overlap; dedupe, attribute and copy_build (the COPY's bytes)
    are parts of lookup, namespaces and copy parts of commit (COMMIT itself is outside it).
    Wrapping keeps landing.py as it is.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def installed(self) -> Iterator[None]:
        # A stage landing.py no longer has is left out, not a failed benchmark.
        originals = {n: getattr(landing, n) for n in LANDING_STAGES if hasattr(landing, n)}
        for name, original in originals.items():
            wrap = self._generator if name == "_batches" else self._function
            setattr(landing, name, wrap(LANDING_STAGES[name], original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(landing, name, original)

    def _function(self, stage: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - began

        return timed

    def _generator(self, stage: str, original: Callable[..., Iterator[Any]]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            items = original(*args, **kwargs)
            try:
                while True:
                    began = time.perf_counter()
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                    finally:
                        self.seconds[stage] += time.perf_counter() - began
                    yield item
            finally:
                items.close()

        return timed


def _timed_landing(
    engine: Engine, bootstrap: str, topic: str, count: int
) -> tuple[LandingResult, float, dict[str, float]]:
    consumer = _consumer(bootstrap, "bridge-dagster-landing")
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    config = LandingConfig(
        topic=topic, batch_size=LANDING_BATCH, max_events=count + 1_000, retention_days=30
    )
    clock = _StageClock()

    def progress(partial: LandingResult) -> None:
        if partial.batches % 20 == 0:
            log(f"  {partial.read:,} landed after {partial.seconds:.1f} s")

    try:
        with clock.installed():
            started = time.perf_counter()
            result = land(engine, consumer, producer, config, on_batch=progress)
            seconds = time.perf_counter() - started
    finally:
        consumer.close()
    stages = dict(clock.seconds)
    # The calling thread's time not spent reading and parsing: waiting for commits.
    stages["wait_for_commit"] = seconds - stages.get("read_parse", 0.0)
    return result, seconds, stages


def _copy_out(engine: Engine) -> tuple[str, set[date]]:
    """The landed rows in landing's COPY format (text), and the days they fill (untimed)."""
    raw = engine.raw_connection()
    try:
        buffer = io.StringIO()
        raw.cursor().copy_expert(
            f"COPY (SELECT {COPY_COLUMNS} FROM workflow_events) TO STDOUT",
            buffer,
        )
        raw.commit()
    finally:
        raw.close()
    with engine.connect() as conn:
        days = event_days.existing_days(conn)
    return buffer.getvalue(), days


def _bare_copy(pg: PostgresAddress, rows: str, days: set[date]) -> float:
    """One COPY of `rows` into a second fresh migrated workflow_events: seconds, commit in."""
    _address, engine = _fresh_database(pg, "bare")
    with engine.begin() as conn:
        event_days.ensure_days(conn, days, event_days.existing_days(conn))
    _checkpoint(engine)
    source = io.BytesIO(rows.encode())
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        raw.cursor().copy_expert(
            f"COPY workflow_events ({COPY_COLUMNS}) FROM STDIN",
            source,
            size=COPY_BUFFER,
        )
        raw.commit()
        seconds = time.perf_counter() - started
    finally:
        raw.close()
    _drop_database(pg, engine, "bare")
    return seconds


# --- 2. aggregation of one hour ------------------------------------------------------------


def _aggregation_phase(pg: PostgresAddress, small: int, large: int) -> dict[str, Any]:
    _address, engine = _fresh_database(pg, "aggregate")
    today = datetime.now(UTC).date()
    # Each hour in a day partition of its own, so one hour's scan never reads the other's.
    hours = {
        small: event_days.day_start(today - timedelta(days=2)) + timedelta(hours=12),
        large: event_days.day_start(today - timedelta(days=1)) + timedelta(hours=12),
    }
    for (events, hour), seed in zip(hours.items(), (21, 22), strict=True):
        log(f"aggregation: writing an hour of {events:,} events at {hour:%Y-%m-%d %H:00}")
        _fill_hour(engine, hour, events, seed)
    _vacuum(engine)
    _checkpoint(engine)
    timings = {events: _time_hour(engine, hour, events) for events, hour in hours.items()}
    started = time.perf_counter()
    aggregate.rebuild_bridge_state(engine)
    bridge_state_s = time.perf_counter() - started
    _drop_database(pg, engine, "aggregate")
    first, second = timings[small], timings[large]
    return {
        "aggregate_100k_s": round(sum(first["first"].values()), 3),
        "aggregate_1m_s": round(sum(second["first"].values()), 3),
        "aggregate_ratio_1m_over_100k": round(
            sum(second["first"].values()) / sum(first["first"].values()), 2
        ),
        "aggregate_100k_repeat_s": round(sum(first["repeat"].values()), 3),
        "aggregate_1m_repeat_s": round(sum(second["repeat"].values()), 3),
        "aggregate_hour_events": [small, large],
        "aggregate_tables_100k_s": _rounded(first["first"]),
        "aggregate_tables_1m_s": _rounded(second["first"]),
        "aggregate_tables_1m_repeat_s": _rounded(second["repeat"]),
        "bridge_state_s": round(bridge_state_s, 4),
    }


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(s, 3) for name, s in seconds.items()}


def _fill_hour(engine: Engine, hour: datetime, count: int, seed: int) -> None:
    """`count` events of one hour, as landing would have written them, by COPY."""
    flows = synthetic.workflows(
        count // EVENTS_PER_WORKFLOW + 100,
        start=hour,
        # Room for a workflow's last event, 10 steps of 3 ms after its start.
        spread=timedelta(hours=1) - timedelta(seconds=1),
        namespaces=NAMESPACES,
        seed=seed,
    )
    flows.sort(key=lambda w: w.started_at)
    namespaces = {str(w.workflow_id): w.namespace for w in flows}
    envelopes = itertools.islice(synthetic.stream(flows, environment="bench"), count)
    admission = _admission(days=30)
    copy = f"COPY workflow_events ({COPY_COLUMNS}) FROM STDIN"
    with engine.begin() as conn:
        event_days.ensure_days(conn, {hour.date()}, event_days.existing_days(conn))
        cursor = conn.connection.dbapi_connection.cursor()
        offset = 0
        for chunk in _chunks(envelopes, 50_000):
            lines = []
            for envelope in chunk:
                event = parse_event(encode(envelope), None, admission)
                if not isinstance(event, LandedEvent):
                    raise RuntimeError(f"a synthetic event was rejected: {event.reason}")
                lines.append(_copy_line(event, namespaces[event.correlation_id], offset))
                offset += 1
            cursor.copy_expert(copy, io.StringIO("".join(lines)), size=COPY_BUFFER)
        # As landing records it, so the aggregation reads a touch_seq like in production.
        conn.execute(query("landing_touch_hours"), {"hours": [hour], "counts": [offset]})


def _chunks(items: Iterable[EventEnvelope], size: int) -> Iterator[list[EventEnvelope]]:
    # itertools.batched is Python 3.12; the project supports 3.11.
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _copy_line(e: LandedEvent, namespace: str, offset: int) -> str:
    """The row landing's COPY would write, every event named by its workflow as landing does.

    landing._row itself, private as it is: a copy of the format here went stale the first
    time a column changed.
    """
    row = landing._row(e, "bench.aggregate", offset % PARTITIONS, offset // PARTITIONS)
    return row.head + namespace + row.tail


def _time_hour(engine: Engine, hour: datetime, events: int) -> dict[str, dict[str, float]]:
    """Per table, seconds to aggregate the hour: a first pass, then a second (a refresh)."""
    end = hour + timedelta(hours=1)
    with engine.connect() as conn:
        # Warm the hour into the caches, so the first table does not pay for all five.
        conn.execute(
            text(
                "SELECT count(*) FROM workflow_events WHERE event_timestamp >= :s AND"
                " event_timestamp < :e"
            ),
            {"s": hour, "e": end},
        )
    passes: dict[str, dict[str, float]] = {}
    for name in ("first", "repeat"):
        passes[name] = {}
        for table in aggregate.HOURLY_TABLES:
            started = time.perf_counter()
            aggregate.aggregate(engine, table, hour, end, default_namespace=DEFAULT_NAMESPACE)
            passes[name][table.name] = time.perf_counter() - started
        log(
            f"  hour of {events:,}: {name} pass {sum(passes[name].values()):.2f} s "
            + ", ".join(f"{t.removeprefix('reducer_')} {s:.2f}" for t, s in passes[name].items())
        )
    return passes


# --- 3. freshness under the real daemon ----------------------------------------------------


@dataclass
class _Poll:
    at: float  # PostgreSQL's clock, epoch seconds, the same clock as completed_at
    shown: int


class _PacedLoad(threading.Thread):
    """Produces stamp requests at a steady rate, on the clock, from its own thread."""

    def __init__(
        self, bootstrap: str, topic: str, requests: Iterator[DemoRequest], count: int, rate: float
    ) -> None:
        super().__init__(name="paced-load", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.requests = requests
        self.count = count
        self.rate = rate
        self.sent: list[str] = []
        self.started_at = 0.0  # epoch seconds, to compare with PostgreSQL's completed_at
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:
            self.error = exc

    def _produce(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        started = time.monotonic()
        self.started_at = time.time()
        for i, request in enumerate(itertools.islice(self.requests, self.count)):
            # On the clock, not after a fixed sleep: a slow request does not slow the rate.
            delay = started + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            value = build_request(
                request.workflow_id, environment="bench", **request.build_kwargs()
            )
            producer.produce(self.topic, value, str(request.workflow_id).encode())
            producer.poll(0)
            self.sent.append(str(request.workflow_id))
        if producer.flush(60):
            raise RuntimeError("the broker did not take every stamp request within 60 s")


def _freshness_phase(
    pg: PostgresAddress,
    bootstrap: str,
    data: Path,
    stack: ExitStack,
    args: argparse.Namespace,
    duration_s: int,
) -> dict[str, Any]:
    address, engine = _fresh_database(pg, "freshness")
    stack.callback(engine.dispose)
    topics = {
        "requests": "fresh.requests",
        "workflow": "fresh.workflows",
        "reducer": "fresh.reducer",
    }
    ensure_topics(
        bootstrap,
        [*topics.values(), dlq_topic(topics["requests"]), dlq_topic(topics["workflow"])],
        partitions=PARTITIONS,
    )
    env = _daemon_env(address, bootstrap, topics, data, args)
    log_path = data / "daemon.log"
    daemon = spawn(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-m",
            "bridge_dagster.definitions",
        ],
        log_path=log_path,
        env=env,
        cwd=ROOT,
    )
    stack.callback(lambda: stop(daemon, signal.SIGINT, 30))
    watch = _Watch(engine, daemon, log_path)
    log("freshness: waiting for the daemon's three sensors to tick")
    watch.sensors_ticked()
    warm = _warm_up(engine, bootstrap, topics["requests"], watch)
    total = args.rate * duration_s
    log(f"freshness: {total:,} workflows at {args.rate}/s for {duration_s} s")
    load = _PacedLoad(bootstrap, topics["requests"], demo_requests(total, seed=7), total, args.rate)
    polls = _poll_during(load, watch, warm, args.tail_s)
    return _freshness_result(engine, polls, warm, load, args)


def _daemon_env(
    address: PostgresAddress,
    bootstrap: str,
    topics: dict[str, str],
    data: Path,
    args: argparse.Namespace,
) -> dict[str, str]:
    home = data / "dagster_home"
    home.mkdir()
    # None of the caller's project settings leak in: the daemon runs with exactly these.
    ours = {v.name for v in VARIABLES}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("DAGSTER_")}
    env.update(address.env())
    # Partitions from yesterday on: the bench's hours, and few partitions for Dagster to list.
    yesterday = event_days.day_start(datetime.now(UTC).date() - timedelta(days=1))
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": address.url(),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_REQUEST_TOPIC": topics["requests"],
            "KAFKA_WORKFLOW_TOPIC": topics["workflow"],
            "KAFKA_REDUCER_TOPIC": topics["reducer"],
            "ORCHESTRATOR_CONCURRENCY": str(args.concurrency),
            "MAX_REQUESTS_PER_RUN": "1000",
            "MAX_WORKFLOW_QUEUE_SIZE": "10000",
            "REQUEST_SENSOR_INTERVAL_S": "1",
            "AGGREGATION_WINDOW_SIZE_MS": str(args.window_ms),
            "REDUCER_PARTITIONS_START": f"{yesterday:%Y-%m-%d-%H:%M}",
            "BRIDGE_ALLOWED_ROOTS": str(ROOT),
            "ENVIRONMENT": "bench",
        }
    )
    if args.reducer_concurrency is not None:
        env["REDUCER_CONCURRENCY"] = str(args.reducer_concurrency)
    (home / "dagster.yaml").write_text(instance_config(load_settings(env)))
    return env


@dataclass
class _Watch:
    """Reads what the daemon has done; fails with the daemon's log when the daemon died."""

    engine: Engine
    daemon: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> None:
        if self.daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited:\n{tail(self.log_path, 40)}")

    def sensors_ticked(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.alive()
            with self.engine.connect() as conn:
                # Dagster creates its tables when the daemon first connects.
                sensors = conn.execute(text("SELECT to_regclass('job_ticks')")).scalar() and (
                    conn.execute(
                        text(
                            "SELECT count(DISTINCT selector_id) FROM job_ticks"
                            " WHERE type = 'SENSOR'"
                        )
                    ).scalar_one()
                )
            if sensors and sensors >= 3:
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"the sensors did not tick within {timeout_s:.0f} s:\n{tail(self.log_path, 40)}"
        )

    def poll(self) -> _Poll:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT COALESCE(sum(workflows_completed), 0),"
                    " EXTRACT(EPOCH FROM clock_timestamp()) FROM reducer_namespace_hourly"
                )
            ).one()
        return _Poll(at=float(row[1]), shown=int(row[0]))

    def run_states(self) -> str:
        """Dagster runs per job and status, short: 'stamp_workflow SUCCESS 3, ...'."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT pipeline_name, status, count(*) FROM runs GROUP BY 1, 2 ORDER BY 1, 2")
            ).all()
        return ", ".join(f"{job} {status} {n}" for job, status, n in rows)

    def done(self) -> tuple[int, int]:
        """Workflows terminal, and of them completed, counting the warm-up."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE state IN ('completed', 'failed')),"
                    " count(*) FILTER (WHERE state = 'completed') FROM workflow_executions"
                )
            ).one()
        return int(row[0]), int(row[1])


@dataclass(frozen=True)
class _Warm:
    ids: list[str]
    completed: int


def _warm_up(engine: Engine, bootstrap: str, topic: str, watch: _Watch) -> _Warm:
    """A few workflows all the way to the reducer tables, so the load meets a warm pipeline."""
    log(f"freshness: warm-up, {WARM_UP_WORKFLOWS} workflows through to reducer_namespace_hourly")
    load = _PacedLoad(
        bootstrap, topic, demo_requests(WARM_UP_WORKFLOWS, seed=99), WARM_UP_WORKFLOWS, 1_000
    )
    load.run()
    if load.error is not None:
        raise load.error
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        watch.alive()
        terminal, completed = watch.done()
        if terminal >= WARM_UP_WORKFLOWS and watch.poll().shown >= completed:
            log(f"  warm: {completed} completed and shown")
            return _Warm(load.sent, completed)
        time.sleep(1)
    raise RuntimeError(
        f"the warm-up did not reach the reducer in 300 s:\n{tail(watch.log_path, 40)}"
    )


def _poll_during(load: _PacedLoad, watch: _Watch, warm: _Warm, tail_s: int) -> list[_Poll]:
    """Poll every second from the load's start until every completion shows, or tail_s after."""
    polls: list[_Poll] = []
    load.start()
    tail_deadline: float | None = None
    next_poll = time.monotonic()
    next_log = next_poll + 10
    while True:
        poll = watch.poll()
        polls.append(poll)
        terminal, completed = watch.done()
        if time.monotonic() >= next_log:
            log(
                f"  sent {len(load.sent):,}, terminal {terminal - WARM_UP_WORKFLOWS:,},"
                f" completed {completed - warm.completed:,}, shown {poll.shown - warm.completed:,};"
                f" runs {watch.run_states()}"
            )
            next_log += 10
        if load.error is not None:
            raise load.error
        if not load.is_alive():
            if tail_deadline is None:
                tail_deadline = time.monotonic() + tail_s
                log(f"  load done: {len(load.sent):,} sent; waiting up to {tail_s} s for the tail")
            everything = terminal >= WARM_UP_WORKFLOWS + len(load.sent)
            if everything and poll.shown >= completed:
                return polls
            if time.monotonic() >= tail_deadline:
                log("  WARNING: the tail did not finish in time; unshown completions are reported")
                return polls
        watch.alive()
        next_poll += 1.0
        time.sleep(max(0.0, next_poll - time.monotonic()))


def _freshness_result(
    engine: Engine, polls: list[_Poll], warm: _Warm, load: _PacedLoad, args: argparse.Namespace
) -> dict[str, Any]:
    completions = _completions(engine, warm.ids)
    delays = _shown_delays(completions, polls, warm.completed)
    stats = _stage_latencies(engine, warm.ids)
    log(
        f"  freshness over {len(delays):,} of {len(completions):,} completions:"
        f" p50 {_round(_percentile(delays, 0.5))} s, p95 {_round(_percentile(delays, 0.95))} s"
    )
    return {
        "freshness_notes": _caveats(len(load.sent), len(completions), len(delays), args.tail_s),
        "freshness_p50_s": _round(_percentile(delays, 0.5)),
        "freshness_p95_s": _round(_percentile(delays, 0.95)),
        "freshness_max_s": _round(max(delays, default=None)),
        "freshness_workflows_sent": len(load.sent),
        "freshness_completed": len(completions),
        "freshness_unshown": len(completions) - len(delays),
        "freshness_rate_per_s": args.rate,
        # Below the rate asked for when stamping fell behind (stamp_latency_* grows then).
        "freshness_completed_per_s": _round(
            len(completions) / (completions[-1] - load.started_at) if completions else None
        ),
        **stats,
        "dagster_runs": _runs(engine),
        "orchestrator_concurrency": args.concurrency,
        "reducer_concurrency": args.reducer_concurrency or _project_default("REDUCER_CONCURRENCY"),
        "aggregation_window_ms": args.window_ms,
    }


def _project_default(name: str) -> int:
    return int(next(v.default for v in VARIABLES if v.name == name) or 0)


def _caveats(sent: int, completed: int, shown: int, tail_s: int) -> list[str]:
    """What a reader must know when the run ended with work still in the pipeline."""
    caveats = []
    if completed < sent:
        caveats.append(
            f"only {completed:,} of {sent:,} workflows completed by the end of the {tail_s} s"
            " tail: the stack did not keep up with the request rate on this machine"
        )
    if shown < completed:
        caveats.append(
            f"{completed - shown:,} completions (the latest) had not shown when the tail ended;"
            " freshness percentiles are over the ones that had, so they understate"
        )
    return caveats


def _completions(engine: Engine, warm_ids: list[str]) -> list[float]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM completed_at) FROM workflow_executions"
                " WHERE state = 'completed' AND workflow_id::text <> ALL(:warm)"
                " ORDER BY completed_at"
            ),
            {"warm": warm_ids},
        )
        return [float(t) for t in found.scalars()]


def _shown_delays(completions: list[float], polls: list[_Poll], baseline: int) -> list[float]:
    """The k-th completion shows at the first poll whose sum reaches baseline + k."""
    delays = []
    p = 0
    for k, completed_at in enumerate(completions, start=1):
        while p < len(polls) and polls[p].shown - baseline < k:
            p += 1
        if p == len(polls):
            break
        delays.append(polls[p].at - completed_at)
    return delays


def _stage_latencies(engine: Engine, warm_ids: list[str]) -> dict[str, float | None]:
    """Request to completion, and completion to landed (the landing transaction's start)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                "  EXTRACT(EPOCH FROM w.completed_at - w.requested_at)),"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY"
                "  EXTRACT(EPOCH FROM w.completed_at - w.requested_at)),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                "  EXTRACT(EPOCH FROM e.landed_at - w.completed_at)),"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY"
                "  EXTRACT(EPOCH FROM e.landed_at - w.completed_at))"
                " FROM workflow_executions AS w JOIN workflow_events AS e"
                "  ON e.correlation_id = w.workflow_id"
                "  AND e.event_type = 'stamp_workflow_completed'"
                " WHERE w.state = 'completed' AND w.workflow_id::text <> ALL(:warm)"
            ),
            {"warm": warm_ids},
        ).one()
    keys = (
        "stamp_latency_p50_s",
        "stamp_latency_p95_s",
        "landed_after_p50_s",
        "landed_after_p95_s",
    )
    return {k: _round(None if v is None else float(v)) for k, v in zip(keys, row, strict=True)}


def _runs(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per Dagster job: runs by status, mean run and wait times, from Dagster's own tables."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pipeline_name, status, count(*), avg(end_time - start_time),"
                # create_timestamp is UTC without a zone; start_time is epoch seconds.
                " avg(start_time - EXTRACT(EPOCH FROM create_timestamp))"
                " FROM runs GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ).all()
    summary: dict[str, dict[str, Any]] = defaultdict(dict)
    for job, status, count, mean_run, mean_wait in rows:
        summary[job][status.lower()] = count
        if status == "SUCCESS" and mean_run is not None:
            summary[job]["mean_run_s"] = round(float(mean_run), 2)
            # From the sensor's request to the run's start: queue and process launch.
            summary[job]["mean_wait_s"] = round(float(mean_wait), 2)
    return dict(summary)


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    main()
