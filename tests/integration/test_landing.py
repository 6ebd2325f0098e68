"""Landing against the real broker and PostgreSQL: exactly once, through crashes and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events import synthetic
from bridge_dagster.events.envelope import EventEnvelope, encode, make_event
from bridge_dagster.events.topics import MAX_DEAD_LETTER_ORIGINAL, parse_dead_letter
from bridge_dagster.events.types import EventType
from bridge_dagster.reducer import event_days, landing
from bridge_dagster.reducer.landing import LANDING_LOCK
from tests.conftest import Topics
from tests.integration.reducer_harness import (
    BASE_HOUR,
    NOW,
    land_all,
    produce_events,
    produce_raw,
)
from tests.integration.workflow_harness import count, read_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(pg_url: str) -> Engine:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def flows(n: int, **kw: object) -> list[synthetic.Workflow]:
    return synthetic.workflows(
        n, start=BASE_HOUR, spread=timedelta(hours=2), namespaces=["a.ns", "b.ns"], **kw
    )


def events_of(n: int) -> list:
    return list(synthetic.stream(flows(n), environment="test"))


def test_every_event_lands_once_and_the_positions_reach_the_end(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    events = events_of(300)
    produce_events(kafka_bootstrap, topics.workflow, events)
    result = land_all(engine, kafka_bootstrap, topics.workflow, batch_size=500)
    assert result.landed == len(events) and result.batches > 1
    assert count(engine, "SELECT count(*) FROM workflow_events") == len(events)
    positions = count(engine, "SELECT sum(next_offset) FROM landing_positions")
    assert positions == len(events)


def test_landing_records_the_hours_it_touched(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    events = events_of(200)
    produce_events(kafka_bootstrap, topics.workflow, events)
    result = land_all(engine, kafka_bootstrap, topics.workflow)
    hours = {e.event_timestamp.replace(minute=0, second=0, microsecond=0) for e in events}
    assert set(result.hours) == hours
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT hour, events FROM reducer_landed_hours")).all())
    assert stored == {
        h: sum(
            1
            for e in events
            if e.event_timestamp >= h and e.event_timestamp < h + timedelta(hours=1)
        )
        for h in hours
    }


def test_re_sent_events_and_a_second_landing_add_nothing(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    events = events_of(200)
    produce_events(kafka_bootstrap, topics.workflow, events)
    land_all(engine, kafka_bootstrap, topics.workflow)
    produce_events(kafka_bootstrap, topics.workflow, events)
    again = land_all(engine, kafka_bootstrap, topics.workflow)
    assert (again.read, again.landed, again.duplicates) == (len(events), 0, len(events))
    assert count(engine, "SELECT count(*) FROM workflow_events") == len(events)


def test_a_duplicate_that_arrives_days_later_is_landed_once(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    # Byte-identical re-publication of an event four days old, after other days have landed.
    old = make_event(
        EventType.WORKFLOW_STATE_TRANSITION,
        {"to_state": "pending", "namespace": "a.ns"},
        correlation_id=synthetic.uuid.uuid4(),
        environment="test",
        timestamp=NOW - timedelta(days=4),
    )
    produce_events(kafka_bootstrap, topics.workflow, [old])
    land_all(engine, kafka_bootstrap, topics.workflow)
    produce_events(kafka_bootstrap, topics.workflow, events_of(50))
    land_all(engine, kafka_bootstrap, topics.workflow)
    produce_events(kafka_bootstrap, topics.workflow, [old])
    late = land_all(engine, kafka_bootstrap, topics.workflow)
    assert (late.landed, late.duplicates) == (0, 1)
    assert (
        count(engine, f"SELECT count(*) FROM workflow_events WHERE event_id = '{old.event_id}'")
        == 1
    )


def test_a_republication_stamped_later_the_same_day_is_landed_once(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    first = make_event(
        EventType.STAMP_WORKFLOW_STARTED,
        {"namespace": "a.ns"},
        correlation_id=synthetic.uuid.uuid4(),
        environment="test",
        timestamp=BASE_HOUR,
    )
    again = first.model_copy(update={"event_timestamp": BASE_HOUR + timedelta(minutes=7)})
    produce_events(kafka_bootstrap, topics.workflow, [first])
    land_all(engine, kafka_bootstrap, topics.workflow)
    produce_events(kafka_bootstrap, topics.workflow, [again])
    assert land_all(engine, kafka_bootstrap, topics.workflow).duplicates == 1
    assert count(engine, "SELECT count(*) FROM workflow_events") == 1


def test_events_land_in_day_partitions_created_on_demand(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    days_ago = [NOW - timedelta(days=d) for d in (0, 2, 9)]
    events = [
        make_event(
            EventType.STAMP_WORKFLOW_STARTED,
            {"namespace": "a.ns"},
            correlation_id=synthetic.uuid.uuid4(),
            environment="test",
            timestamp=when,
        )
        for when in days_ago
    ]
    produce_events(kafka_bootstrap, topics.workflow, events)
    land_all(engine, kafka_bootstrap, topics.workflow)
    with engine.connect() as conn:
        partitions = conn.execute(
            text(
                "SELECT c.relname, count(e.*) FROM pg_inherits i JOIN pg_class c ON"
                " c.oid = i.inhrelid LEFT JOIN workflow_events e ON e.tableoid = c.oid"
                " WHERE i.inhparent = 'workflow_events'::regclass GROUP BY c.relname"
            )
        ).all()
    assert {name: n for name, n in partitions} == {
        f"workflow_events_p{when:%Y%m%d}": 1 for when in days_ago
    }


def test_an_event_whose_namespace_arrives_in_a_later_landing_takes_it(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    [flow] = flows(1)
    events = synthetic.events(flow, environment="test")
    produce_events(kafka_bootstrap, topics.workflow, events[:1])
    land_all(engine, kafka_bootstrap, topics.workflow)
    produce_events(kafka_bootstrap, topics.workflow, events[1:])
    land_all(engine, kafka_bootstrap, topics.workflow)
    with engine.connect() as conn:
        namespaces = conn.execute(text("SELECT DISTINCT namespace FROM workflow_events")).scalars()
        assert list(namespaces) == [flow.namespace]
    assert count(engine, "SELECT count(*) FROM unattributed_events") == 0


BAD = [
    (b"\xff\xfe not utf-8", "not_utf8"),
    (b"{not json", "bad_json"),
    (b"[1, 2, 3]", "not_an_envelope"),
    (
        json.dumps({"envelope_version": "9.9", "event_type": "x"}).encode(),
        "unknown_envelope_version",
    ),
    (json.dumps({"envelope_version": "1.0", "event_type": "nope"}).encode(), "unknown_event_type"),
    (b"", "empty"),
]


def test_text_that_copy_must_escape_lands_as_sent(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    # A pretty-printed envelope (newlines, tabs) whose free text holds backslashes, tabs and
    # a CR: landing writes COPY's text format, where each of these must be escaped.
    event = make_event(
        EventType.STAMP_WORKFLOW_COMPLETED,
        {
            "namespace": "a.ns",
            "content_type": "text/x-odd\\name\tv=1",
            "file_size": 3,
            "latency_ms": 1.5,
            "note": "C:\\tmp\\new\r\n\\N",
        },
        correlation_id=synthetic.uuid.uuid4(),
        environment="test",
        timestamp=BASE_HOUR,
    )
    raw = json.dumps(json.loads(event.model_dump_json()), indent="\t").encode()
    assert b"\n\t" in raw
    produce_raw(kafka_bootstrap, topics.workflow, [raw])
    assert land_all(engine, kafka_bootstrap, topics.workflow).landed == 1
    with engine.connect() as conn:
        stored, content_type, namespace = conn.execute(
            text("SELECT envelope::text, content_type, namespace FROM workflow_events")
        ).one()
    assert json.loads(stored) == json.loads(raw)
    assert content_type == "text/x-odd\\name\tv=1"
    assert namespace == "a.ns"


def test_an_event_postgresql_would_refuse_as_written_does_not_stop_landing(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    event = json.loads(events_of(1)[1].model_dump_json())
    # Python reads both as written; PostgreSQL refuses both, so written as they came they
    # would fail every retry of their batch.
    far_offset = {
        **event,
        "event_timestamp": BASE_HOUR.astimezone(timezone(timedelta(hours=16))).isoformat(),
    }
    spaced_id = {**event, "event_id": event["event_id"][:-2] + "  "}
    produce_raw(kafka_bootstrap, topics.workflow, [json.dumps(far_offset).encode()])
    produce_raw(kafka_bootstrap, topics.workflow, [json.dumps(spaced_id).encode()])
    result = land_all(engine, kafka_bootstrap, topics.workflow)
    assert (result.landed, result.dead_lettered) == (1, 1)
    assert count(engine, "SELECT count(*) FROM workflow_events") == 1


def test_malformed_events_are_dead_lettered_with_reasons_and_landing_goes_on(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    good = events_of(20)
    huge = json.dumps({"envelope_version": "1.0", "pad": "x" * 400_000}).encode()
    produce_events(kafka_bootstrap, topics.workflow, good[:100])
    produce_raw(kafka_bootstrap, topics.workflow, [raw for raw, _ in BAD] + [huge])
    produce_events(kafka_bootstrap, topics.workflow, good[100:])
    result = land_all(engine, kafka_bootstrap, topics.workflow, batch_size=50)

    assert result.landed == len(good)
    assert result.dead_lettered == len(BAD) + 1
    letters = [
        parse_dead_letter(v) for _, _, _, v in read_all(kafka_bootstrap, f"{topics.workflow}.dlq")
    ]
    reasons = sorted(letter["reason"].split(":")[0] for letter in letters)
    assert reasons == sorted([code for _, code in BAD] + ["unknown_event_type"])
    big = next(
        letter
        for letter in letters
        if letter["original"] and len(letter["original"]) == MAX_DEAD_LETTER_ORIGINAL
    )
    assert f"of {len(huge)} bytes" in big["reason"]
    assert (
        count(engine, "SELECT count(*) FROM dead_letters WHERE sent_at IS NOT NULL") == len(BAD) + 1
    )


def test_dead_letters_are_sent_once_even_when_their_landing_is_repeated(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    produce_raw(kafka_bootstrap, topics.workflow, [raw for raw, _ in BAD])
    land_all(engine, kafka_bootstrap, topics.workflow)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM landing_positions"))
    land_all(engine, kafka_bootstrap, topics.workflow)
    assert len(read_all(kafka_bootstrap, f"{topics.workflow}.dlq")) == len(BAD)


def test_a_dead_letter_stored_but_not_sent_before_a_crash_goes_out_with_the_next_landing(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    produce_raw(kafka_bootstrap, topics.workflow, [b"{not json"])
    land_all(engine, kafka_bootstrap, topics.workflow)
    # As a crash between the batch's commit and its relay leaves it.
    with engine.begin() as conn:
        conn.execute(text("UPDATE dead_letters SET sent_at = NULL"))
    land_all(engine, kafka_bootstrap, topics.workflow)
    letters = read_all(kafka_bootstrap, f"{topics.workflow}.dlq")
    assert len(letters) == 2 and letters[0][3] == letters[1][3], "re-sent byte-identical"


def test_signed_landing_dead_letters_altered_and_wrongly_signed_events(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    events = events_of(3)
    produce_events(kafka_bootstrap, topics.workflow, events[:10], signing_key="right")
    produce_events(kafka_bootstrap, topics.workflow, events[10:12], signing_key="wrong")
    produce_events(kafka_bootstrap, topics.workflow, events[12:], signing_key=None)
    result = land_all(engine, kafka_bootstrap, topics.workflow, signing_key="right")
    assert result.landed == 10
    assert result.rejected == {"bad_signature": len(events) - 10}


def _landing_env(pg: PostgresAddress, bootstrap: str, topic: str, home: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "KAFKA_"))},
        **pg.env(),
        "POSTGRES_SSL_MODE": "disable",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_WORKFLOW_TOPIC": topic,
        "AGGREGATION_BATCH_SIZE": "1000",
        "MAX_AGGREGATION_QUEUE_SIZE": "10000000",
        "DAGSTER_HOME": str(home),
    }


def test_a_landing_killed_mid_batch_and_restarted_lands_every_event_exactly_once(
    engine: Engine,
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
) -> None:
    events = events_of(12_000)
    produce_events(kafka_bootstrap, topics.workflow, events)
    env = _landing_env(pg_address, kafka_bootstrap, topics.workflow, tmp_path)
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "job",
        "execute",
        "-m",
        "bridge_dagster.definitions",
        "-j",
        "land_workflow_events",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    landed = 0
    while time.monotonic() < deadline and process.poll() is None:
        landed = count(engine, "SELECT COALESCE(sum(next_offset), 0) FROM landing_positions")
        if landed > 5_000:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the landing ended before it could be killed mid-way"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < landed < len(events)

    restarted = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert restarted.returncode == 0, restarted.stderr[-3000:]

    assert count(engine, "SELECT count(*) FROM workflow_events") == len(events)
    assert count(engine, "SELECT count(DISTINCT event_id) FROM workflow_events") == len(events)
    assert count(engine, "SELECT sum(events) FROM reducer_landed_hours") == len(events)


def test_a_second_landing_waits_for_the_first_then_lands_what_is_left(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    events = events_of(50)
    produce_events(kafka_bootstrap, topics.workflow, events)
    holder = engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LANDING_LOCK})
    # invalidate() closes the server session, which is what frees a session lock.
    threading.Timer(1.5, holder.invalidate).start()
    started = time.monotonic()
    result = land_all(engine, kafka_bootstrap, topics.workflow)
    assert time.monotonic() - started >= 1.5, "landed while another held the lock"
    assert result.landed == len(events)


# The next tests hold the landing's first batch before its commit, from a second session, so
# the second batch's look-ups run while the first has not committed: the case the look-up
# thread must get right from memory. All events go to one partition, in order, so the
# batches are exactly the slices named.


def produce_in_order(bootstrap: str, topic: str, events: list[EventEnvelope]) -> None:
    produce_raw(bootstrap, topic, [encode(e) for e in events])


@contextmanager
def writes_held(engine: Engine, table: str, seconds: float) -> Iterator[None]:
    """`table` takes no writes for `seconds`: a batch's commit waits at its first write there."""
    holder = engine.connect()
    holder.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
    # invalidate() closes the session, which ends its transaction and frees the lock.
    threading.Timer(seconds, holder.invalidate).start()
    started = time.monotonic()
    yield
    assert time.monotonic() - started >= seconds, "the landing did not wait for the lock"


def test_a_duplicate_in_the_next_batch_is_dropped_while_the_first_has_not_committed(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    [flow] = flows(1)
    events = synthetic.events(flow, environment="test")
    stamped_later = events[3].model_copy(
        update={"event_timestamp": events[3].event_timestamp + timedelta(minutes=7)}
    )
    # Batch 1: events 0-3. Batch 2: a byte-identical copy of event 1, event 3 stamped again
    # later, and events 4-5.
    produce_in_order(
        kafka_bootstrap, topics.workflow, [*events[:4], events[1], stamped_later, *events[4:6]]
    )
    with writes_held(engine, "landing_positions", 1.5):
        result = land_all(engine, kafka_bootstrap, topics.workflow, batch_size=4)
    assert (result.landed, result.duplicates) == (6, 2)
    assert count(engine, "SELECT count(*) FROM workflow_events") == 6
    assert count(engine, "SELECT count(DISTINCT event_id) FROM workflow_events") == 6


def test_an_event_whose_namespace_comes_in_the_next_batch_takes_it_before_its_own_committed(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    [flow] = flows(1)
    events = synthetic.events(flow, environment="test")
    # Batch 1: the workflow's first event, which names no namespace; batch 2: the next,
    # which does.
    produce_in_order(kafka_bootstrap, topics.workflow, events[:2])
    with writes_held(engine, "landing_positions", 1.5):
        land_all(engine, kafka_bootstrap, topics.workflow, batch_size=1)
    with engine.connect() as conn:
        namespaces = conn.execute(text("SELECT namespace FROM workflow_events")).scalars().all()
    assert namespaces == [flow.namespace, flow.namespace]
    assert count(engine, "SELECT count(*) FROM unattributed_events") == 0


def namespace_split(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[synthetic.Workflow, list[EventEnvelope], list[EventEnvelope]]:
    """A first batch that registers a workflow's namespace and then forgets it, and the
    workflow's remaining events; the second batch cannot find the namespace in memory.
    The broker and PostgreSQL are the real ones; only the size of landing's memory is set to
    nothing, since a real memory of 200,000 workflows would need that many to forget one.

    Batch 1 is another workflow's unnamed first event, then the workflow's first two events
    (the second names its namespace). With a memory of no workflows, the look-up of the other
    workflow's namespace clears what registering this one remembered.
    """
    monkeypatch.setattr(landing, "MAX_REMEMBERED_WORKFLOWS", 0)
    flow, other = flows(2)
    events = synthetic.events(flow, environment="test")
    first = [synthetic.events(other, environment="test")[0], *events[:2]]
    return flow, first, events[2:]


def test_events_in_the_next_batch_take_the_namespace_a_batch_not_yet_committed_registered(
    engine: Engine, kafka_bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, first, rest = namespace_split(monkeypatch)
    unnamed = [e for e in rest if "namespace" not in e.payload][:2]
    produce_in_order(kafka_bootstrap, topics.workflow, [*first, *unnamed])
    with writes_held(engine, "landing_positions", 1.5):
        land_all(engine, kafka_bootstrap, topics.workflow, batch_size=len(first))
    named = count(
        engine,
        f"SELECT count(*) FROM workflow_events WHERE correlation_id = '{flow.workflow_id}'"
        f" AND namespace = '{flow.namespace}'",
    )
    assert named == 4
    # Only the other workflow's event waits for a namespace.
    assert count(engine, "SELECT count(*) FROM unattributed_events") == 1


def test_a_workflow_named_again_in_the_next_batch_is_registered_once(
    engine: Engine, kafka_bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, first, rest = namespace_split(monkeypatch)
    again = next(e for e in rest if "namespace" in e.payload)
    produce_in_order(kafka_bootstrap, topics.workflow, [*first, rest[0], again])
    with writes_held(engine, "landing_positions", 1.5):
        result = land_all(engine, kafka_bootstrap, topics.workflow, batch_size=len(first))
    assert result.landed == 5
    assert count(engine, "SELECT count(*) FROM workflow_namespaces") == 1
    assert (
        count(engine, f"SELECT count(*) FROM workflow_events WHERE namespace = '{flow.namespace}'")
        == 4
    )


def test_no_batch_commits_after_one_that_failed(
    engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    [flow] = flows(1)
    events = synthetic.events(flow, environment="test")[:8]
    produce_in_order(kafka_bootstrap, topics.workflow, events)
    with engine.begin() as conn:
        day = events[0].event_timestamp.date()
        event_days.ensure_days(conn, {day}, event_days.existing_days(conn))
    # Batch 1 (events 0-3) waits at its first write, registering the workflow's namespace,
    # while batch 2 (events 4-7) is looked up and queued to commit after it.
    holder = engine.connect()
    holder.execute(text("LOCK TABLE workflow_namespaces IN EXCLUSIVE MODE"))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            land_all(engine, kafka_bootstrap, topics.workflow, batch_size=4)
        except Exception as exc:
            # Kept for the test thread to inspect: the failure is what this test expects.
            failure.append(exc)

    landing_thread = threading.Thread(target=run)
    landing_thread.start()
    _wait_for_a_commit_waiting_on(engine, "INSERT INTO workflow_namespaces")
    # Event 2 lands behind batch 1's back, so batch 1's COPY fails on its key.
    _insert_landed(engine, events[2])
    holder.invalidate()
    landing_thread.join(60)

    assert failure and "duplicate key" in str(failure[0])
    assert count(engine, "SELECT count(*) FROM landing_positions") == 0
    assert count(engine, "SELECT count(*) FROM workflow_events") == 1

    # Nothing the failed batches remembered outlives them: landed again, every event is there
    # once, with the workflow's namespace.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM workflow_events"))
    assert land_all(engine, kafka_bootstrap, topics.workflow, batch_size=4).landed == 8
    assert (
        count(engine, f"SELECT count(*) FROM workflow_events WHERE namespace = '{flow.namespace}'")
        == 8
    )
    assert count(engine, "SELECT count(*) FROM unattributed_events") == 0


def _wait_for_a_commit_waiting_on(engine: Engine, statement: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = count(
            engine,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            f" AND wait_event_type = 'Lock' AND query LIKE '%{statement}%'",
        )
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError(f"no landing session waited on {statement!r} within 30 s")


def _insert_landed(engine: Engine, event: EventEnvelope) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_events (event_id, event_timestamp, event_type, state,"
                ' topic, partition, "offset", envelope)'
                " VALUES (:id, :ts, :type, 'processing', 'elsewhere', 0, 0, '{}')"
            ),
            {"id": event.event_id, "ts": event.event_timestamp, "type": str(event.event_type)},
        )
