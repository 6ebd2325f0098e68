"""The reducer tables computed independently, in plain Python, from the events themselves.

Written from the reducer issue's definitions, not from the SQL: if the two disagree, one of
them misreads the definitions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bridge_dagster.events.envelope import EventEnvelope

RANK = {"pending": 1, "processing": 2, "completed": 3, "failed": 4}
STATES = {v: k for k, v in RANK.items()}
MIB = 1024 * 1024


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def hour_of(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def size_bucket(size: int | None) -> str:
    size = size or 0
    if size <= MIB:
        return "le_1mib"
    if size <= 10 * MIB:
        return "le_10mib"
    if size <= 100 * MIB:
        return "le_100mib"
    return "gt_100mib"


def event_state(e: EventEnvelope) -> str:
    if e.event_type == "workflow_state_transition":
        return e.payload["to_state"]
    return {
        "stamp_workflow_requested": "pending",
        "stamp_workflow_completed": "completed",
        "stamp_workflow_failed": "failed",
    }.get(e.event_type, "processing")


class Expected:
    """Every table, from the unique events (first copy of each event_id wins)."""

    def __init__(self, events: Iterable[EventEnvelope], default_namespace: str) -> None:
        unique: dict[Any, EventEnvelope] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        self.events = list(unique.values())
        named: dict[Any, str] = {}
        for e in self.events:
            if e.payload.get("namespace") is not None:
                named.setdefault(e.correlation_id, e.payload["namespace"])
        self.namespace = {
            e.event_id: e.payload.get("namespace") or named.get(e.correlation_id, default_namespace)
            for e in self.events
        }
        self.default_namespace = default_namespace

    def _completed(self) -> list[EventEnvelope]:
        return [e for e in self.events if e.event_type == "stamp_workflow_completed"]

    def namespace_hourly(self) -> dict[tuple, dict[str, Any]]:
        groups: dict[tuple, list[EventEnvelope]] = defaultdict(list)
        for e in self.events:
            groups[(hour_of(e.event_timestamp), self.namespace[e.event_id])].append(e)
        out = {}
        for group, events in groups.items():
            completed = [e for e in events if e.event_type == "stamp_workflow_completed"]
            latencies = [e.payload["latency_ms"] for e in completed]
            out[group] = {
                "events": len(events),
                "workflows_started": _count(events, "stamp_workflow_started"),
                "workflows_completed": len(completed),
                "workflows_failed": _count(events, "stamp_workflow_failed"),
                "stamps_created": _count(events, "metadata_stamp_created"),
                "bytes_stamped": sum(e.payload["file_size"] for e in completed),
                "distinct_content_types": len({e.payload["content_type"] for e in completed}),
                "latency_avg_ms": sum(latencies) / len(latencies) if latencies else None,
                "latency_p50_ms": percentile_cont(latencies, 0.50),
                "latency_p95_ms": percentile_cont(latencies, 0.95),
                "latency_p99_ms": percentile_cont(latencies, 0.99),
            }
        return out

    def content_type_hourly(self) -> dict[tuple, dict[str, Any]]:
        groups: dict[tuple, list[EventEnvelope]] = defaultdict(list)
        for e in self._completed():
            ns = self.namespace[e.event_id]
            groups[(hour_of(e.event_timestamp), ns, e.payload["content_type"])].append(e)
        return {
            group: {
                "workflows_completed": len(events),
                "bytes_stamped": sum(e.payload["file_size"] for e in events),
                "latency_p95_ms": percentile_cont([e.payload["latency_ms"] for e in events], 0.95),
            }
            for group, events in groups.items()
        }

    def size_bucket_hourly(self) -> dict[tuple, dict[str, Any]]:
        groups: dict[tuple, list[EventEnvelope]] = defaultdict(list)
        for e in self._completed():
            ns = self.namespace[e.event_id]
            groups[(hour_of(e.event_timestamp), ns, size_bucket(e.payload["file_size"]))].append(e)
        return {
            group: {
                "workflows_completed": len(events),
                "bytes_stamped": sum(e.payload["file_size"] for e in events),
            }
            for group, events in groups.items()
        }

    def throughput_minutely(self) -> dict[tuple, dict[str, Any]]:
        groups: dict[tuple, list[EventEnvelope]] = defaultdict(list)
        for e in self.events:
            if e.event_type in ("stamp_workflow_completed", "metadata_stamp_created"):
                minute = e.event_timestamp.astimezone(UTC).replace(second=0, microsecond=0)
                groups[(minute, self.namespace[e.event_id])].append(e)
        out = {}
        for group, events in groups.items():
            stamps = _count(events, "metadata_stamp_created")
            out[group] = {
                "workflows_completed": _count(events, "stamp_workflow_completed"),
                "stamps_created": stamps,
                "stamps_per_s": stamps / 60.0,
            }
        return out

    def workflow_projection(self) -> dict[tuple, dict[str, Any]]:
        by_workflow: dict[Any, list[EventEnvelope]] = defaultdict(list)
        for e in self.events:
            by_workflow[e.correlation_id].append(e)
        out = {}
        for workflow_id, events in by_workflow.items():
            completed = [e for e in events if e.event_type == "stamp_workflow_completed"]
            reached = {
                e.payload["to_state"] for e in events if e.event_type == "workflow_state_transition"
            }
            out[(workflow_id,)] = {
                "namespace": self.namespace[events[0].event_id],
                "state": STATES[max(RANK[event_state(e)] for e in events)],
                "transitions": len(reached),
                "first_event_at": min(e.event_timestamp for e in events),
                "last_event_at": max(e.event_timestamp for e in events),
                "latency_ms": completed[0].payload["latency_ms"] if completed else None,
            }
        return out

    def bridge_state(self) -> dict[tuple, dict[str, Any]]:
        totals: dict[tuple, dict[str, Any]] = {}
        for (hour, ns), row in sorted(self.namespace_hourly().items()):
            total = totals.setdefault(
                (ns,),
                {
                    "events": 0,
                    "workflows_completed": 0,
                    "workflows_failed": 0,
                    "stamps_created": 0,
                    "bytes_stamped": 0,
                    "first_hour": hour,
                    "last_hour": hour,
                },
            )
            for name in ("events", "workflows_completed", "workflows_failed", "stamps_created"):
                total[name] += row[name]
            total["bytes_stamped"] += row["bytes_stamped"]
            total["first_hour"] = min(total["first_hour"], hour)
            total["last_hour"] = max(total["last_hour"], hour)
        return totals


def _count(events: list[EventEnvelope], event_type: str) -> int:
    return sum(1 for e in events if e.event_type == event_type)
