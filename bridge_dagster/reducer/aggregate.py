"""One reducer table over one window of hours, computed by PostgreSQL in one transaction.

A window [start, end) is one hour or a backfill's range. The table's rows of the window are
replaced (or, for the projection, merged) by a single `INSERT … SELECT … GROUP BY` over
workflow_events, so re-materializing is idempotent. Before that, the hours' touch_seq are
read; after it, they are recorded as aggregated, all in the same transaction. A landing
that commits while the aggregation runs therefore leaves its hour stale, to be aggregated
again, and never marked fresh with rows the aggregation did not see.

Every attempt is a row of reducer_aggregations (status, events, rows, duration, error):
what the guide's aggregation_* metrics are computed from. No Dagster here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from bridge_dagster.reducer.sql import query


@dataclass(frozen=True)
class Table:
    """A reducer table and how a window of it is computed."""

    name: str
    sql: str
    time_column: str | None  # None: merged (the projection), not replaced per window


@dataclass(frozen=True)
class Outcome:
    rows: int
    events: int
    seconds: float


HOURLY_TABLES = (
    Table("reducer_namespace_hourly", "namespace_hourly", "hour"),
    Table("reducer_content_type_hourly", "content_type_hourly", "hour"),
    Table("reducer_size_bucket_hourly", "size_bucket_hourly", "hour"),
    Table("reducer_throughput_minutely", "throughput_minutely", "minute"),
    Table("reducer_workflow_projection", "workflow_projection", None),
)
HOURLY_TABLE_NAMES = tuple(t.name for t in HOURLY_TABLES)


def hours_of(start: datetime, end: datetime) -> list[datetime]:
    count = int((end - start) / timedelta(hours=1))
    return [start + timedelta(hours=i) for i in range(count)]


def aggregate(
    engine: Engine,
    table: Table,
    start: datetime,
    end: datetime,
    *,
    default_namespace: str,
    run_id: str | None = None,
) -> Outcome:
    """Compute `table` for [start, end); a failure is recorded, then raised."""
    began = time.perf_counter()
    window = {"start": start, "end": end}
    try:
        with engine.begin() as conn:
            _lock(conn, table.name)
            landed = conn.execute(query("window_seqs"), window).all()
            seqs = {hour: seq for hour, seq, _ in landed}
            if table.time_column is not None:
                conn.exec_driver_sql(
                    f"DELETE FROM {table.name} WHERE {table.time_column} >= %(start)s"
                    f" AND {table.time_column} < %(end)s",
                    window,
                )
            rows = conn.execute(
                query(table.sql), {**window, "default_namespace": default_namespace}
            ).rowcount
            events = sum(n for _, _, n in landed)
            _mark_aggregated(conn, table.name, start, end, seqs)
            outcome = Outcome(rows, events, time.perf_counter() - began)
            _record(conn, table.name, window, run_id, "completed", outcome)
        return outcome
    except Exception as exc:
        failed = Outcome(0, 0, time.perf_counter() - began)
        with engine.begin() as conn:
            _record(conn, table.name, window, run_id, "failed", failed, error=repr(exc)[:2000])
        raise


def rebuild_bridge_state(engine: Engine, *, run_id: str | None = None) -> Outcome:
    """Recompute reducer_bridge_state, the all-time sum per namespace, from the hourly table."""
    began = time.perf_counter()
    with engine.begin() as conn:
        _lock(conn, "reducer_bridge_state")
        conn.exec_driver_sql("DELETE FROM reducer_bridge_state")
        rows = conn.execute(query("bridge_state")).rowcount
        span = conn.execute(
            text(
                "SELECT min(first_hour), max(last_hour) + interval '1 hour'"
                " FROM reducer_bridge_state"
            )
        ).one()
        outcome = Outcome(rows, 0, time.perf_counter() - began)
        if span[0] is not None:
            window = {"start": span[0], "end": span[1]}
            _record(conn, "reducer_bridge_state", window, run_id, "completed", outcome)
    return outcome


def _lock(conn: Connection, table: str) -> None:
    # One materialization of a table at a time: a refresh and a backfill of the same hour
    # would otherwise both delete, then both insert.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": table})


def _mark_aggregated(
    conn: Connection, table: str, start: datetime, end: datetime, seqs: dict[datetime, int]
) -> None:
    hours = hours_of(start, end)
    conn.execute(
        query("record_hour_state"),
        {"asset": table, "hours": hours, "seqs": [seqs.get(h, 0) for h in hours]},
    )


def _record(
    conn: Connection,
    table: str,
    window: dict[str, datetime],
    run_id: str | None,
    status: str,
    outcome: Outcome,
    *,
    error: str | None = None,
) -> None:
    conn.execute(
        query("record_aggregation"),
        {
            "asset": table,
            **window,
            "status": status,
            "events": outcome.events,
            "rows_written": outcome.rows,
            "duration_ms": outcome.seconds * 1000,
            "error": error,
            "run_id": run_id,
        },
    )


def hour_summaries(engine: Engine, start: datetime, end: datetime) -> dict[datetime, dict]:
    """Per hour: events, completed, failed and the worst namespace's p95 latency."""
    with engine.connect() as conn:
        found = conn.execute(query("hour_summary"), {"start": start, "end": end}).mappings()
        return {row["hour"]: dict(row) for row in found}
