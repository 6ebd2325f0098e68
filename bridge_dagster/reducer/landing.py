"""Landing: events from the workflow topic into workflow_events, exactly once in effect.

One landing at a time holds a session advisory lock, reads where the database says each
partition resumes (landing_positions), and lands the topic in batches. A batch is one
transaction: its new rows (one COPY), the namespaces they name, the hours they touch, the
dead letters of its malformed messages and the positions after it. A crash at any instant
therefore leaves either the whole batch or none of it, and the next landing resumes where the
last commit left off. Rows are also idempotent on event_id, so re-sent events land once.

Dead letters are an outbox: written with their batch, produced after the commit, marked sent
once the broker has them; what a crash left unsent is sent by the next landing. A dead letter
may thus be produced twice after a crash, byte-identical, never lost.

No Dagster here: the landing job, the bench and the crash test all call `land`.
"""

from __future__ import annotations

import gc
import io
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import blake3
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from sqlalchemy import Connection, Engine, text

from bridge_dagster.events.landing import Admission, LandedEvent, Rejected, parse_event
from bridge_dagster.events.topics import dead_letter_value, dlq_topic
from bridge_dagster.reducer import event_days
from bridge_dagster.reducer.sql import query
from bridge_dagster.sensors.cursor import share_fairly

# pg_advisory_lock key of "the one landing"; also taken by the retention job.
LANDING_LOCK = 0x6272_6964_6765  # "bridge"
# A second landing waits this long for the first (or the day upkeep) to finish.
LOCK_WAIT_S = 120.0
# Workflows whose namespace a landing keeps in memory between batches (about 100 bytes each).
MAX_REMEMBERED_WORKFLOWS = 200_000
COPY_COLUMNS = (
    "event_id, event_timestamp, event_type, correlation_id, namespace, state,"
    ' content_type, file_size, latency_ms, topic, partition, "offset", envelope'
)


# COPY's text format: its NULL, and the characters a value must escape.
NULL = "\\N"
_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


class LandingBusy(RuntimeError):
    """Another landing holds the lock; this one would only race it."""


class BrokerStalled(RuntimeError):
    """The broker stopped delivering before the range it reported was read."""


@dataclass(frozen=True)
class LandingConfig:
    topic: str
    batch_size: int
    max_events: int
    retention_days: int
    signing_key: str | None = None
    poll_timeout_s: float = 10.0


@dataclass
class LandingResult:
    read: int = 0
    landed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    hours: Counter[datetime] = field(default_factory=Counter)
    positions: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, other: LandingResult) -> None:
        """Count another landing's events and hours into this one (a run's passes)."""
        self.read += other.read
        self.landed += other.landed
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.hours.update(other.hours)

    @property
    def events_per_s(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class _Row:
    """An event with its COPY line made ahead, but for the namespace, which the commit
    may still have to look up: line = head + namespace + tail."""

    event: LandedEvent
    head: str
    tail: str


@dataclass
class _Memory:
    """What a landing learned from the database in earlier batches, so later ones need not
    ask again: the day partitions that exist, and the namespaces of workflows whose
    workflow_namespaces row holds just that (this landing wrote it, or read it)."""

    days: set[date]
    namespaces: dict[str, str] = field(default_factory=dict)

    def remember(self, namespaces: Iterable[tuple[str, str]]) -> None:
        # A workflow's events come close together in the topic: forgetting everything now and
        # then costs a few lookups, and bounds a long landing's memory.
        if len(self.namespaces) > MAX_REMEMBERED_WORKFLOWS:
            self.namespaces.clear()
        self.namespaces.update(namespaces)


@dataclass
class _Batch:
    rows: dict[str, _Row] = field(default_factory=dict)
    letters: list[dict[str, object]] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)
    read: int = 0
    in_batch_duplicates: int = 0


def land(
    engine: Engine,
    consumer: Consumer,
    producer: Producer,
    config: LandingConfig,
    *,
    on_batch: Callable[[LandingResult], None] | None = None,
) -> LandingResult:
    """Land what the topic holds now, at most `config.max_events` messages."""
    result = LandingResult()
    started = time.perf_counter()
    with engine.connect() as conn, _landing_lock(conn):
        relay_dead_letters(conn, producer, dlq_topic(config.topic))
        targets = _plan(conn, consumer, config, result)
        memory = _Memory(days=event_days.existing_days(conn))
        conn.commit()

        def commit(batch: _Batch) -> None:
            with conn.begin():
                _commit_batch(conn, batch, config, memory, result)
            result.batches += 1
            result.seconds = time.perf_counter() - started
            if on_batch is not None:
                on_batch(result)

        # PostgreSQL works on one batch while this thread reads and parses the next: on two
        # cores that nearly halves a landing's time. Batches still commit one by one, in order.
        with (
            _without_cycle_collection(),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-commit") as pool,
        ):
            pending: Future[None] | None = None
            for batch in _batches(consumer, config, targets):
                if pending is not None:
                    pending.result()
                pending = pool.submit(commit, batch)
            if pending is not None:
                pending.result()
        relay_dead_letters(conn, producer, dlq_topic(config.topic))
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Landing makes about ten objects per event and no reference cycles, so reference
    counting frees them all; the cycle collections their allocations would trigger scan every
    object of the process instead (all of Dagster's, in a run): a third of landing's Python
    time. Collection resumes, and catches up, when the landing ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _landing_lock(conn: Connection, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    # Session-level, so it lasts across the batches and dies with the connection on a crash.
    deadline = time.monotonic() + wait_s
    while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LANDING_LOCK}).scalar():
        conn.rollback()
        if time.monotonic() > deadline:
            raise LandingBusy(
                f"another landing (a land_workflow_events run, or the day upkeep) held the"
                f" landing lock for {wait_s:.0f} s; this one stops so the two do not race,"
                " and the landing sensor starts another"
            )
        time.sleep(0.5)
    try:
        yield
    finally:
        conn.rollback()
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LANDING_LOCK})
        conn.commit()


def _plan(
    conn: Connection, consumer: Consumer, config: LandingConfig, result: LandingResult
) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets [start, end) this landing takes."""
    stored = dict(conn.execute(query("landing_positions"), {"topic": config.topic}).all())
    marks = _watermarks(consumer, config)
    starts = {}
    for partition, (low, high) in marks.items():
        position = stored.get(partition, low)
        if position > high:
            result.warnings.append(
                f"{config.topic}[{partition}]: landed up to {position} but the topic ends at"
                f" {high}; it was recreated, so landing starts again at {low}"
            )
            position = low
        elif position < low:
            result.warnings.append(
                f"{config.topic}[{partition}]: {low - position} events (offsets {position}-"
                f"{low - 1}) were deleted by the topic's retention before they landed; raise"
                " its retention.ms if this repeats"
            )
            position = low
        starts[partition] = position
    takes = share_fairly({p: marks[p][1] - s for p, s in starts.items()}, config.max_events)
    result.positions = dict(starts)
    return {p: (starts[p], starts[p] + n) for p, n in takes.items() if n}


def _watermarks(consumer: Consumer, config: LandingConfig) -> dict[int, tuple[int, int]]:
    try:
        topic = consumer.list_topics(config.topic, timeout=config.poll_timeout_s).topics.get(
            config.topic
        )
        if topic is None or topic.error is not None or not topic.partitions:
            raise BrokerStalled(
                f"topic {config.topic!r} does not exist; create it or set KAFKA_WORKFLOW_TOPIC"
            )
        return {
            p: consumer.get_watermark_offsets(
                TopicPartition(config.topic, p), timeout=config.poll_timeout_s
            )
            for p in sorted(topic.partitions)
        }
    except KafkaException as exc:
        raise BrokerStalled(
            f"the broker did not report {config.topic}'s offsets: {exc}; check"
            " KAFKA_BOOTSTRAP_SERVERS"
        ) from exc


def _batches(
    consumer: Consumer, config: LandingConfig, targets: dict[int, tuple[int, int]]
) -> Iterator[_Batch]:
    """Consecutive batches of at most `batch_size` messages up to the targets."""
    if not targets:
        return
    consumer.assign([TopicPartition(config.topic, p, start) for p, (start, _) in targets.items()])
    ends = {p: end for p, (_, end) in targets.items()}
    admission = _admission(config)
    batch = _Batch()
    try:
        while ends:
            messages = consumer.consume(min(config.batch_size - batch.read, 10_000), 1.0)
            if not messages:
                messages = consumer.consume(1, config.poll_timeout_s)
                if not messages:
                    raise BrokerStalled(
                        f"no messages from {config.topic} within {config.poll_timeout_s:.0f} s"
                        f" although offsets up to {ends} were reported; check the broker, then"
                        " run the landing again (it resumes where it committed)"
                    )
            for message in messages:
                _take(message, batch, ends, admission, config)
            if batch.read >= config.batch_size or (not ends and (batch.read or batch.positions)):
                yield batch
                batch = _Batch()
    finally:
        consumer.unassign()


def _take(
    message: Message,
    batch: _Batch,
    ends: dict[int, int],
    admission: Admission,
    config: LandingConfig,
) -> None:
    partition = message.partition()
    error = message.error()
    if error is not None:
        if error.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(error)
        # The end of the log: offsets up to the target that never came are transaction
        # markers or compacted away; there is nothing left to wait for.
        if partition in ends:
            batch.positions[partition] = ends.pop(partition)
        return
    offset = message.offset()
    if partition not in ends or offset >= ends[partition]:
        return
    batch.read += 1
    batch.positions[partition] = offset + 1
    if offset + 1 >= ends[partition]:
        del ends[partition]
    signature = None if config.signing_key is None else _signature(message)
    parsed = parse_event(message.value(), signature, admission)
    if isinstance(parsed, Rejected):
        batch.letters.append(_letter(message, parsed, config.topic))
    elif parsed.event_id in batch.rows:
        batch.in_batch_duplicates += 1
    else:
        batch.rows[parsed.event_id] = _row(parsed, config.topic, partition, offset)


def _admission(config: LandingConfig) -> Admission:
    now = datetime.now(UTC)
    horizon = event_days.day_start(now.date() - timedelta(days=config.retention_days))
    return Admission(now=now, horizon=horizon, signing_key=config.signing_key)


def _signature(message: Message) -> bytes | None:
    for name, value in message.headers() or ():
        if name == "x-signature":
            return value
    return None


def _letter(message: Message, rejected: Rejected, topic: str) -> dict[str, object]:
    raw = message.value()
    reason = rejected.reason
    digest = blake3.blake3(raw or b"").hexdigest()[:16]
    # The digest keeps a new bad message at a reused offset (recreated topic) from being
    # taken for one already dead-lettered.
    source = f"{topic}/{message.partition()}/{message.offset()}/{digest}"
    # Bounded like the request side's: a long original keeps a prefix, its size and BLAKE3.
    value = dead_letter_value(
        raw, reason, topic=topic, partition=message.partition(), offset=message.offset()
    )
    return {"source": source, "code": str(rejected.code), "reason": reason, "value": value}


def _commit_batch(
    conn: Connection,
    batch: _Batch,
    config: LandingConfig,
    memory: _Memory,
    result: LandingResult,
) -> None:
    rows = list(batch.rows.values())
    touched: Counter[datetime] = Counter()
    if rows:
        # Counted on the hour's text, cheaper than a datetime per event.
        hours = Counter([r.event.utc_hour for r in rows])
        event_days.ensure_days(conn, {date.fromisoformat(h[:10]) for h in hours}, memory.days)
        landed = _new_rows(conn, rows, min(hours), max(hours))
        if len(landed) < len(rows):
            hours = Counter([r.event.utc_hour for r in landed])
        rows = landed
    if rows:
        touched.update({_hour(h): n for h, n in hours.items()})
        namespaces, late_hours = _attribute(conn, rows, memory)
        _copy(conn, rows, namespaces)
        touched.update(dict.fromkeys(late_hours, 0))
    if touched:
        ordered = sorted(touched)
        conn.execute(
            query("landing_touch_hours"),
            {"hours": ordered, "counts": [touched[h] for h in ordered]},
        )
    if batch.letters:
        _store_letters(conn, batch.letters, dlq_topic(config.topic))
    partitions = sorted(batch.positions)
    conn.execute(
        query("landing_save_positions"),
        {
            "topic": config.topic,
            "partitions": partitions,
            "offsets": [batch.positions[p] for p in partitions],
        },
    )
    result.read += batch.read
    result.landed += len(rows)
    result.duplicates += batch.in_batch_duplicates + len(batch.rows) - len(rows)
    result.dead_lettered += len(batch.letters)
    result.rejected.update(str(letter["code"]) for letter in batch.letters)
    result.hours.update(touched)
    result.positions.update(batch.positions)


def _hour(utc_hour: str) -> datetime:
    return datetime.fromisoformat(utc_hour).replace(tzinfo=UTC)


def _new_rows(conn: Connection, rows: list[_Row], first_hour: str, last_hour: str) -> list[_Row]:
    existing = set(
        conn.execute(
            query("landing_existing_ids"),
            {
                "ids": _ids(r.event.event_id for r in rows),
                "earliest": _hour(first_hour),
                "latest": _hour(last_hour) + timedelta(hours=1),
            },
        ).scalars()
    )
    if not existing:
        return rows
    landed = {str(e) for e in existing}
    return [r for r in rows if r.event.event_id not in landed]


def _attribute(
    conn: Connection, rows: list[_Row], memory: _Memory
) -> tuple[dict[str, str], set[datetime]]:
    """The namespace of each workflow of the rows, where known, and the hours of earlier
    events that a namespace first named here attributed."""
    remembered = memory.namespaces
    named: dict[str, tuple[str, datetime]] = {}
    for r in rows:
        e = r.event
        w = e.correlation_id
        if e.namespace is not None and w not in named and w not in remembered:
            named[w] = (e.namespace, e.event_timestamp)
    new = _register_namespaces(conn, named)
    memory.remember((w, named[w][0]) for w in new)
    namespaces = {w: ns for w, (ns, _) in named.items()}
    unnamed = {r.event.correlation_id for r in rows} - namespaces.keys()
    namespaces.update((w, remembered[w]) for w in unnamed & remembered.keys())
    unnamed -= remembered.keys()
    if unnamed:
        found = conn.execute(query("landing_known_namespaces"), {"workflow_ids": _ids(unnamed)})
        looked_up = [(str(w), ns) for w, ns in found.all()]
        namespaces.update(looked_up)
        memory.remember(looked_up)
    orphans = [
        r.event
        for r in rows
        if r.event.namespace is None and r.event.correlation_id not in namespaces
    ]
    if orphans:
        conn.execute(
            query("landing_remember_unattributed"),
            {
                "event_ids": _ids(e.event_id for e in orphans),
                "timestamps": [e.event_timestamp for e in orphans],
                "workflow_ids": _ids(e.correlation_id for e in orphans),
            },
        )
    late: set[datetime] = set()
    if new:
        found = conn.execute(query("landing_attribute_late"), {"workflow_ids": _ids(new)})
        late = set(found.scalars())
    return namespaces, late


def _register_namespaces(conn: Connection, named: dict[str, tuple[str, datetime]]) -> list[str]:
    """Record the first namespace of each workflow; returns the workflows new to the table."""
    if not named:
        return []
    ids = list(named)
    params = {
        "workflow_ids": _ids(ids),
        "namespaces": [named[w][0] for w in ids],
        "seen": [named[w][1] for w in ids],
    }
    return [str(w) for w in conn.execute(query("landing_register_namespaces"), params).scalars()]


def _ids(ids: Iterable[str]) -> str:
    """UUIDs for `string_to_array(:ids, ',')`: half the cost of binding a list of 10,000."""
    return ",".join(ids)


def _row(e: LandedEvent, topic: str, partition: int, offset: int) -> _Row:
    """COPY's text format: ids, times, names and numbers need no escaping; free text may."""
    head = f"{e.event_id}\t{e.timestamp_text}\t{e.event_type}\t{e.correlation_id}\t"
    tail = "\t".join(
        (
            "",
            e.state,
            _escaped(e.content_type),
            NULL if e.file_size is None else str(e.file_size),
            NULL if e.latency_ms is None else repr(e.latency_ms),
            _escaped(topic),
            str(partition),
            str(offset),
            _escaped(e.envelope_json),
        )
    )
    return _Row(e, head, tail + "\n")


def _escaped(value: str | None) -> str:
    # Text format, not CSV: compact JSON holds none of these, so the common case is four
    # scans instead of CSV's doubling of every quote (a tenth of a landing's Python time).
    if value is None:
        return NULL
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
        return value.translate(_TEXT_ESCAPES)
    return value


def _copy(conn: Connection, rows: list[_Row], namespaces: dict[str, str]) -> None:
    # One join over the three parts of every line copies each byte once.
    parts: list[str] = []
    for r in rows:
        parts += (r.head, r.event.namespace or namespaces.get(r.event.correlation_id, NULL), r.tail)
    cursor = conn.connection.dbapi_connection.cursor()
    copy = f"COPY workflow_events ({COPY_COLUMNS}) FROM STDIN"
    cursor.copy_expert(copy, io.StringIO("".join(parts)), size=1 << 20)


def _store_letters(conn: Connection, letters: list[dict[str, object]], dlq: str) -> None:
    conn.execute(
        query("landing_dead_letters"),
        {
            "sources": [letter["source"] for letter in letters],
            "codes": [letter["code"] for letter in letters],
            "reasons": [letter["reason"] for letter in letters],
            "dlq_topics": [dlq] * len(letters),
            "dlq_values": [letter["value"] for letter in letters],
        },
    )


def relay_dead_letters(conn: Connection, producer: Producer, dlq: str) -> int:
    """Produce every stored, unsent dead letter of `dlq`, then mark them sent."""
    sent = 0
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error.str())

    while True:
        unsent = conn.execute(query("landing_relay_unsent"), {"dlq_topic": dlq, "limit": 5000})
        rows = unsent.all()
        conn.commit()
        if not rows:
            return sent
        for _id, source, value in rows:
            producer.produce(dlq, bytes(value), source.encode(), on_delivery=on_delivery)
        remaining = producer.flush(30)
        if remaining or errors:
            raise BrokerStalled(
                f"the broker did not take {len(rows)} dead letters for {dlq}"
                f" ({'; '.join(errors[:3]) or f'{remaining} still queued'}); they stay stored"
                " and go out with the next landing"
            )
        conn.execute(query("landing_relay_mark_sent"), {"ids": [row[0] for row in rows]})
        conn.commit()
        sent += len(rows)
