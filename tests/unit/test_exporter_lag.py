"""Consumer lag as the exporter reports it: where each reader resumes, against the end."""

from __future__ import annotations

from bridge_dagster.exporter.lag import consumer_lag, request_sensor_positions
from bridge_dagster.sensors.cursor import Cursor


def test_lag_is_the_distance_from_the_position_to_the_high_watermark() -> None:
    assert consumer_lag({0: 40, 1: 100}, {0: (0, 100), 1: (0, 100)}) == {0: 60, 1: 0}


def test_a_partition_without_a_position_lags_by_everything_retained() -> None:
    assert consumer_lag({}, {0: (30, 100)}) == {0: 70}


def test_a_position_outside_the_retained_offsets_counts_from_the_oldest_one() -> None:
    # Past the end: the topic was recreated; before the start: retention passed it. The
    # readers start again at the low watermark in both cases.
    assert consumer_lag({0: 500, 1: 5}, {0: (0, 100), 1: (30, 100)}) == {0: 100, 1: 70}


def test_the_request_sensor_positions_come_from_its_cursor() -> None:
    cursor = Cursor("requests", 0, {0: 12, 2: 7}).to_json()
    assert request_sensor_positions(cursor, "requests") == {0: 12, 2: 7}


def test_a_cursor_of_another_topic_or_unreadable_gives_no_positions() -> None:
    assert request_sensor_positions(Cursor("old", 0, {0: 12}).to_json(), "requests") == {}
    assert request_sensor_positions("not json", "requests") == {}
    assert request_sensor_positions(None, "requests") == {}
