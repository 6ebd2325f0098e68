"""The ledger of request ranges the sensor handed out (`request_ranges`).

Moving the sensor's cursor past offsets hands them to a run; if that run ends without
admitting them (retries exhausted, cancelled, deleted, killed), only this ledger still
knows they were never read. A range is recorded in the tick that hands it out, before the
cursor moves, and closed in the admission transaction that makes its requests rows or
dead letters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

# The tag naming the ledger entry a run works on; Dagster's retries copy it.
RANGE_TAG = "bridge/range"
# How many times the range was requested; above 1 on a re-requested range.
REQUESTED_TAG = "bridge/range_requested"


@dataclass(frozen=True)
class Entry:
    range_key: str
    topic: str
    generation: int
    # [{"topic", "partition", "start", "end"}], the run config of `load_requests`.
    ranges: tuple[Mapping[str, Any], ...]
    size: int
    requested: int = 1


def record(conn: Connection, entries: Sequence[Entry]) -> None:
    """Store new entries; one recorded by a tick whose cursor was not saved stays as it was."""
    if not entries:
        return
    rows = [
        {
            "range_key": e.range_key,
            "topic": e.topic,
            "generation": e.generation,
            "ranges": list(e.ranges),
            "size": e.size,
        }
        for e in entries
    ]
    conn.execute(
        text(
            """
            INSERT INTO request_ranges (range_key, topic, generation, ranges, size)
            SELECT r.range_key, r.topic, r.generation, r.ranges, r.size
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
                range_key text, topic text, generation integer, ranges jsonb, size integer)
            ON CONFLICT (range_key) DO NOTHING
            """
        ),
        {"rows": json.dumps(rows)},
    )


def open_entries(conn: Connection, topic: str, limit: int) -> list[Entry]:
    """The oldest open entries of `topic`."""
    rows = conn.execute(
        text(
            "SELECT range_key, topic, generation, ranges, size, requested FROM request_ranges"
            " WHERE topic = :topic AND closed_at IS NULL ORDER BY created_at, range_key"
            " LIMIT :limit"
        ),
        {"topic": topic, "limit": limit},
    )
    return [
        Entry(r.range_key, r.topic, r.generation, tuple(r.ranges), r.size, r.requested)
        for r in rows
    ]


def handed_out(entry: Entry, generation: int, offsets: Mapping[int, int]) -> bool:
    """Whether the saved cursor (`generation`, `offsets`) is past every offset of `entry`.

    An entry the cursor is not past was recorded by a tick that failed before its cursor
    was saved: no run was made for it, and the next plan hands those offsets out again.
    """
    return entry.generation == generation and all(
        r["end"] <= offsets.get(r["partition"], -1) for r in entry.ranges
    )


def forget(conn: Connection, keys: Iterable[str]) -> None:
    """Drop open entries that were never handed out."""
    conn.execute(
        text(
            "DELETE FROM request_ranges"
            " WHERE range_key = ANY(CAST(:keys AS text[])) AND closed_at IS NULL"
        ),
        {"keys": list(keys)},
    )


def requested_again(conn: Connection, keys: Iterable[str]) -> None:
    conn.execute(
        text(
            "UPDATE request_ranges SET requested = requested + 1, requested_at = now()"
            " WHERE range_key = ANY(CAST(:keys AS text[]))"
        ),
        {"keys": list(keys)},
    )


def close(conn: Connection, keys: Iterable[str], reason: str) -> None:
    conn.execute(
        text(
            "UPDATE request_ranges SET closed_at = now(), closed_reason = :reason"
            " WHERE range_key = ANY(CAST(:keys AS text[])) AND closed_at IS NULL"
        ),
        {"keys": list(keys), "reason": reason},
    )
