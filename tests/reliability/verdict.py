"""A scenario judged from what a user sees: the workflow topic, the request dead-letter
topic, the `workflow_executions` and `dead_letters` tables and Dagster's tick and run
storage; never from the stack's internal tables."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from dagster._core.scheduler.instigation import TickStatus

from bridge_dagster.events.topics import parse_dead_letter
from tests.reliability.load import Deliveries, Record, read_from, watermarks
from tests.reliability.stack import ReliabilityStack

COMPLETED_TYPES = {"stamp_workflow_completed"}
FAILED_TYPES = {"stamp_workflow_failed"}
# A dead letter's reason starts with its code, e.g. "bad_stamp_type: …".
REASON = re.compile(r"^[a-z][a-z0-9_]*: \S")
# A failed tick whose error says the database, the broker or the daemon's own code server
# was away is the fault's doing; anything else is the input's (or a bug's).
INFRA_MARKERS = (
    "OperationalError",
    "InterfaceError",
    "could not connect",
    "connection",
    "Connection",
    "server closed",
    "terminating",
    "the database system is",
    "KafkaException",
    "_TRANSPORT",
    "timed out",
    "Timeout",
    "DagsterUserCodeUnreachableError",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
)
MAX_EVIDENCE = 10


@dataclass(frozen=True)
class Mark:
    """Where a scenario starts: the time and both topics' ends, so it judges its own events."""

    started: float
    workflow: dict[int, int]
    dlq: dict[int, int]


def mark(stack: ReliabilityStack) -> Mark:
    return Mark(
        time.time(),
        watermarks(stack.bootstrap, stack.topics.workflow),
        watermarks(stack.bootstrap, stack.topics.requests_dlq),
    )


@dataclass
class Expected:
    """What the scenario sent: valid workflows that must complete, malformed messages (by
    position) that must be dead-lettered, and workflows allowed to fail with given codes."""

    valid: set[UUID] = field(default_factory=set)
    malformed: dict[tuple[int, int], str] = field(default_factory=dict)
    may_fail: dict[UUID, frozenset[str]] = field(default_factory=dict)
    requests: int = 0
    # Where each valid (or allowed-to-fail) request landed on the request topic.
    requests_at: dict[tuple[int, int], UUID] = field(default_factory=dict)

    def add(self, deliveries: Deliveries) -> None:
        self.requests += len(deliveries.delivered)
        for d in deliveries.delivered:
            workflow_id = d.message.workflow_id
            if workflow_id is None:
                self.malformed[d.partition, d.offset] = d.message.kind
                continue
            self.requests_at[d.partition, d.offset] = workflow_id
            if workflow_id not in self.may_fail:
                self.valid.add(workflow_id)

    def tracked(self) -> set[UUID]:
        return self.valid | set(self.may_fail)


@dataclass
class Verdict:
    scenario: str
    requests: int
    bad_inputs: int
    seconds: float = 0.0
    lost: int = 0
    duplicated: int = 0
    phantom_events: int = 0
    failed_ticks: int = 0
    # Problems outside the four counts: letters without a reason, unexpected failure codes.
    other_problems: int = 0
    evidence: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    details: dict[str, Any] = field(default_factory=dict)

    def note(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        if len(self.evidence[kind]) < MAX_EVIDENCE:
            self.evidence[kind].append(text)

    @property
    def clean(self) -> bool:
        problems = (self.lost, self.duplicated, self.phantom_events, self.failed_ticks)
        return not any(problems) and not self.other_problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "bad_inputs": self.bad_inputs,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "phantom_events": self.phantom_events,
            "failed_ticks": self.failed_ticks,
            "other_problems": self.other_problems,
            "counts": dict(self.counts),
            "evidence": dict(self.evidence),
            "details": self.details,
        }

    def report(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=str)


def settle(stack: ReliabilityStack, expected: Expected, timeout_s: float) -> bool:
    """Wait until no stamp_workflow run is in flight, every tracked workflow has ended and
    every malformed message is a dead letter the relay has dealt with; False on timeout."""
    tracked = [str(w) for w in expected.tracked()]
    sources = [f"{stack.topics.requests}/{p}/{o}" for p, o in expected.malformed]

    def settled() -> bool:
        if stack.runs_in_flight():
            return False
        [(ended,)] = stack.query(
            "SELECT count(*) FROM workflow_executions"
            " WHERE workflow_id = ANY(CAST(:ids AS uuid[])) AND state IN ('completed', 'failed')",
            ids=tracked,
        )
        if ended < len(tracked):
            return False
        [(lettered,)] = stack.query(
            "SELECT count(DISTINCT source) FROM dead_letters WHERE source = ANY(:sources)"
            " AND (sent_at IS NOT NULL OR send_error IS NOT NULL)",
            sources=sources,
        )
        return lettered >= len(sources)

    try:
        stack.wait_for(settled, timeout_s, "settled stack")
    except AssertionError:
        stack.check_daemon()
        return False
    return True


@dataclass(frozen=True)
class Event:
    record: Record
    event_id: str
    event_type: str
    workflow_id: UUID | None
    to_state: str | None

    @classmethod
    def parse(cls, record: Record) -> Event:
        envelope = json.loads(record.value)
        payload = envelope.get("payload") or {}
        correlation = envelope.get("correlation_id")
        return cls(
            record,
            envelope["event_id"],
            envelope["event_type"],
            UUID(correlation) if correlation else None,
            payload.get("to_state"),
        )

    @property
    def terminal_state(self) -> str | None:
        """The terminal state this event says the workflow reached, if any."""
        if self.event_type in COMPLETED_TYPES or self.to_state == "completed":
            return "completed"
        if self.event_type in FAILED_TYPES or self.to_state == "failed":
            return "failed"
        return None


def judge(stack: ReliabilityStack, scenario: str, start: Mark, expected: Expected) -> Verdict:
    verdict = Verdict(scenario, expected.requests, len(expected.malformed))
    events = [
        Event.parse(r) for r in read_from(stack.bootstrap, stack.topics.workflow, start.workflow)
    ]
    rows = _rows(stack, expected.tracked() | {e.workflow_id for e in events if e.workflow_id})
    verdict.details["events"] = len(events)
    verdict.details["states"] = _state_counts(rows, expected.tracked())
    _judge_workflows(verdict, expected, rows, events)
    _judge_publications(verdict, events)
    _judge_phantoms(verdict, events, rows)
    letters = read_from(stack.bootstrap, stack.topics.requests_dlq, start.dlq)
    _judge_letters(verdict, expected, letters, stack.topics.requests, rows)
    _judge_ticks(verdict, stack, start.started)
    return verdict


def _rows(stack: ReliabilityStack, ids: set[UUID]) -> dict[UUID, tuple[str, str | None]]:
    found = stack.query(
        "SELECT workflow_id, state, error FROM workflow_executions"
        " WHERE workflow_id = ANY(CAST(:ids AS uuid[]))",
        ids=[str(w) for w in ids],
    )
    return {w: (state, error) for w, state, error in found}


def _state_counts(rows: dict[UUID, tuple[str, str | None]], ids: set[UUID]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for w in ids:
        counts[rows[w][0] if w in rows else "missing"] += 1
    return dict(counts)


def _judge_workflows(
    verdict: Verdict,
    expected: Expected,
    rows: dict[UUID, tuple[str, str | None]],
    events: list[Event],
) -> None:
    """Each valid workflow completed once: its row completed and one completed event id."""
    completed_ids: dict[UUID, set[str]] = defaultdict(set)
    for e in events:
        if e.event_type in COMPLETED_TYPES and e.workflow_id is not None:
            completed_ids[e.workflow_id].add(e.event_id)
    for w in expected.tracked():
        state, error = rows.get(w, ("missing", None))
        ids = completed_ids.get(w, set())
        if w in expected.may_fail and state == "failed":
            code = (error or "").partition(":")[0]
            if code not in expected.may_fail[w]:
                verdict.other_problems += 1
                verdict.note("unexpected_failure", f"workflow {w} failed with {error!r}")
            continue
        if state != "completed" or not ids:
            verdict.lost += 1
            verdict.note(
                "lost",
                f"workflow {w}: row {state} ({error}), {len(ids)} stamp_workflow_completed events",
            )
        if len(ids) > 1:
            verdict.duplicated += len(ids) - 1
            verdict.note("duplicated", f"workflow {w}: completed event ids {sorted(ids)}")


def _judge_publications(verdict: Verdict, events: list[Event]) -> None:
    """A re-published event id must be byte-identical (key and value) to its first one."""
    first: dict[str, Event] = {}
    for e in events:
        earlier = first.setdefault(e.event_id, e)
        if earlier is e:
            continue
        verdict.counts["republished"] += 1
        if (earlier.record.key, earlier.record.value) != (e.record.key, e.record.value):
            verdict.duplicated += 1
            verdict.note(
                "republished_different",
                f"event {e.event_id} ({e.event_type}) of workflow {e.workflow_id} at"
                f" [{e.record.partition}] {e.record.offset} differs from offset"
                f" {earlier.record.offset} in {_differing(earlier.record, e.record)}",
            )


def _differing(a: Record, b: Record) -> list[str]:
    left, right = json.loads(a.value), json.loads(b.value)
    fields = [
        k for k in left.keys() | right.keys() if k != "payload" and left.get(k) != right.get(k)
    ]
    payload_a, payload_b = left.get("payload") or {}, right.get("payload") or {}
    fields += [
        f"payload.{k}"
        for k in payload_a.keys() | payload_b.keys()
        if payload_a.get(k) != payload_b.get(k)
    ]
    return sorted(fields) + (["key"] if a.key != b.key else [])


def _judge_phantoms(
    verdict: Verdict, events: list[Event], rows: dict[UUID, tuple[str, str | None]]
) -> None:
    """Every event belongs to a committed change: its workflow exists, and a completed or
    failed event only for a workflow the database holds in that state."""
    seen: set[str] = set()
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        row = rows.get(e.workflow_id) if e.workflow_id else None
        if row is None:
            verdict.phantom_events += 1
            verdict.note(
                "phantom", f"{e.event_type} {e.event_id}: no row for workflow {e.workflow_id}"
            )
        elif e.terminal_state is not None and e.terminal_state != row[0]:
            verdict.phantom_events += 1
            verdict.note(
                "phantom",
                f"{e.event_type} {e.event_id} says {e.terminal_state} but workflow"
                f" {e.workflow_id} is {row[0]} ({row[1]})",
            )


def _judge_letters(
    verdict: Verdict,
    expected: Expected,
    letters: list[Record],
    request_topic: str,
    rows: dict[UUID, tuple[str, str | None]],
) -> None:
    """Each malformed message, and the request of each workflow that failed, dead-lettered
    exactly once (one distinct record) with a reason; no completed request dead-lettered."""
    by_position: dict[tuple[int, int], set[bytes]] = defaultdict(set)
    for record in letters:
        letter = parse_dead_letter(record.value)
        if letter["topic"] == request_topic:
            by_position[letter["partition"], letter["offset"]].add(record.value)
            if not REASON.match(letter["reason"]):
                verdict.other_problems += 1
                verdict.note("letter_without_reason", f"{record.offset}: {letter['reason']!r}")
    failed = {
        position: "failed_request"
        for position, w in expected.requests_at.items()
        if rows.get(w, ("missing",))[0] == "failed"
    }
    for position, kind in {**expected.malformed, **failed}.items():
        values = by_position.get(position, set())
        if not values:
            verdict.lost += 1
            verdict.note("not_dead_lettered", f"{kind} message at {position}")
        elif len(values) > 1:
            verdict.duplicated += len(values) - 1
            verdict.note("letter_duplicated", f"{kind} at {position}: {len(values)} records")
    for position in by_position.keys() & (expected.requests_at.keys() - failed.keys()):
        verdict.other_problems += 1
        verdict.note("unfailed_request_dead_lettered", f"request at {position}")
    verdict.details["dead_letters"] = len(letters)


def _judge_ticks(verdict: Verdict, stack: ReliabilityStack, after: float) -> None:
    for tick in stack.sensor_ticks(after=after, statuses=[TickStatus.FAILURE]):
        error = tick.error.to_string() if tick.error else "(no error recorded)"
        if any(marker in error for marker in INFRA_MARKERS):
            verdict.note("tick_failed_infrastructure", error.splitlines()[0][:300])
        else:
            verdict.failed_ticks += 1
            verdict.note("tick_failed", error[:1000])
