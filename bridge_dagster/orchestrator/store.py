"""Set-based SQL for the workflow tables: one statement per step for a whole batch.

Each statement takes its rows as one JSON array (`jsonb_to_recordset`), so a batch of
thousands of workflows costs a handful of round trips. Every state change is guarded by the
state machine in SQL (`WHERE state = ANY(allowed sources)`): a transition that the FSM does
not allow matches no row and is never applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, text

from bridge_dagster.orchestrator.fsm import WorkflowState, allowed_sources


@dataclass(frozen=True)
class NewWorkflow:
    workflow_id: UUID
    namespace: str
    file_path: str | None
    content_type: str | None
    stamp_type: str | None
    request_offset: str
    requested_at: datetime | None


@dataclass(frozen=True)
class ExistingWorkflow:
    workflow_id: UUID
    state: WorkflowState
    run_id: str | None


@dataclass(frozen=True)
class Completion:
    workflow_id: UUID
    file_size: int
    file_hash: str
    stamp_id: UUID
    stamp_type: str
    stamp: str
    namespace: str
    file_path: str | None
    content_type: str | None
    metadata: dict[str, str]
    intelligence: dict[str, Any] | None
    steps: list[str]


def _rows(items: Iterable[dict[str, Any]]) -> str:
    return json.dumps([_storable(item) for item in items], default=str)


def _storable(value: Any) -> Any:
    """PostgreSQL text and jsonb refuse NUL and lone surrogates; replace them, keep the rest.

    They reach here from outside: a namespace salvaged from a rejected message, a file
    name that is not UTF-8 on disk.
    """
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode()
        return value
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def insert_pending(conn: Connection, workflows: Sequence[NewWorkflow], run_id: str) -> set[UUID]:
    """Create the workflows that do not exist yet; return the ids actually created."""
    if not workflows:
        return set()
    created = conn.execute(
        text(
            """
            INSERT INTO workflow_executions
                (workflow_id, namespace, state, file_path, content_type, stamp_type,
                 request_offset, requested_at, run_id)
            SELECT r.workflow_id, r.namespace, 'pending', r.file_path, r.content_type,
                   r.stamp_type, r.request_offset, r.requested_at, :run_id
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
                workflow_id uuid, namespace text, file_path text, content_type text,
                stamp_type text, request_offset text, requested_at timestamptz)
            ON CONFLICT (workflow_id) DO NOTHING
            RETURNING workflow_id
            """
        ),
        {"rows": _rows(w.__dict__ for w in workflows), "run_id": run_id},
    ).scalars()
    ids = set(created)
    record_transitions(conn, ids, None, WorkflowState.PENDING, "request accepted")
    return ids


def existing(conn: Connection, ids: Iterable[UUID]) -> dict[UUID, ExistingWorkflow]:
    rows = conn.execute(
        text(
            "SELECT workflow_id, state, run_id FROM workflow_executions"
            " WHERE workflow_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": [str(i) for i in ids]},
    )
    return {
        r.workflow_id: ExistingWorkflow(r.workflow_id, WorkflowState(r.state), r.run_id)
        for r in rows
    }


def move(
    conn: Connection,
    ids: Iterable[UUID],
    target: WorkflowState,
    reason: str,
    *,
    started: bool = False,
) -> set[UUID]:
    """Apply one FSM transition to many workflows; return those it applied to."""
    id_list = [str(i) for i in ids]
    if not id_list:
        return set()
    sources = [str(s) for s in allowed_sources(target)]
    rows = conn.execute(
        text(
            f"""
            WITH old AS (
                SELECT workflow_id, state AS before FROM workflow_executions
                WHERE workflow_id = ANY(CAST(:ids AS uuid[])) FOR UPDATE)
            UPDATE workflow_executions w
            SET state = :target, updated_at = now(){", started_at = now()" if started else ""}
            FROM old
            WHERE w.workflow_id = old.workflow_id AND old.before = ANY(CAST(:sources AS text[]))
            RETURNING w.workflow_id, old.before
            """
        ),
        {"ids": id_list, "target": str(target), "sources": sources},
    ).all()
    _insert_transitions(conn, [(r.workflow_id, r.before, str(target), reason) for r in rows])
    return {r.workflow_id for r in rows}


def fail(conn: Connection, failures: dict[UUID, str]) -> dict[UUID, WorkflowState]:
    """Move each workflow to failed with its own reason; return the state each left."""
    if not failures:
        return {}
    sources = [str(s) for s in allowed_sources(WorkflowState.FAILED)]
    rows = conn.execute(
        text(
            """
            WITH r AS (
                SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
                    AS r(workflow_id uuid, reason text)),
            old AS (
                SELECT w.workflow_id, w.state AS before, r.reason
                FROM workflow_executions w JOIN r ON r.workflow_id = w.workflow_id
                FOR UPDATE OF w)
            UPDATE workflow_executions w
            SET state = 'failed', error = old.reason, updated_at = now(), completed_at = now(),
                duration_ms = (EXTRACT(EPOCH FROM now() - w.created_at) * 1000)::bigint
            FROM old
            WHERE w.workflow_id = old.workflow_id AND old.before = ANY(CAST(:sources AS text[]))
            RETURNING w.workflow_id, old.before, old.reason
            """
        ),
        {
            "rows": _rows({"workflow_id": k, "reason": v} for k, v in failures.items()),
            "sources": sources,
        },
    ).all()
    _insert_transitions(conn, [(r.workflow_id, r.before, "failed", r.reason) for r in rows])
    return {r.workflow_id: WorkflowState(r.before) for r in rows}


def complete(conn: Connection, completions: Sequence[Completion]) -> set[UUID]:
    """Store stamps and move their workflows processing → completed, in one transaction."""
    if not completions:
        return set()
    rows = _rows(
        {
            "workflow_id": c.workflow_id,
            "file_size": c.file_size,
            "file_hash": c.file_hash,
            "stamp_id": c.stamp_id,
            "stamp_type": c.stamp_type,
            "stamp": c.stamp,
            "namespace": c.namespace,
            "file_path": c.file_path,
            "content_type": c.content_type,
            "metadata": c.metadata,
            "intelligence": c.intelligence,
            "steps": c.steps,
        }
        for c in completions
    )
    # The stamp is stored only for workflows this statement completes, so a workflow that
    # was failed (or completed) meanwhile gets no stamp row.
    done = conn.execute(
        text(
            """
            WITH r AS (
                SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
                    workflow_id uuid, file_hash text, stamp_id uuid, file_size bigint,
                    intelligence jsonb, steps jsonb, stamp_type text, stamp text,
                    namespace text, file_path text, content_type text, metadata jsonb)),
            done AS (
                UPDATE workflow_executions w
                SET state = 'completed', file_hash = r.file_hash, stamp_id = r.stamp_id,
                    file_size = r.file_size, intelligence = r.intelligence,
                    steps_executed = r.steps, updated_at = now(), completed_at = now(),
                    duration_ms = (EXTRACT(EPOCH FROM now() - w.created_at) * 1000)::bigint
                FROM r
                WHERE w.workflow_id = r.workflow_id AND w.state = ANY(CAST(:sources AS text[]))
                RETURNING w.workflow_id),
            stamped AS (
                INSERT INTO metadata_stamps
                    (stamp_id, workflow_id, file_hash, namespace, stamp_type, stamp, file_path,
                     content_type, file_size, metadata)
                SELECT r.stamp_id, r.workflow_id, r.file_hash, r.namespace, r.stamp_type,
                       r.stamp, r.file_path, r.content_type, r.file_size, r.metadata
                FROM r JOIN done ON done.workflow_id = r.workflow_id
                ON CONFLICT DO NOTHING)
            SELECT workflow_id FROM done
            """
        ),
        {"rows": rows, "sources": [str(x) for x in allowed_sources(WorkflowState.COMPLETED)]},
    ).scalars()
    ids = set(done)
    _insert_transitions(
        conn, [(i, "processing", "completed", "stamp recorded") for i in sorted(ids)]
    )
    return ids


def record_transitions(
    conn: Connection,
    ids: Iterable[UUID],
    before: WorkflowState | None,
    after: WorkflowState,
    reason: str,
) -> None:
    _insert_transitions(
        conn, [(i, None if before is None else str(before), str(after), reason) for i in ids]
    )


def _insert_transitions(
    conn: Connection, rows: Sequence[tuple[UUID, str | None, str, str]]
) -> None:
    if not rows:
        return
    conn.execute(
        text(
            """
            INSERT INTO fsm_transitions (workflow_id, from_state, to_state, reason)
            SELECT r.workflow_id, r.from_state, r.to_state, r.reason
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
                workflow_id uuid, from_state text, to_state text, reason text)
            """
        ),
        {
            "rows": _rows(
                {"workflow_id": w, "from_state": b, "to_state": a, "reason": why}
                for w, b, a, why in rows
            )
        },
    )


def new_dead_letters(conn: Connection, letters: Sequence[dict[str, Any]]) -> set[str]:
    """Store dead letters with their records, unsent; return the keys not stored before.

    Each letter holds source, letter_key, workflow_id, code, reason, dlq_topic and value
    (the record, base64, so that it rides in the JSON of the batch).
    """
    if not letters:
        return set()
    created = conn.execute(
        text(
            """
            INSERT INTO dead_letters
                (source, letter_key, workflow_id, code, reason, dlq_topic, value)
            SELECT r.source, r.letter_key, r.workflow_id, r.code, r.reason, r.dlq_topic,
                   decode(r.value, 'base64')
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
                source text, letter_key text, workflow_id uuid, code text, reason text,
                dlq_topic text, value text)
            ON CONFLICT (letter_key) DO NOTHING
            RETURNING letter_key
            """
        ),
        {"rows": _rows(letters)},
    ).scalars()
    return set(created)


@dataclass(frozen=True)
class UnsentLetter:
    id: int
    letter_key: str
    value: bytes


def unsent_dead_letters(conn: Connection, dlq_topic: str, limit: int) -> list[UnsentLetter]:
    """Lock and return the oldest unsent letters of `dlq_topic` that no other relay holds.

    SKIP LOCKED lets concurrent runs relay side by side without sending one letter twice.
    """
    rows = conn.execute(
        text(
            "SELECT id, letter_key, value FROM dead_letters"
            " WHERE dlq_topic = :dlq_topic AND sent_at IS NULL AND send_error IS NULL"
            " AND value IS NOT NULL ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"dlq_topic": dlq_topic, "limit": limit},
    )
    return [UnsentLetter(r.id, r.letter_key, bytes(r.value)) for r in rows]


def mark_dead_letters_sent(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(
            text("UPDATE dead_letters SET sent_at = now() WHERE id = ANY(:ids)"),
            {"ids": list(ids)},
        )


def record_send_errors(conn: Connection, errors: dict[int, str]) -> None:
    """Keep why the broker refused each letter for good; the relay offers them no more."""
    if errors:
        conn.execute(
            text(
                "UPDATE dead_letters d SET send_error = e.error"
                " FROM unnest(CAST(:ids AS bigint[]), CAST(:errors AS text[])) AS e(id, error)"
                " WHERE d.id = e.id"
            ),
            {"ids": list(errors), "errors": list(errors.values())},
        )


@dataclass(frozen=True)
class StaleWorkflow:
    workflow_id: UUID
    namespace: str
    run_id: str | None


def stale_workflows(conn: Connection, older_than_ms: int) -> list[StaleWorkflow]:
    rows = conn.execute(
        text(
            "SELECT workflow_id, namespace, run_id FROM workflow_executions"
            " WHERE state IN ('pending', 'processing')"
            " AND updated_at < now() - make_interval(secs => :ms / 1000.0)"
            " ORDER BY updated_at LIMIT 10000"
        ),
        {"ms": older_than_ms},
    )
    return [StaleWorkflow(r.workflow_id, r.namespace, r.run_id) for r in rows]


@dataclass(frozen=True)
class FailedWorkflow:
    workflow_id: UUID
    error: str


def failed_in_run(
    conn: Connection, run_id: str, since: datetime, limit: int
) -> tuple[list[FailedWorkflow], int]:
    """The first `limit` workflows a run failed since `since`, by time, and how many in all.

    `since` lets the (state, updated_at) index find them instead of a scan of every workflow.
    """
    rows = conn.execute(
        text(
            "SELECT workflow_id, error, count(*) OVER () AS total FROM workflow_executions"
            " WHERE state = 'failed' AND updated_at >= :since AND run_id = :run_id"
            " ORDER BY updated_at, workflow_id LIMIT :limit"
        ),
        {"run_id": run_id, "since": since, "limit": limit},
    ).all()
    failed = [FailedWorkflow(r.workflow_id, r.error or "") for r in rows]
    return failed, rows[0].total if rows else 0
