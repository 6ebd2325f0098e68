"""The reducer end to end in process: events on the real broker, landed into the real
PostgreSQL, aggregated by the Dagster assets, compared with an independent computation."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events import synthetic
from bridge_dagster.events.envelope import EventEnvelope, make_event
from bridge_dagster.events.types import EventType
from bridge_dagster.reducer.partitions import partition_key
from tests.conftest import Topics
from tests.integration.reducer_expected import Expected
from tests.integration.reducer_harness import (
    BASE_HOUR,
    land_all,
    materialize_range,
    produce_events,
    reducer_definitions,
    run_sensor_requests,
)
from tests.integration.workflow_harness import read_all

pytestmark = pytest.mark.integration

DEFAULT_NAMESPACE = "omninode.bridge"
NAMESPACES = ["alpha.team", "beta.team", "gamma.team"]
FIRST, LAST = BASE_HOUR, BASE_HOUR + timedelta(hours=2)

# Columns each table is compared on: its key, then its values (computed_at and the like are
# when, not what, and the projection's bookkeeping columns are internal).
TABLES = {
    "reducer_namespace_hourly": (
        ("hour", "namespace"),
        (
            "events",
            "workflows_started",
            "workflows_completed",
            "workflows_failed",
            "stamps_created",
            "bytes_stamped",
            "distinct_content_types",
            "latency_avg_ms",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_p99_ms",
        ),
    ),
    "reducer_content_type_hourly": (
        ("hour", "namespace", "content_type"),
        ("workflows_completed", "bytes_stamped", "latency_p95_ms"),
    ),
    "reducer_size_bucket_hourly": (
        ("hour", "namespace", "size_bucket"),
        ("workflows_completed", "bytes_stamped"),
    ),
    "reducer_throughput_minutely": (
        ("minute", "namespace"),
        ("workflows_completed", "stamps_created", "stamps_per_s"),
    ),
    "reducer_workflow_projection": (
        ("workflow_id",),
        ("namespace", "state", "transitions", "first_event_at", "last_event_at", "latency_ms"),
    ),
    "reducer_bridge_state": (
        ("namespace",),
        (
            "events",
            "workflows_completed",
            "workflows_failed",
            "stamps_created",
            "bytes_stamped",
            "first_hour",
            "last_hour",
        ),
    ),
}


@dataclass
class Reducer:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    engine: Engine
    bootstrap: str
    topics: Topics

    def send(self, events: list[EventEnvelope]) -> None:
        produce_events(self.bootstrap, self.topics.workflow, events)

    def land(self) -> Any:
        return land_all(self.engine, self.bootstrap, self.topics.workflow, batch_size=700)

    def table(self, name: str) -> dict[tuple, dict[str, Any]]:
        keys, values = TABLES[name]
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {', '.join(keys + values)} FROM {name}")).all()
        return {
            tuple(_plain(v) for v in row[: len(keys)]): dict(
                zip(values, row[len(keys) :], strict=True)
            )
            for row in rows
        }


@pytest.fixture
def reducer(pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics) -> Iterator[Reducer]:
    reducer_topic = f"{topics.workflow}.reducer"
    ensure_topics(kafka_bootstrap, [reducer_topic, f"{topics.workflow}.dlq"])
    defs = reducer_definitions(pg_address, kafka_bootstrap, topics.workflow, reducer_topic)
    engine = create_engine(pg_address.url())
    with dg.instance_for_test() as instance:
        yield Reducer(defs, instance, engine, kafka_bootstrap, topics)
    engine.dispose()


def _plain(value: Any) -> Any:
    return str(value) if not isinstance(value, datetime | str) else value


def stream() -> tuple[list[EventEnvelope], list[EventEnvelope]]:
    """A first wave and a late wave of events.

    Three namespaces, four content types, every size bucket, 15% failures. The late wave
    holds the whole story of 40 workflows of the first hour, which the first wave lacks,
    and the namespaced rest of 12 workflows whose opening transition (which names no
    namespace) came in the first wave; both waves repeat a tenth of their events.
    """
    flows = synthetic.workflows(
        900,
        start=FIRST,
        spread=timedelta(hours=2, minutes=59),
        namespaces=NAMESPACES,
        failure_rate=0.15,
    )
    early_hour = [f for f in flows if f.started_at < FIRST + timedelta(minutes=50)]
    late_flows = {f.workflow_id for f in early_hour[:40]}
    split_flows = {f.workflow_id for f in early_hour[40:52]}
    first: list[EventEnvelope] = []
    late: list[EventEnvelope] = []
    for flow in flows:
        events = synthetic.events(flow, environment="test")
        if flow.workflow_id in late_flows:
            late += events
        elif flow.workflow_id in split_flows:
            first.append(events[0])
            late += events[1:]
        else:
            first += events
    rng = random.Random(3)
    return first + rng.sample(first, len(first) // 10), late + rng.sample(late, len(late) // 10)


def orphan_events() -> list[EventEnvelope]:
    """Events of workflows that never name a namespace: they count under the default."""
    out = []
    for i in range(5):
        workflow_id = synthetic.uuid.UUID(int=i + 1, version=4)
        out.append(
            make_event(
                EventType.WORKFLOW_STATE_TRANSITION,
                {"workflow_id": str(workflow_id), "from_state": None, "to_state": "pending"},
                correlation_id=workflow_id,
                environment="test",
                timestamp=FIRST + timedelta(minutes=10 + i),
            )
        )
    return out


def assert_tables_match(reducer: Reducer, expected: Expected) -> None:
    wanted = {
        "reducer_namespace_hourly": expected.namespace_hourly(),
        "reducer_content_type_hourly": expected.content_type_hourly(),
        "reducer_size_bucket_hourly": expected.size_bucket_hourly(),
        "reducer_throughput_minutely": expected.throughput_minutely(),
        "reducer_workflow_projection": {
            (str(k[0]),): v for k, v in expected.workflow_projection().items()
        },
        "reducer_bridge_state": expected.bridge_state(),
    }
    for name, rows in wanted.items():
        got = reducer.table(name)
        assert set(got) == set(rows), f"{name}: keys differ: {set(got) ^ set(rows)}"
        for row_key, values in rows.items():
            for column, value in values.items():
                assert _same(got[row_key][column], value), (
                    f"{name}{row_key}.{column}: table has {got[row_key][column]!r},"
                    f" the events say {value!r}"
                )


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and got is not None:
        return math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-9)
    return got == want


def snapshot(reducer: Reducer) -> dict[str, dict[tuple, dict[str, Any]]]:
    return {name: reducer.table(name) for name in TABLES}


def test_every_table_matches_an_independent_computation_late_events_included(
    reducer: Reducer,
) -> None:
    first, late = stream()
    orphans = orphan_events()
    reducer.send(first + orphans)
    assert reducer.land().landed == len({e.event_id for e in first + orphans})
    materialize_range(reducer.defs, reducer.instance, FIRST, LAST)

    reducer.send(late)
    landed = reducer.land()
    assert landed.landed == len({e.event_id for e in late})
    # No manual step: the refresh sensor finds the hours the late wave touched.
    requests = run_sensor_requests(reducer.defs, reducer.instance, "reducer_refresh_sensor")
    assert requests, "the late wave left no hour stale"

    assert_tables_match(reducer, Expected(first + orphans + late, DEFAULT_NAMESPACE))
    default = reducer.table("reducer_namespace_hourly")[(FIRST, DEFAULT_NAMESPACE)]
    assert default["events"] == len(orphans)


def test_rematerializing_backfilling_and_resending_change_nothing(reducer: Reducer) -> None:
    first, late = stream()
    reducer.send(first + late)
    reducer.land()
    materialize_range(reducer.defs, reducer.instance, FIRST, LAST)
    before = snapshot(reducer)

    materialize_range(
        reducer.defs, reducer.instance, FIRST + timedelta(hours=1), FIRST + timedelta(hours=1)
    )
    materialize_range(
        reducer.defs, reducer.instance, FIRST - timedelta(hours=2), LAST + timedelta(hours=1)
    )
    reducer.send(first + late)
    resent = reducer.land()
    run_sensor_requests(reducer.defs, reducer.instance, "reducer_refresh_sensor")

    assert resent.landed == 0 and resent.duplicates == resent.read
    assert snapshot(reducer) == before


def test_the_refresh_sensor_asks_for_nothing_once_every_hour_is_aggregated(
    reducer: Reducer,
) -> None:
    first, _ = stream()
    reducer.send(first)
    reducer.land()
    assert run_sensor_requests(reducer.defs, reducer.instance, "reducer_refresh_sensor")
    assert run_sensor_requests(reducer.defs, reducer.instance, "reducer_refresh_sensor") == []


def test_a_materialization_reports_numbers_dagster_plots(reducer: Reducer) -> None:
    first, _ = stream()
    reducer.send(first)
    reducer.land()
    result = reducer.defs.resolve_job_def("reducer_hourly").execute_in_process(
        instance=reducer.instance, partition_key=partition_key(FIRST)
    )
    [materialization] = [
        m for m in result.asset_materializations_for_node("reducer_namespace_hourly")
    ]
    metadata = materialization.metadata
    for name in ("rows", "events", "completed", "failed", "latency_p95_ms", "seconds"):
        assert isinstance(metadata[name], dg.IntMetadataValue | dg.FloatMetadataValue), name
    expected = Expected(first, DEFAULT_NAMESPACE).namespace_hourly()
    assert metadata["events"].value == sum(
        row["events"] for (hour, _), row in expected.items() if hour == FIRST
    )
    assert isinstance(metadata["preview"], dg.TableMetadataValue)


def test_each_materialization_publishes_started_and_completed_reducer_events(
    reducer: Reducer,
) -> None:
    first, _ = stream()
    reducer.send(first)
    reducer.land()
    materialize_range(reducer.defs, reducer.instance, FIRST, FIRST)
    published = [
        EventEnvelope.model_validate_json(value)
        for _, _, _, value in read_all(reducer.bootstrap, f"{reducer.topics.workflow}.reducer")
    ]
    by_asset: dict[str, list[str]] = {}
    for event in published:
        by_asset.setdefault(event.payload["asset"], []).append(event.event_type)
    assert by_asset["reducer_namespace_hourly"] == ["aggregation_started", "aggregation_completed"]
    assert len(by_asset) == 5


def test_a_namespace_total_that_disagrees_with_the_events_fails_its_check(
    reducer: Reducer,
) -> None:
    first, _ = stream()
    reducer.send(first)
    reducer.land()
    materialize_range(reducer.defs, reducer.instance, FIRST, LAST)
    with reducer.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE reducer_namespace_hourly SET workflows_completed = workflows_completed + 2"
                " WHERE hour = :h AND namespace = :ns"
            ),
            {"h": FIRST, "ns": NAMESPACES[0]},
        )
    evaluation = run_check(reducer, "reducer_namespace_hourly", "namespace_totals_match_events")
    assert not evaluation.passed
    assert evaluation.metadata["mismatches"].value == 1
    assert NAMESPACES[0] in evaluation.metadata["disagreeing"].value


def test_a_projection_behind_its_events_fails_its_check(reducer: Reducer) -> None:
    first, _ = stream()
    reducer.send(first)
    reducer.land()
    materialize_range(reducer.defs, reducer.instance, FIRST, LAST)
    with reducer.engine.begin() as conn:
        workflow_id = conn.execute(
            text(
                "UPDATE reducer_workflow_projection SET state = 'pending', state_rank = 1"
                " WHERE workflow_id = (SELECT workflow_id FROM reducer_workflow_projection"
                " WHERE state = 'completed' LIMIT 1) RETURNING workflow_id"
            )
        ).scalar_one()
    evaluation = run_check(reducer, "reducer_workflow_projection", "projection_not_behind_events")
    assert not evaluation.passed
    assert str(workflow_id) in evaluation.metadata["behind"].value


def test_an_hour_with_events_but_no_stats_fails_its_check(reducer: Reducer) -> None:
    first, _ = stream()
    reducer.send(first)
    reducer.land()
    materialize_range(reducer.defs, reducer.instance, FIRST, FIRST)
    with reducer.engine.begin() as conn:
        conn.execute(
            text("UPDATE reducer_landed_hours SET last_landed_at = now() - interval '1 hour'")
        )
    evaluation = run_check(reducer, "reducer_namespace_hourly", "every_landed_hour_has_stats")
    assert not evaluation.passed
    assert evaluation.metadata["hours_without_stats"].value == 2


def test_checks_pass_on_a_correct_materialization(reducer: Reducer) -> None:
    first, late = stream()
    reducer.send(first + late)
    reducer.land()
    result = materialize_range(reducer.defs, reducer.instance, FIRST, LAST)
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 3
    assert all(e.passed for e in evaluations), [e.metadata for e in evaluations if not e.passed]


def run_check(reducer: Reducer, asset: str, name: str) -> dg.AssetCheckEvaluation:
    job = dg.define_asset_job(
        f"check_{name}",
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey(asset), name)),
    )
    defs = dg.Definitions.merge(reducer.defs, dg.Definitions(jobs=[job]))
    # A failing blocking check fails its step; the evaluation is what the UI shows.
    result = defs.resolve_job_def(job.name).execute_in_process(
        instance=reducer.instance, raise_on_error=False
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_bridge_state_sums_every_materialized_hour(reducer: Reducer) -> None:
    first, _ = stream()
    reducer.send(first)
    reducer.land()
    materialize_range(reducer.defs, reducer.instance, FIRST, FIRST)
    one_hour = reducer.table("reducer_bridge_state")[(NAMESPACES[1],)]
    materialize_range(
        reducer.defs, reducer.instance, FIRST + timedelta(hours=1), FIRST + timedelta(hours=1)
    )
    two_hours = reducer.table("reducer_bridge_state")[(NAMESPACES[1],)]
    hourly = reducer.table("reducer_namespace_hourly")
    assert (one_hour["first_hour"], one_hour["last_hour"]) == (FIRST, FIRST)
    assert (two_hours["first_hour"], two_hours["last_hour"]) == (FIRST, FIRST + timedelta(hours=1))
    assert two_hours["workflows_completed"] == sum(
        row["workflows_completed"] for (_, ns), row in hourly.items() if ns == NAMESPACES[1]
    )
