"""The request sensor's cursor and the plan of runs it makes from one look at the topic.

The cursor is small JSON, `{"t": "<topic>", "g": 0, "p": {"0": 1042, "1": 998}}`: the topic it
belongs to, a generation and the next offset to hand out per partition. Run keys carry the
generation, and Dagster never launches a run key twice, so the generation goes up whenever
offsets may repeat (the topic was recreated or replaced). To replay requests by hand, set
the offsets back *and* raise `g`, or the replayed run keys are silently skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Every run key costs the daemon a query per tick and a tick must end within 60 s.
MAX_RUNS_PER_TICK = 25

_CURSOR_EXAMPLE = '{"g": 0, "p": {"0": 1042, "1": 998}}'


class CursorError(ValueError):
    """A cursor that is not the JSON this sensor writes (usually one set by hand)."""


@dataclass(frozen=True)
class Cursor:
    topic: str | None = None
    generation: int = 0
    offsets: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> str:
        body = {
            "t": self.topic,
            "g": self.generation,
            "p": {str(p): o for p, o in sorted(self.offsets.items())},
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | None) -> Cursor:
        """An empty cursor for None or ""; CursorError for anything this module did not write."""
        if not raw:
            return cls()
        try:
            body = json.loads(raw)
            topic = body.get("t")
            generation = body.get("g", 0)
            offsets = {int(p): o for p, o in body.get("p", {}).items()}
        except (ValueError, AttributeError) as exc:
            raise _bad_cursor(raw, str(exc)) from None
        numbers = [generation, *offsets, *offsets.values()]
        if not all(type(n) is int and n >= 0 for n in numbers):
            raise _bad_cursor(raw, "generation, partitions and offsets must be whole numbers ≥ 0")
        if topic is not None and not isinstance(topic, str):
            raise _bad_cursor(raw, '"t" must be a topic name')
        return cls(topic, generation, offsets)


def _bad_cursor(raw: str, why: str) -> CursorError:
    return CursorError(
        f"sensor cursor {raw!r} is not valid ({why}); set it in the Dagster UI to JSON like"
        f" {_CURSOR_EXAMPLE}, or clear it to start again from the oldest retained request"
    )


@dataclass(frozen=True)
class OffsetRange:
    """Offsets [start, end) of one partition."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def as_config(self, topic: str) -> dict[str, str | int]:
        return {"topic": topic, "partition": self.partition, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class PlannedRun:
    ranges: tuple[OffsetRange, ...]
    run_key: str

    @property
    def size(self) -> int:
        return sum(r.size for r in self.ranges)


@dataclass(frozen=True)
class Reset:
    """The cursor was past the high watermark: the topic was recreated, offsets start over."""

    partition: int
    cursor: int
    low: int
    high: int


@dataclass(frozen=True)
class Lost:
    """Retention deleted offsets [cursor, low) before they were handed out."""

    partition: int
    cursor: int
    low: int

    @property
    def count(self) -> int:
        return self.low - self.cursor


@dataclass(frozen=True)
class Plan:
    runs: tuple[PlannedRun, ...]
    cursor: Cursor
    resets: tuple[Reset, ...] = ()
    lost: tuple[Lost, ...] = ()
    new_partitions: tuple[int, ...] = ()
    vanished_partitions: tuple[int, ...] = ()
    topic_changed_from: str | None = None
    # Offsets past the new cursor, left for later ticks.
    backlog: int = 0

    @property
    def size(self) -> int:
        return sum(run.size for run in self.runs)


def plan_runs(
    cursor: Cursor,
    watermarks: dict[int, tuple[int, int]],
    *,
    topic: str,
    max_per_run: int,
    budget: int,
) -> Plan:
    """Runs for offsets between the cursor and the high watermarks, and the cursor after them.

    At most `budget` offsets are handed out, shared fairly between partitions; a positive
    budget always hands out at least one offset when any is waiting. Each run covers at most
    `max_per_run` offsets, possibly from several partitions, and a tick plans at most
    MAX_RUNS_PER_TICK runs.
    """
    topic_changed_from = cursor.topic if cursor.topic not in (None, topic) else None
    known = {} if topic_changed_from else cursor.offsets
    starts, resets, lost, new = _starting_offsets(known, watermarks)
    vanished = tuple(sorted(set(known) - set(watermarks)))
    generation = cursor.generation
    # A vanished partition also means the topic was recreated; offsets may come again.
    if topic_changed_from or resets or vanished:
        generation += 1

    waiting = {p: watermarks[p][1] - start for p, start in starts.items()}
    limit = min(budget, max_per_run * MAX_RUNS_PER_TICK)
    takes = share_fairly(waiting, limit)
    ranges = [OffsetRange(p, starts[p], starts[p] + n) for p, n in sorted(takes.items()) if n]
    prefix = f"{topic}/g{generation}"
    return Plan(
        runs=tuple(_pack(ranges, max_per_run, prefix)),
        cursor=Cursor(topic, generation, {p: starts[p] + takes[p] for p in starts}),
        resets=resets,
        lost=lost,
        new_partitions=new,
        vanished_partitions=vanished,
        topic_changed_from=topic_changed_from,
        backlog=sum(waiting.values()) - sum(takes.values()),
    )


def _starting_offsets(
    known: dict[int, int], watermarks: dict[int, tuple[int, int]]
) -> tuple[dict[int, int], tuple[Reset, ...], tuple[Lost, ...], tuple[int, ...]]:
    """Where each partition resumes, and why that differs from the cursor where it does."""
    starts: dict[int, int] = {}
    resets: list[Reset] = []
    lost: list[Lost] = []
    new: list[int] = []
    for partition, (low, high) in sorted(watermarks.items()):
        offset = known.get(partition)
        if offset is None:
            new.append(partition)
            starts[partition] = low
        elif offset > high:
            resets.append(Reset(partition, offset, low, high))
            starts[partition] = low
        elif offset < low:
            lost.append(Lost(partition, offset, low))
            starts[partition] = low
        else:
            starts[partition] = offset
    return starts, tuple(resets), tuple(lost), tuple(new)


def share_fairly(waiting: dict[int, int], limit: int) -> dict[int, int]:
    """Split `limit` offsets max-min fairly: each partition gets an equal share, or all it
    has waiting when that is less, and what it leaves goes to the others.

    Leftover single offsets go to the longest backlog first, so under a tight budget the
    partition that is furthest behind catches up instead of the lowest-numbered one.
    """
    takes = dict.fromkeys(waiting, 0)
    remaining = min(limit, sum(waiting.values()))
    hungry = sorted((p for p, n in waiting.items() if n), key=lambda p: (-waiting[p], p))
    while remaining > 0:
        share = max(1, remaining // len(hungry))
        for partition in hungry:
            give = min(share, waiting[partition] - takes[partition], remaining)
            takes[partition] += give
            remaining -= give
        hungry = [p for p in hungry if takes[p] < waiting[p]]
    return takes


def _pack(ranges: list[OffsetRange], max_per_run: int, prefix: str) -> list[PlannedRun]:
    """Fill runs up to `max_per_run` offsets, splitting a range across runs where needed.

    Launching a run costs seconds, so a few offsets from each of several partitions share
    one run rather than each paying for its own.
    """
    runs: list[PlannedRun] = []
    current: list[OffsetRange] = []
    room = max_per_run
    for whole in ranges:
        start = whole.start
        while start < whole.end:
            end = min(whole.end, start + room)
            current.append(OffsetRange(whole.partition, start, end))
            room -= end - start
            start = end
            if room == 0:
                runs.append(_run(current, prefix))
                current, room = [], max_per_run
    if current:
        runs.append(_run(current, prefix))
    return runs


def _run(ranges: list[OffsetRange], prefix: str) -> PlannedRun:
    parts = ",".join(f"p{r.partition}:{r.start}-{r.end}" for r in ranges)
    return PlannedRun(tuple(ranges), f"{prefix}/{parts}")
