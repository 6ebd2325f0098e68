"""Planning runs from the request sensor's cursor and the topic's watermarks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_dagster.sensors.cursor import (
    MAX_RUNS_PER_TICK,
    Cursor,
    CursorError,
    Lost,
    OffsetRange,
    Plan,
    Reset,
    plan_runs,
)

TOPIC = "requests"


def plan(
    offsets: dict[int, int],
    watermarks: dict[int, tuple[int, int]],
    *,
    max_per_run: int = 100,
    budget: int = 1_000,
    generation: int = 0,
    topic: str | None = TOPIC,
) -> Plan:
    return plan_runs(
        Cursor(topic, generation, offsets),
        watermarks,
        topic=TOPIC,
        max_per_run=max_per_run,
        budget=budget,
    )


def ranges(result: Plan) -> list[tuple[int, int, int]]:
    return [(r.partition, r.start, r.end) for run in result.runs for r in run.ranges]


def per_partition(result: Plan) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for partition, start, end in ranges(result):
        sizes[partition] = sizes.get(partition, 0) + end - start
    return sizes


# --- planning ------------------------------------------------------------------------------


def test_new_offsets_become_one_run_from_the_cursor_to_the_high_watermark() -> None:
    result = plan({0: 10}, {0: (0, 15)})
    assert ranges(result) == [(0, 10, 15)]
    assert result.cursor.offsets == {0: 15}


def test_nothing_new_plans_no_runs_and_keeps_the_cursor() -> None:
    result = plan({0: 15, 1: 4}, {0: (0, 15), 1: (0, 4)})
    assert result.runs == ()
    assert result.cursor == Cursor(TOPIC, 0, {0: 15, 1: 4})


def test_a_long_backlog_is_chunked_at_max_per_run() -> None:
    result = plan({0: 0}, {0: (0, 250)}, max_per_run=100)
    assert ranges(result) == [(0, 0, 100), (0, 100, 200), (0, 200, 250)]
    assert [run.size for run in result.runs] == [100, 100, 50]


def test_small_backlogs_of_several_partitions_share_one_run() -> None:
    result = plan({0: 0, 1: 0, 2: 0}, {0: (0, 3), 1: (0, 2), 2: (0, 4)})
    assert len(result.runs) == 1
    assert ranges(result) == [(0, 0, 3), (1, 0, 2), (2, 0, 4)]


def test_a_partition_split_between_two_runs_continues_where_the_first_stopped() -> None:
    result = plan({0: 0, 1: 0}, {0: (0, 60), 1: (0, 60)}, max_per_run=100)
    assert [[(r.partition, r.start, r.end) for r in run.ranges] for run in result.runs] == [
        [(0, 0, 60), (1, 0, 40)],
        [(1, 40, 60)],
    ]


def test_the_budget_is_shared_evenly_between_busy_partitions() -> None:
    result = plan({0: 0, 1: 0, 2: 0}, {0: (0, 500), 1: (0, 500), 2: (0, 500)}, budget=90)
    assert per_partition(result) == {0: 30, 1: 30, 2: 30}


def test_what_a_quiet_partition_leaves_of_its_share_goes_to_the_busy_ones() -> None:
    result = plan({0: 0, 1: 0, 2: 0}, {0: (0, 500), 1: (0, 6), 2: (0, 500)}, budget=90)
    assert per_partition(result) == {0: 42, 1: 6, 2: 42}


def test_a_tight_budget_goes_to_the_partition_furthest_behind() -> None:
    result = plan({0: 0, 1: 0, 2: 0}, {0: (0, 5), 1: (0, 9), 2: (0, 7)}, budget=1)
    assert ranges(result) == [(1, 0, 1)]


def test_the_budget_is_never_exceeded() -> None:
    result = plan({0: 0}, {0: (0, 500)}, budget=42)
    assert result.size == 42
    assert result.backlog == 458
    assert result.cursor.offsets == {0: 42}


def test_a_budget_of_one_still_hands_out_one_request() -> None:
    result = plan({0: 0, 1: 0}, {0: (0, 500), 1: (0, 500)}, budget=1)
    assert result.size == 1


def test_no_budget_plans_no_runs_and_leaves_the_offsets_waiting() -> None:
    result = plan({0: 3}, {0: (0, 500)}, budget=0)
    assert result.runs == ()
    assert result.cursor.offsets == {0: 3}


def test_a_tick_plans_at_most_max_runs_per_tick_runs() -> None:
    result = plan({0: 0}, {0: (0, 10_000)}, max_per_run=10, budget=10_000)
    assert len(result.runs) == MAX_RUNS_PER_TICK
    assert result.cursor.offsets == {0: 10 * MAX_RUNS_PER_TICK}


# --- resets, retention, new partitions -----------------------------------------------------


def test_a_cursor_past_the_high_watermark_restarts_at_the_low_one_in_a_new_generation() -> None:
    result = plan({0: 900, 1: 5}, {0: (0, 12), 1: (0, 8)}, generation=3)
    assert result.resets == (Reset(partition=0, cursor=900, low=0, high=12),)
    assert ranges(result) == [(0, 0, 12), (1, 5, 8)]
    assert result.cursor.generation == 4
    assert all("/g4/" in run.run_key for run in result.runs)


def test_offsets_deleted_by_retention_are_skipped_and_counted() -> None:
    result = plan({0: 10}, {0: (25, 30)})
    assert result.lost == (Lost(partition=0, cursor=10, low=25),)
    assert result.lost[0].count == 15
    assert ranges(result) == [(0, 25, 30)]
    assert result.cursor.generation == 0


def test_a_new_partition_starts_at_its_low_watermark() -> None:
    result = plan({0: 5}, {0: (0, 5), 1: (7, 9)})
    assert result.new_partitions == (1,)
    assert ranges(result) == [(1, 7, 9)]
    assert result.cursor.offsets == {0: 5, 1: 9}


def test_an_empty_cursor_reads_every_partition_from_its_low_watermark() -> None:
    result = plan_runs(Cursor(), {0: (2, 4), 1: (0, 1)}, topic=TOPIC, max_per_run=10, budget=10)
    assert ranges(result) == [(0, 2, 4), (1, 0, 1)]
    assert result.cursor == Cursor(TOPIC, 0, {0: 4, 1: 1})


def test_a_vanished_partition_is_dropped_and_starts_a_new_generation() -> None:
    result = plan({0: 5, 1: 5}, {0: (0, 5)})
    assert result.vanished_partitions == (1,)
    assert result.cursor == Cursor(TOPIC, 1, {0: 5})


def test_a_cursor_for_another_topic_starts_this_one_from_scratch_in_a_new_generation() -> None:
    result = plan({0: 3}, {0: (0, 5)}, topic="old-requests")
    assert result.topic_changed_from == "old-requests"
    assert ranges(result) == [(0, 0, 5)]
    assert result.cursor == Cursor(TOPIC, 1, {0: 5})


# --- run keys and the cursor's JSON --------------------------------------------------------


def test_run_keys_name_topic_generation_and_offsets() -> None:
    result = plan({0: 10, 1: 0}, {0: (0, 15), 1: (0, 2)}, generation=2)
    assert [run.run_key for run in result.runs] == [f"{TOPIC}/g2/p0:10-15,p1:0-2"]


def test_the_same_cursor_and_watermarks_give_the_same_run_keys() -> None:
    def keys() -> list[str]:
        return [run.run_key for run in plan({0: 0, 1: 3}, {0: (0, 300), 1: (0, 90)}).runs]

    assert keys() == keys()


def test_offset_ranges_become_load_requests_config() -> None:
    assert OffsetRange(2, 5, 9).as_config(TOPIC) == {
        "topic": TOPIC,
        "partition": 2,
        "start": 5,
        "end": 9,
    }


def test_the_cursor_round_trips_through_small_json() -> None:
    cursor = Cursor(TOPIC, 2, {0: 1042, 1: 998})
    assert cursor.to_json() == '{"t":"requests","g":2,"p":{"0":1042,"1":998}}'
    assert Cursor.from_json(cursor.to_json()) == cursor


@pytest.mark.parametrize("raw", [None, ""])
def test_no_cursor_is_an_empty_cursor(raw: str | None) -> None:
    assert Cursor.from_json(raw) == Cursor()


def test_a_hand_written_cursor_without_topic_or_generation_is_accepted() -> None:
    assert Cursor.from_json('{"p": {"0": 7}}') == Cursor(None, 0, {0: 7})


@pytest.mark.parametrize(
    "raw",
    ["not json", "[1, 2]", '{"p": {"zero": 1}}', '{"p": {"0": -1}}', '{"p": {"0": 1.5}}',
     '{"g": "1"}', '{"t": 5}', '{"p": [1]}'],
)  # fmt: skip
def test_a_malformed_cursor_is_refused_with_an_example_of_a_good_one(raw: str) -> None:
    with pytest.raises(CursorError, match=r"set it in the Dagster UI to JSON like"):
        Cursor.from_json(raw)


# --- properties ----------------------------------------------------------------------------


@st.composite
def topic_states(draw: st.DrawFn) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    partitions = draw(st.lists(st.integers(0, 7), unique=True, max_size=6))
    watermarks = {}
    for p in partitions:
        low = draw(st.integers(0, 1_000))
        watermarks[p] = (low, low + draw(st.integers(0, 1_000)))
    offsets = draw(st.dictionaries(st.integers(0, 7), st.integers(0, 2_500), max_size=8))
    return offsets, watermarks


@given(
    state=topic_states(),
    max_per_run=st.integers(1, 300),
    budget=st.integers(-5, 3_000),
)
def test_planned_ranges_cover_each_partition_once_in_order_within_the_watermarks(
    state: tuple[dict[int, int], dict[int, tuple[int, int]]], max_per_run: int, budget: int
) -> None:
    offsets, watermarks = state
    result = plan(offsets, watermarks, max_per_run=max_per_run, budget=budget)
    reset = {r.partition for r in result.resets}
    lost = {x.partition: x.low for x in result.lost}

    assert set(result.cursor.offsets) == set(watermarks)
    for partition, (low, high) in watermarks.items():
        old = offsets.get(partition)
        # Where reading resumes: the old cursor unless a reset, retention or a new partition.
        start = low if old is None or partition in reset else lost.get(partition, old)
        planned = [(s, e) for p, s, e in ranges(result) if p == partition]
        new = result.cursor.offsets[partition]
        bounds = [start, *(o for s, e in planned for o in (s, e)), new]
        # Each range starts where the one before ended: no gap and no overlap up to the cursor.
        assert bounds[::2] == bounds[1::2]
        assert all(s < e for s, e in planned)
        assert low <= start <= new <= high

    assert all(run.size <= max_per_run for run in result.runs)
    assert len(result.runs) <= MAX_RUNS_PER_TICK
    assert result.size <= max(budget, 0)
    waiting = sum(high - result.cursor.offsets[p] for p, (_, high) in watermarks.items())
    assert result.backlog == waiting
    if budget > 0 and waiting + result.size > 0:
        assert result.runs
