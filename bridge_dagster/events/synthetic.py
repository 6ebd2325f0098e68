"""Synthetic workflow event streams, shaped exactly as stamp_workflow publishes them.

For tests and benchmarks of the reducer: generating a million events through the real
orchestrator would take longer than the thing being measured.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge_dagster.events.envelope import EventEnvelope, event_id_for, make_event
from bridge_dagster.events.types import EventType

MIB = 1024 * 1024
# One size in each of the original's buckets: le_1mib, le_10mib, le_100mib, gt_100mib.
SIZES = (2_048, 5 * MIB, 50 * MIB, 150 * MIB)
CONTENT_TYPES = ("text/x-python", "text/markdown", "application/json", "text/plain")
STEP_GAP = timedelta(milliseconds=3)


@dataclass(frozen=True)
class Workflow:
    workflow_id: uuid.UUID
    namespace: str
    content_type: str
    file_size: int
    started_at: datetime
    latency_ms: float
    fails: bool


def workflows(
    count: int,
    *,
    start: datetime,
    spread: timedelta,
    namespaces: Sequence[str],
    failure_rate: float = 0.1,
    seed: int = 7,
) -> list[Workflow]:
    """`count` workflows starting at random times in [start, start + spread)."""
    rng = random.Random(seed)
    return [
        Workflow(
            workflow_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            namespace=rng.choice(namespaces),
            content_type=rng.choice(CONTENT_TYPES),
            file_size=rng.choice(SIZES) + rng.randrange(1000),
            started_at=start + spread * rng.random(),
            latency_ms=round(rng.uniform(5, 2_000), 3),
            fails=rng.random() < failure_rate,
        )
        for _ in range(count)
    ]


def events(w: Workflow, environment: str = "synthetic") -> list[EventEnvelope]:
    """The events stamp_workflow publishes for `w`, in order, one STEP_GAP apart."""
    steps = _failed_steps(w) if w.fails else _completed_steps(w)
    return [
        make_event(
            event_type,
            {"workflow_id": str(w.workflow_id), **payload},
            correlation_id=w.workflow_id,
            event_id=event_id_for(w.workflow_id, event_type, seq),
            environment=environment,
            timestamp=w.started_at + STEP_GAP * i,
        )
        for i, (event_type, seq, payload) in enumerate(steps)
    ]


def stream(flows: Sequence[Workflow], environment: str = "synthetic") -> Iterator[EventEnvelope]:
    for w in flows:
        yield from events(w, environment)


def _transition(before: str | None, after: str, seq: int) -> tuple[EventType, int, dict[str, Any]]:
    payload = {"from_state": before, "to_state": after, "reason": "synthetic"}
    return EventType.WORKFLOW_STATE_TRANSITION, seq, payload


def _step(step: str, seq: int) -> tuple[EventType, int, dict[str, Any]]:
    return EventType.WORKFLOW_STEP_COMPLETED, seq, {"step": step}


def _opening(w: Workflow) -> list[tuple[EventType, int, dict[str, Any]]]:
    started = {"namespace": w.namespace, "content_type": w.content_type, "stamp_type": "rich"}
    return [
        _transition(None, "pending", 0),
        (EventType.STAMP_WORKFLOW_STARTED, 0, started),
        _transition("pending", "processing", 1),
        _step("validate", 0),
    ]


def _completed_steps(w: Workflow) -> list[tuple[EventType, int, dict[str, Any]]]:
    hashed = {"file_hash": "0" * 64, "file_size": w.file_size, "namespace": w.namespace}
    stamped = {"stamp_type": "rich", "file_hash": "0" * 64, "namespace": w.namespace}
    summary = {
        "namespace": w.namespace,
        "content_type": w.content_type,
        "file_size": w.file_size,
        "latency_ms": w.latency_ms,
        "steps": ["validate", "hash", "stamp", "record"],
    }
    return [
        *_opening(w),
        (EventType.BLAKE3_HASH_GENERATED, 0, hashed),
        _step("hash", 2),
        (EventType.METADATA_STAMP_CREATED, 0, stamped),
        _step("stamp", 3),
        _step("record", 4),
        _transition("processing", "completed", 2),
        (EventType.STAMP_WORKFLOW_COMPLETED, 0, summary),
    ]


def _failed_steps(w: Workflow) -> list[tuple[EventType, int, dict[str, Any]]]:
    failed = {"code": "hash_mismatch", "error": "synthetic", "step": "stamp"}
    return [
        *_opening(w),
        _transition("processing", "failed", 3),
        (EventType.STAMP_WORKFLOW_FAILED, 0, {**failed, "namespace": w.namespace}),
    ]
