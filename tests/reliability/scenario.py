"""One scenario's run: its mark on the topics, what it sent, and its verdict in the summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bridge_dagster.devstack.stack import PROJECT_ROOT
from tests.reliability.load import Deliveries, Outgoing, produce
from tests.reliability.stack import ReliabilityStack
from tests.reliability.verdict import Expected, Verdict, judge, mark, settle

SUMMARY_PATH = PROJECT_ROOT / "reliability-summary.json"
TOTALS = ("requests", "bad_inputs", "lost", "duplicated", "phantom_events", "failed_ticks")


class Summary:
    """Every verdict of the session, written to `path` after each one, so a suite that stops
    half-way still leaves what it found."""

    def __init__(self, path: Path = SUMMARY_PATH) -> None:
        self.path = path
        self.verdicts: list[Verdict] = []

    def add(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self.path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")

    def as_dict(self) -> dict[str, Any]:
        totals = {key: sum(getattr(v, key) for v in self.verdicts) for key in TOTALS}
        return {
            "requests": totals["requests"],
            "faults": [v.scenario for v in self.verdicts],
            **{key: totals[key] for key in TOTALS if key != "requests"},
            "scenarios": [v.as_dict() for v in self.verdicts],
        }


class Scenario:
    """Marks the topics when made; `send` records deliveries, `finish` judges them."""

    def __init__(self, stack: ReliabilityStack, summary: Summary, name: str) -> None:
        stack.check_daemon()
        self.stack = stack
        self.summary = summary
        self.name = name
        self.expected = Expected()
        self.details: dict[str, Any] = {}
        self.start = mark(stack)
        self._started = time.monotonic()

    def send(self, messages: Iterable[Outgoing], *, max_bytes: int | None = None) -> Deliveries:
        deliveries = produce(
            self.stack.bootstrap, self.stack.topics.requests, messages, max_bytes=max_bytes
        )
        self.expected.add(deliveries)
        return deliveries

    def finish(self, settle_timeout_s: float = 120) -> Verdict:
        settling = time.monotonic()
        settled = settle(self.stack, self.expected, settle_timeout_s)
        judging = time.monotonic()
        verdict = judge(self.stack, self.name, self.start, self.expected)
        verdict.seconds = time.monotonic() - self._started
        runs = self.stack.stamp_runs(after=self.start.started)
        verdict.details.update(
            self.details,
            runs=dict(Counter(r.status.value for r in runs)),
            settled=settled,
            settle_s=round(judging - settling, 1),
            judge_s=round(time.monotonic() - judging, 1),
        )
        self.summary.add(verdict)
        return verdict
