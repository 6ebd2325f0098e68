"""The embedded stack's Dagster instance: batches never take the reducer's run slots.

The queue's own counter decides what it would dequeue; no daemon is needed to ask it.
"""

from pathlib import Path

import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator.queued_run_coordinator import RunQueueConfig
from dagster._core.storage.dagster_run import DagsterRun
from dagster._utils.tags import TagConcurrencyLimitsCounter

from bridge_dagster.devstack.stack import instance_config
from bridge_dagster.settings import load_settings


@pytest.fixture
def queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunQueueConfig:
    settings = load_settings({"ORCHESTRATOR_CONCURRENCY": "4", "REDUCER_CONCURRENCY": "2"})
    (tmp_path / "dagster.yaml").write_text(instance_config(settings))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://u:p@h/d")
    coordinator = InstanceRef.from_dir(str(tmp_path)).run_coordinator
    assert coordinator is not None
    return coordinator.get_run_queue_config()


def run(kind: str) -> DagsterRun:
    return DagsterRun(job_name=kind, tags={"bridge/kind": kind})


def test_the_queue_has_a_slot_for_every_kind_and_one_for_maintenance(queue: RunQueueConfig) -> None:
    # 4 batches + 1 landing + 2 aggregations + 1 maintenance run.
    assert queue.max_concurrent_runs == 8


def test_a_full_set_of_batches_leaves_landing_and_aggregation_their_slots(
    queue: RunQueueConfig,
) -> None:
    in_progress = [run("stamping") for _ in range(4)]
    counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, in_progress)
    assert counter.is_blocked(run("stamping"))
    assert not counter.is_blocked(run("landing"))
    assert not counter.is_blocked(run("reducer"))


def test_a_second_landing_waits_for_the_first(queue: RunQueueConfig) -> None:
    counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [run("landing")])
    assert counter.is_blocked(run("landing"))
