"""The day partitions of workflow_events: created ahead and on demand, dropped after retention.

A day is one PostgreSQL partition, `workflow_events_pYYYYMMDD`, holding [day, day + 1) UTC.
Dropping a whole day is instant and leaves no bloat, where DELETE of tens of millions of
rows would take minutes and a VACUUM. Callers hold the landing lock, so no two sessions
create the same partition at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, text

PREFIX = "workflow_events_p"

_PARTITIONS = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'workflow_events'::regclass"
)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def partition_name(day: date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def existing_days(conn: Connection) -> set[date]:
    names = conn.execute(_PARTITIONS).scalars()
    return {datetime.strptime(n[len(PREFIX) :], "%Y%m%d").date() for n in names}


def ensure_days(conn: Connection, days: Iterable[date], known: set[date]) -> set[date]:
    """Create the partitions of `days` missing from `known`; returns the days created."""
    created = set()
    for day in sorted(set(days) - known):
        start, end = day_start(day), day_start(day + timedelta(days=1))
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF workflow_events"
            f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
        created.add(day)
    known |= created
    return created


def unaggregated_days(
    conn: Connection, days: Iterable[date], tables: Iterable[str], partitions_start: datetime
) -> set[date]:
    """The days among `days` with an hour that some table has not aggregated since it landed.

    Hours before `partitions_start` have no partition to aggregate them and never wait.
    """
    wanted = sorted(days)
    if not wanted:
        return set()
    stale = conn.execute(
        text(
            "SELECT DISTINCT (l.hour AT TIME ZONE 'UTC')::date FROM reducer_landed_hours AS l"
            " CROSS JOIN unnest(CAST(:tables AS text[])) AS t(asset)"
            " LEFT JOIN reducer_hour_state AS s ON s.asset = t.asset AND s.hour = l.hour"
            " WHERE l.hour >= :start AND l.hour < :end"
            " AND COALESCE(s.aggregated_seq, -1) < l.touch_seq"
        ),
        {
            "tables": list(tables),
            "start": max(day_start(wanted[0]), partitions_start),
            "end": day_start(wanted[-1] + timedelta(days=1)),
        },
    ).scalars()
    return set(stale) & set(wanted)


def drop_days(conn: Connection, days: Iterable[date]) -> list[date]:
    dropped = sorted(days)
    for day in dropped:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {partition_name(day)}")
    return dropped


def forget_workflows_before(conn: Connection, horizon: datetime) -> int:
    """Drop the namespace memory of workflows first seen before `horizon`.

    Their events are expired (dead-lettered) from now on, so nothing would look them up.
    """
    conn.execute(text("DELETE FROM unattributed_events WHERE event_timestamp < :h"), {"h": horizon})
    return conn.execute(
        text("DELETE FROM workflow_namespaces WHERE first_seen < :h"), {"h": horizon}
    ).rowcount
