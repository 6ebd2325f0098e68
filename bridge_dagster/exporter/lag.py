"""Consumer lag: how far behind a topic's end each of the project's two readers is."""

from __future__ import annotations

from collections.abc import Mapping

from bridge_dagster.sensors.cursor import Cursor, CursorError


def consumer_lag(
    positions: Mapping[int, int], watermarks: Mapping[int, tuple[int, int]]
) -> dict[int, int]:
    """Offsets per partition between where a reader resumes and the high watermark.

    A reader resumes at its position, or at the low watermark when it has none or when the
    position lies outside [low, high] (retention passed it, or the topic was recreated): what
    the request sensor and landing both do.
    """
    lag = {}
    for partition, (low, high) in watermarks.items():
        position = positions.get(partition)
        resumes_at = position if position is not None and low <= position <= high else low
        lag[partition] = high - resumes_at
    return lag


def request_sensor_positions(cursor: str | None, topic: str) -> dict[int, int]:
    """The next offset the request sensor hands out per partition, from its cursor; none when
    the cursor belongs to another topic or cannot be read (the sensor then starts over too)."""
    try:
        parsed = Cursor.from_json(cursor)
    except CursorError:
        return {}
    return dict(parsed.offsets) if parsed.topic in (None, topic) else {}
