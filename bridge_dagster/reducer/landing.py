"""Landing: events from the workflow topic into workflow_events, exactly once in effect.

One landing at a time holds a session advisory lock, reads where the database says each
partition resumes (landing_positions), and lands the topic in batches. A batch is one
transaction: its new rows (one COPY), the namespaces they name, the hours they touch, the
dead letters of its malformed messages and the positions after it. A crash at any instant
therefore leaves either the whole batch or none of it, and the next landing resumes where the
last commit left off. Rows are also idempotent on event_id, so re-sent events land once.

Three threads share the work: the caller's thread reads and parses batch N+2, a look-up
thread on a second connection finds what of batch N+1 is already landed and which namespaces
its workflows have and makes its COPY data, and the commit thread writes batch N. The look-ups
only read, and they see every batch up to N-1 committed; batch N, not committed yet, is taken
from memory, so they decide exactly what they would once batch N had committed. A batch
commits only after the one before it did, so a failed batch stops the landing before any
later one commits. About three batches (AGGREGATION_BATCH_SIZE messages each) are held at
once: the one read, the one looked up and the one committing.

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
# An event id already landed this long before or after a batch's hours is a duplicate: a
# re-publication carries the same (byte-identical) timestamp, and the window also catches a
# producer that stamped one with a later time.
EVENT_ID_WINDOW = timedelta(days=1)
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


# Not frozen: a frozen dataclass sets each field through object.__setattr__, a cost per event.
@dataclass(slots=True)
class _Row:
    """An event with its COPY line made ahead, but for the namespace, which the look-ups
    may still have to find: line = head + namespace + tail."""

    event: LandedEvent
    head: str
    tail: str


@dataclass
class _Memory:
    """The namespaces of workflows whose workflow_namespaces row holds just that (this landing
    wrote it, or read it), so later batches need not ask again. Only the look-ups use it."""

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


@dataclass
class _Prepared:
    """A batch as its look-ups left it for its commit."""

    batch: _Batch
    # The rows no earlier batch landed, by event id, and the UTC hours they fall in.
    rows: dict[str, _Row] = field(default_factory=dict)
    hours: Counter[str] = field(default_factory=Counter)
    # The namespace of each workflow of the rows, where known.
    namespaces: dict[str, str] = field(default_factory=dict)
    # Workflows whose first namespace this batch records: their namespace and its event's time.
    registered: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    # Events whose workflow has no namespace yet: attributed when one of its events names one.
    orphans: list[LandedEvent] = field(default_factory=list)
    # The registered workflows with such events from earlier batches, to be attributed now.
    waiting: list[str] = field(default_factory=list)
    # The rows in COPY's text format, made here so the commit thread, which sets the pace,
    # only sends them.
    copy_data: bytes = b""


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
    with engine.connect() as conn, _landing_lock(conn), engine.connect() as look:
        relay_dead_letters(conn, producer, dlq_topic(config.topic))
        targets = _plan(conn, consumer, config, result)
        days = event_days.existing_days(conn)
        conn.commit()
        memory = _Memory()

        def prepare(batch: _Batch, previous: Future[_Prepared] | None) -> _Prepared:
            # The look-ups run one batch at a time, so the previous batch's are done.
            before = None if previous is None else previous.result()
            with look.begin():
                return _prepare(look, batch, memory, before)

        def commit(prepared: Future[_Prepared], previous: Future[None] | None) -> None:
            if previous is not None:
                # Raises what failed the previous batch: nothing commits after a failure, so
                # no position moves past events that did not land.
                previous.result()
            ready = prepared.result()
            with conn.begin():
                _commit_batch(conn, ready, config, days, result)
            result.batches += 1
            result.seconds = time.perf_counter() - started
            if on_batch is not None:
                on_batch(result)

        with (
            _without_cycle_collection(),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-lookup") as lookups,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-commit") as writer,
        ):
            prepared: Future[_Prepared] | None = None
            commits: list[Future[None]] = []
            for batch in _batches(consumer, config, targets):
                if len(commits) >= 2:
                    # This batch's look-ups take the previous batch from memory and every
                    # earlier one from the database: the one before the previous must have
                    # committed.
                    commits[-2].result()
                prepared = lookups.submit(prepare, batch, prepared)
                commits = [
                    *commits[-1:],
                    writer.submit(commit, prepared, commits[-1] if commits else None),
                ]
            for pending in commits:
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


def _prepare(
    conn: Connection, batch: _Batch, memory: _Memory, previous: _Prepared | None
) -> _Prepared:
    """Read-only: which rows of the batch are new, and the namespaces of their workflows.

    `conn` sees every batch before `previous` committed; `previous` may not be yet, so what
    it lands and registers is taken from it, as the database would show it once committed.
    """
    prepared = _Prepared(batch)
    if not batch.rows:
        return prepared
    # Counted on the hour's text, cheaper than a datetime per event.
    hours = Counter([r.event.utc_hour for r in batch.rows.values()])
    rows = _new_rows(conn, batch.rows, min(hours), max(hours), previous)
    if len(rows) < len(batch.rows):
        hours = Counter([r.event.utc_hour for r in rows.values()])
    if rows:
        prepared.rows = rows
        prepared.hours = hours
        _attribute(conn, prepared, memory, previous)
        prepared.copy_data = _copy_data(rows.values(), prepared.namespaces)
    return prepared


def _commit_batch(
    conn: Connection,
    prepared: _Prepared,
    config: LandingConfig,
    days: set[date],
    result: LandingResult,
) -> None:
    batch = prepared.batch
    landed = len(prepared.rows)
    touched: Counter[datetime] = Counter()
    if landed:
        event_days.ensure_days(conn, {date.fromisoformat(h[:10]) for h in prepared.hours}, days)
        touched.update({_hour(h): n for h, n in prepared.hours.items()})
        touched.update(dict.fromkeys(_record_namespaces(conn, prepared), 0))
        _copy(conn, prepared.copy_data)
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
    result.landed += landed
    result.duplicates += batch.in_batch_duplicates + len(batch.rows) - landed
    result.dead_lettered += len(batch.letters)
    result.rejected.update(str(letter["code"]) for letter in batch.letters)
    result.hours.update(touched)
    result.positions.update(batch.positions)


def _hour(utc_hour: str) -> datetime:
    return datetime.fromisoformat(utc_hour).replace(tzinfo=UTC)


def _new_rows(
    conn: Connection,
    rows: dict[str, _Row],
    first_hour: str,
    last_hour: str,
    previous: _Prepared | None,
) -> dict[str, _Row]:
    low = _hour(first_hour) - EVENT_ID_WINDOW
    high = _hour(last_hour) + timedelta(hours=1) + EVENT_ID_WINDOW
    params = {"ids": _ids(rows), "low": low, "high": high}
    landed = {str(e) for e in conn.execute(query("landing_existing_ids"), params).scalars()}
    if previous is not None:
        # The previous batch's rows, not committed yet, as the query will find them.
        before = previous.rows
        landed.update(
            i for i in rows.keys() & before.keys() if low <= before[i].event.event_timestamp < high
        )
    if not landed:
        return rows
    return {i: r for i, r in rows.items() if i not in landed}


def _attribute(
    conn: Connection, prepared: _Prepared, memory: _Memory, previous: _Prepared | None
) -> None:
    """The namespace of each workflow of the rows, where known; the workflows whose first
    namespace the batch records; and the events left without one."""
    rows = prepared.rows.values()
    # Registered by the previous batch, whose commit the database may not show yet.
    before = {} if previous is None else previous.registered
    remembered = memory.namespaces
    workflows: set[str] = set()
    named: dict[str, tuple[str, datetime]] = {}
    for r in rows:
        e = r.event
        w = e.correlation_id
        workflows.add(w)
        if e.namespace is not None and w not in named and w not in remembered:
            named[w] = (e.namespace, e.event_timestamp)
    namespaces = {w: ns for w, (ns, _) in named.items()}
    namespaces.update((w, remembered[w]) for w in workflows - named.keys() if w in remembered)
    unknown = workflows - namespaces.keys()
    # One look-up for both: which named workflows are registered, and what the rest are.
    known = _known_namespaces(conn, [w for w in (*named, *unknown) if w not in before])
    new = [w for w in named if w not in before and w not in known]
    memory.remember((w, named[w][0]) for w in new)
    if unknown:
        looked_up = {w: before[w][0] for w in unknown & before.keys()}
        looked_up.update((w, known[w]) for w in unknown & known.keys())
        namespaces.update(looked_up)
        memory.remember(looked_up.items())
    prepared.namespaces = namespaces
    prepared.registered = {w: named[w] for w in new}
    if not workflows <= namespaces.keys():
        prepared.orphans = [
            r.event
            for r in rows
            if r.event.namespace is None and r.event.correlation_id not in namespaces
        ]
    prepared.waiting = _waiting(conn, new, previous)


def _waiting(conn: Connection, workflows: list[str], previous: _Prepared | None) -> list[str]:
    """Those of `workflows` with events waiting for a namespace: in unattributed_events, or
    left so by the previous batch, which may not have committed."""
    if not workflows:
        return []
    found = conn.execute(query("landing_waiting"), {"workflow_ids": _ids(workflows)}).scalars()
    waiting = {str(w) for w in found}
    if previous is not None:
        waiting.update(e.correlation_id for e in previous.orphans)
    return [w for w in workflows if w in waiting]


def _known_namespaces(conn: Connection, workflows: list[str]) -> dict[str, str]:
    """The namespaces workflow_namespaces holds for `workflows`."""
    if not workflows:
        return {}
    found = conn.execute(query("landing_known_namespaces"), {"workflow_ids": _ids(workflows)})
    return {str(w): ns for w, ns in found.all()}


def _record_namespaces(conn: Connection, prepared: _Prepared) -> set[datetime]:
    """Write what the look-ups found: the workflows' first namespaces and the events left
    without one; the earlier events that a namespace first named here attributes take it.
    Returns the hours of those events, to be aggregated again."""
    registered = prepared.registered
    if registered:
        ids = list(registered)
        params = {
            "workflow_ids": _ids(ids),
            "namespaces": _array(registered[w][0] for w in ids),
            "seen": _array(registered[w][1].isoformat() for w in ids),
        }
        # It returns the workflows it inserted: all of them, unless one was registered already.
        inserted = conn.execute(query("landing_register_namespaces"), params).rowcount
        if inserted != len(registered):
            # Only a second writer of workflow_namespaces could cause this, and the landing lock
            # excludes one; the batch rolls back rather than attribute events wrongly.
            raise RuntimeError(
                "workflow_namespaces changed while this landing held the landing lock; the"
                " batch was rolled back, run the landing again"
            )
    orphans = prepared.orphans
    if orphans:
        conn.execute(
            query("landing_remember_unattributed"),
            {
                "event_ids": _ids(e.event_id for e in orphans),
                "timestamps": [e.event_timestamp for e in orphans],
                "workflow_ids": _ids(e.correlation_id for e in orphans),
            },
        )
    if not prepared.waiting:
        return set()
    found = conn.execute(query("landing_attribute_late"), {"workflow_ids": _ids(prepared.waiting)})
    return set(found.scalars())


def _ids(ids: Iterable[str]) -> str:
    """UUIDs for `string_to_array(:ids, ',')`: half the cost of binding a list of 10,000."""
    return ",".join(ids)


def _array(values: Iterable[str]) -> str:
    """An array literal for `CAST(:values AS text[])` (or timestamptz[]), of values that hold
    no quote or backslash (namespaces, ISO times): a sixth cheaper than binding a list."""
    return "{" + ",".join(f'"{v}"' for v in values) + "}"


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


def _copy_data(rows: Iterable[_Row], namespaces: dict[str, str]) -> bytes:
    # One join over the three parts of every line copies each byte once.
    parts: list[str] = []
    for r in rows:
        parts += (r.head, r.event.namespace or namespaces.get(r.event.correlation_id, NULL), r.tail)
    return "".join(parts).encode()


def _copy(conn: Connection, data: bytes) -> None:
    cursor = conn.connection.dbapi_connection.cursor()
    copy = f"COPY workflow_events ({COPY_COLUMNS}) FROM STDIN"
    # The batch in one write, as bytes: fed text, psycopg2 encodes and sends it a megabyte at
    # a time, taking the GIL back from the parse thread for each; this halves its Python time.
    cursor.copy_expert(copy, io.BytesIO(data), size=len(data))


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
