"""The workflow events' transactional outbox.

A step writes its events (`write`) as one batch in the transaction that commits the change
they describe, and `relay` publishes it after the commit. So an event reaches the topic only
for a committed change: a step that rolls back, or whose commit fails, leaves no row and no
message. One row per event id, first write wins: a retried or resumed step that emits an
event id again (with a new `event_timestamp`) stores nothing for it, and every publication of
that id is the first committed bytes. What a crash leaves unsent goes out with the next
relay: every step's, and the sweeper's every five minutes.

A batch is locked, sent and marked as a whole, so a step pays one row update for its
relay, not one per event, and the step that wrote it sends it from memory. One relay
publishes in commit order; relays side by side (runs in parallel) each take batches the
other has not locked, so two steps of one workflow committed a moment apart may be published
by two producers: consumers order a workflow's events by state, as the reducer's projection
does, not by offset.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from psycopg2.errors import UniqueViolation
from sqlalchemy import Connection, Engine, text

from bridge_dagster.orchestrator.events_out import OutboxEvent, Sink

# Batches one statement of `prune_sent` deletes, so a backlog never holds a long lock.
PRUNE_BATCHES = 200
COPY_EVENTS = (
    "COPY workflow_outbox (batch_id, seq, event_id, workflow_id, topic, value, signature)"
    " FROM STDIN"
)


@dataclass(frozen=True)
class Batch:
    """A step's events as stored: the ones no earlier step had stored, in order."""

    id: int
    events: list[OutboxEvent]


def write(conn: Connection, events: Sequence[OutboxEvent]) -> Batch | None:
    """Store, as one batch, the events whose ids are not stored yet; None when none is new.

    Usually none is stored, so the batch is copied at once; only when the unique event id
    refuses it (a retried or resumed step emitted some again, or a concurrent writer did)
    does it look the stored ones up and copy the rest.
    """
    fresh = _first_of_each(events)
    if not fresh:
        return None
    try:
        with conn.begin_nested():
            return _copy(conn, fresh)
    except UniqueViolation:
        fresh = _not_stored(conn, fresh)
    return _copy(conn, fresh) if fresh else None


def _first_of_each(events: Sequence[OutboxEvent]) -> list[OutboxEvent]:
    first: dict[UUID, OutboxEvent] = {}
    for e in events:
        first.setdefault(e.event_id, e)
    return list(first.values())


def _copy(conn: Connection, events: list[OutboxEvent]) -> Batch:
    batch_id = conn.execute(
        text("INSERT INTO workflow_outbox_batches (events) VALUES (:events) RETURNING id"),
        {"events": len(events)},
    ).scalar_one()
    lines = "".join(_copy_line(batch_id, seq, e) for seq, e in enumerate(events))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.copy_expert(COPY_EVENTS, io.StringIO(lines), size=1 << 20)
    return Batch(batch_id, events)


def _not_stored(conn: Connection, events: list[OutboxEvent]) -> list[OutboxEvent]:
    stored = set(
        conn.execute(
            text("SELECT event_id FROM workflow_outbox WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [str(e.event_id) for e in events]},
        ).scalars()
    )
    return [e for e in events if e.event_id not in stored]


def _copy_line(batch_id: int, seq: int, e: OutboxEvent) -> str:
    # COPY's text format. JSON escapes every control character, so of its characters only
    # the backslash needs escaping; ids, topic names and hex signatures need none.
    value = e.value.decode().replace("\\", "\\\\")
    signature = "\\N" if e.signature is None else e.signature.decode()
    return f"{batch_id}\t{seq}\t{e.event_id}\t{e.workflow_id}\t{e.topic}\t{value}\t{signature}\n"


def relay(engine: Engine, sink: Sink, own: Batch | None = None) -> int:
    """Publish `own` (just committed, from memory), then every unsent batch no other relay
    holds, oldest first; return how many events went out.

    A batch is marked sent in the transaction that locked it, after the broker took all of
    it; when the broker does not, `sink.flush` raises, the batch stays unsent and the next
    relay sends it again, the same bytes.
    """
    sent = 0
    if own is not None:
        sent += _send_own(engine, sink, own)
    while True:
        with engine.begin() as conn:
            batch = _lock_unsent(conn)
            if batch is None:
                return sent
            _publish(sink, batch.events)
            _mark_sent(conn, batch.id)
        sent += len(batch.events)


def _send_own(engine: Engine, sink: Sink, own: Batch) -> int:
    with engine.begin() as conn:
        # Waits for a relay that took the batch first, then finds it sent.
        unsent = conn.execute(
            text(
                "SELECT id FROM workflow_outbox_batches"
                " WHERE id = :id AND sent_at IS NULL FOR UPDATE"
            ),
            {"id": own.id},
        ).first()
        if unsent is None:
            return 0
        _publish(sink, own.events)
        _mark_sent(conn, own.id)
    return len(own.events)


def _lock_unsent(conn: Connection) -> Batch | None:
    batch_id = conn.execute(
        text(
            "SELECT id FROM workflow_outbox_batches WHERE sent_at IS NULL"
            " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
    ).scalar()
    if batch_id is None:
        return None
    rows = conn.execute(
        text(
            "SELECT event_id, workflow_id, topic, value, signature FROM workflow_outbox"
            " WHERE batch_id = :id ORDER BY seq"
        ),
        {"id": batch_id},
    )
    events = [
        OutboxEvent(
            r.event_id,
            r.workflow_id,
            r.topic,
            r.value.encode(),
            None if r.signature is None else r.signature.encode(),
        )
        for r in rows
    ]
    return Batch(batch_id, events)


def _publish(sink: Sink, events: Sequence[OutboxEvent]) -> None:
    for e in events:
        headers = None if e.signature is None else [("x-signature", e.signature)]
        sink.produce(e.topic, str(e.workflow_id).encode(), e.value, headers)
    sink.flush()


def _mark_sent(conn: Connection, batch_id: int) -> None:
    conn.execute(
        text("UPDATE workflow_outbox_batches SET sent_at = now() WHERE id = :id"),
        {"id": batch_id},
    )


def prune_sent(engine: Engine) -> int:
    """Delete the sent batches all of whose workflows have ended; return how many events.

    Only a workflow in pending or processing has its events emitted again (by the run that
    resumes it), so only a batch naming one must stay to keep the first bytes.
    """
    pruned = 0
    while True:
        with engine.begin() as conn:
            done = list(
                conn.execute(
                    text(
                        """
                        SELECT b.id FROM workflow_outbox_batches b
                        WHERE b.sent_at IS NOT NULL AND NOT EXISTS (
                            SELECT 1 FROM workflow_outbox o
                            JOIN workflow_executions w ON w.workflow_id = o.workflow_id
                            WHERE o.batch_id = b.id AND w.state IN ('pending', 'processing'))
                        ORDER BY b.id LIMIT :limit
                        """
                    ),
                    {"limit": PRUNE_BATCHES},
                ).scalars()
            )
            pruned += conn.execute(
                text("DELETE FROM workflow_outbox WHERE batch_id = ANY(:ids)"), {"ids": done}
            ).rowcount
            conn.execute(
                text("DELETE FROM workflow_outbox_batches WHERE id = ANY(:ids)"), {"ids": done}
            )
        if len(done) < PRUNE_BATCHES:
            return pruned
