"""The reducer's sensors, schedule and day upkeep, driven as the daemon drives them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events import synthetic
from bridge_dagster.reducer.event_days import partition_name
from bridge_dagster.reducer.jobs import (
    SENSOR_LANDING_RUN_S,
    build_reducer_job,
    build_reducer_schedule,
    maintain_workflow_event_days,
)
from bridge_dagster.reducer.partitions import hourly_partitions, partition_key
from bridge_dagster.sensors.reducer_refresh import contiguous, hours_of_run, run_request
from tests.conftest import Topics
from tests.integration.reducer_harness import (
    BASE_HOUR,
    land_all,
    materialize_range,
    produce_events,
    reducer_definitions,
    run_sensor_requests,
)
from tests.integration.workflow_harness import count

pytestmark = pytest.mark.integration


@pytest.fixture
def defs(pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics) -> dg.Definitions:
    reducer_topic = f"{topics.workflow}.reducer"
    ensure_topics(kafka_bootstrap, [reducer_topic, f"{topics.workflow}.dlq"])
    return reducer_definitions(pg_address, kafka_bootstrap, topics.workflow, reducer_topic)


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str) -> object:
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        return defs.resolve_sensor_def(name)(context)


def reducer_run_of_base_hour(
    defs: dg.Definitions, instance: dg.DagsterInstance, status: dg.DagsterRunStatus
) -> None:
    """A reducer_hourly run of BASE_HOUR in `status`, as the daemon's run storage holds it."""
    job = defs.resolve_job_def("reducer_hourly")
    instance.create_run_for_job(
        job, status=status, tags={"dagster/partition": partition_key(BASE_HOUR)}
    )


def send(kafka_bootstrap: str, topics: Topics, workflows: int, start: datetime = BASE_HOUR) -> int:
    flows = synthetic.workflows(
        # A seed per start: the same seed would make the same workflow ids, landed once.
        workflows,
        start=start,
        spread=timedelta(minutes=30),
        namespaces=["n.a"],
        seed=int(start.timestamp()),
    )
    return produce_events(
        kafka_bootstrap, topics.workflow, synthetic.stream(flows, environment="test")
    )


def test_the_landing_sensor_asks_for_a_run_when_events_wait(
    defs: dg.Definitions, instance: dg.DagsterInstance, kafka_bootstrap: str, topics: Topics
) -> None:
    sent = send(kafka_bootstrap, topics, 10)
    request = tick(defs, instance, "workflow_event_landing_sensor")
    assert isinstance(request, dg.RunRequest)
    assert request.tags["bridge/lag"] == str(sent)


def test_the_landing_sensor_asks_its_run_to_keep_landing_a_pass_per_tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, kafka_bootstrap: str, topics: Topics
) -> None:
    send(kafka_bootstrap, topics, 3)
    request = tick(defs, instance, "workflow_event_landing_sensor")
    assert isinstance(request, dg.RunRequest)
    # The harness's sensor ticks every second.
    assert request.run_config["ops"]["land_events"]["config"] == {
        "keep_landing_s": SENSOR_LANDING_RUN_S,
        "every_s": 1.0,
    }


def test_a_landing_run_lands_what_arrives_while_it_runs_and_ends_when_idle(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    first = send(kafka_bootstrap, topics, 5)
    job = defs.resolve_job_def("land_workflow_events")
    # Passes 2 s apart: the run ends after two empty ones, so the later events have 4 s to
    # arrive even on a loaded machine.
    config = {"ops": {"land_events": {"config": {"keep_landing_s": 60.0, "every_s": 2.0}}}}
    outcome: list[dg.ExecuteInProcessResult] = []
    started = time.monotonic()
    runner = threading.Thread(
        target=lambda: outcome.append(job.execute_in_process(run_config=config, instance=instance))
    )
    runner.start()
    deadline = time.monotonic() + 30
    while count(engine, "SELECT count(*) FROM workflow_events") < first:
        assert time.monotonic() < deadline, "the run's first pass landed nothing"
        time.sleep(0.2)
    later = send(kafka_bootstrap, topics, 4, start=BASE_HOUR + timedelta(minutes=30))
    # keep_landing_s bounds the run to a minute however slow its passes are.
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert outcome[0].success
    assert count(engine, "SELECT count(*) FROM workflow_events") == first + later
    # Two empty passes ended it, long before its minute.
    assert time.monotonic() - started < 40
    metadata = next(
        e.step_output_data.metadata for e in outcome[0].all_events if e.is_successful_output
    )
    assert metadata["passes"].value >= 3
    assert metadata["events_landed"].value == first + later


def test_the_landing_sensor_skips_once_landing_has_caught_up(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    send(kafka_bootstrap, topics, 10)
    assert run_sensor_requests(defs, instance, "workflow_event_landing_sensor")
    skipped = tick(defs, instance, "workflow_event_landing_sensor")
    assert isinstance(skipped, dg.SkipReason)
    assert "caught up" in skipped.skip_message
    assert count(engine, "SELECT count(*) FROM workflow_events") > 0


def test_the_landing_sensor_waits_while_a_landing_run_has_not_ended(
    defs: dg.Definitions, instance: dg.DagsterInstance, kafka_bootstrap: str, topics: Topics
) -> None:
    send(kafka_bootstrap, topics, 5)
    job = defs.resolve_job_def("land_workflow_events")
    instance.create_run_for_job(job, status=dg.DagsterRunStatus.NOT_STARTED)
    skipped = tick(defs, instance, "workflow_event_landing_sensor")
    assert isinstance(skipped, dg.SkipReason) and "landing run" in skipped.skip_message


def test_the_landing_sensor_names_the_setting_when_the_broker_is_unreachable(
    pg_address: PostgresAddress, instance: dg.DagsterInstance, topics: Topics
) -> None:
    defs = reducer_definitions(pg_address, "127.0.0.1:1", topics.workflow, "unused")
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        skipped = defs.resolve_sensor_def("workflow_event_landing_sensor")(context)
    assert isinstance(skipped, dg.SkipReason)
    assert "KAFKA_BOOTSTRAP_SERVERS" in skipped.skip_message


def test_the_refresh_sensor_groups_contiguous_stale_hours_into_one_run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    for hours_back in (0, 1, 5):
        send(kafka_bootstrap, topics, 3, start=BASE_HOUR - timedelta(hours=hours_back))
    land_all(engine, kafka_bootstrap, topics.workflow)
    result = tick(defs, instance, "reducer_refresh_sensor")
    sizes = sorted(1 if r.partition_key else len(hours_of_run(r.tags)) for r in result.run_requests)
    # Hours back 0 and 1 (with the half hour each spans) are contiguous; 5 back stands alone.
    assert sizes == [1, 2] or sizes == [1, 3]


def test_the_refresh_sensor_does_not_ask_again_for_an_hour_a_run_created_since_holds(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    send(kafka_bootstrap, topics, 3)
    land_all(engine, kafka_bootstrap, topics.workflow)
    reducer_run_of_base_hour(defs, instance, dg.DagsterRunStatus.NOT_STARTED)
    skipped = tick(defs, instance, "reducer_refresh_sensor")
    assert isinstance(skipped, dg.SkipReason) and "created since" in skipped.skip_message


def test_a_run_not_yet_started_covers_its_hour_whenever_the_hour_last_landed(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    reducer_run_of_base_hour(defs, instance, dg.DagsterRunStatus.NOT_STARTED)
    send(kafka_bootstrap, topics, 3)
    land_all(engine, kafka_bootstrap, topics.workflow)
    skipped = tick(defs, instance, "reducer_refresh_sensor")
    assert isinstance(skipped, dg.SkipReason), "a second run for an hour one already waits for"


def test_the_refresh_sensor_asks_again_for_an_hour_landed_after_its_running_run_began(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    send(kafka_bootstrap, topics, 3)
    land_all(engine, kafka_bootstrap, topics.workflow)
    reducer_run_of_base_hour(defs, instance, dg.DagsterRunStatus.STARTED)
    send(kafka_bootstrap, topics, 3, start=BASE_HOUR + timedelta(minutes=1))
    land_all(engine, kafka_bootstrap, topics.workflow)
    result = tick(defs, instance, "reducer_refresh_sensor")
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests] == [partition_key(BASE_HOUR)]


def test_an_hour_whose_aggregation_failed_is_retried_after_a_minute_not_every_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    send(kafka_bootstrap, topics, 3)
    land_all(engine, kafka_bootstrap, topics.workflow)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO reducer_aggregations (asset, range_start, range_end, status,"
                " duration_ms, finished_at) VALUES ('reducer_namespace_hourly', :s, :e, 'failed',"
                " 1, :at)"
            ),
            {"s": BASE_HOUR, "e": BASE_HOUR + timedelta(hours=1), "at": datetime.now(UTC)},
        )
    assert isinstance(tick(defs, instance, "reducer_refresh_sensor"), dg.SkipReason)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reducer_aggregations SET finished_at = now() - interval '2 minutes'")
        )
    assert isinstance(tick(defs, instance, "reducer_refresh_sensor"), dg.SensorResult)


def test_contiguous_hours_split_into_runs_of_at_most_a_day_newest_first() -> None:
    hours = [BASE_HOUR - timedelta(hours=h) for h in range(30)] + [BASE_HOUR - timedelta(hours=40)]
    ranges = contiguous(hours)
    assert [(last - first) / timedelta(hours=1) + 1 for first, last in ranges] == [24, 6, 1]
    assert ranges[0][1] == BASE_HOUR


def test_a_range_request_carries_dagsters_range_tags() -> None:
    request = run_request(BASE_HOUR - timedelta(hours=2), BASE_HOUR)
    assert request.tags["dagster/asset_partition_range_start"] == partition_key(
        BASE_HOUR - timedelta(hours=2)
    )
    assert request.tags["dagster/asset_partition_range_end"] == partition_key(BASE_HOUR)
    assert request.tags["dagster/priority"] == "10"


def test_the_schedule_aggregates_the_hour_that_just_closed() -> None:
    job = build_reducer_job(hourly_partitions(datetime(2026, 10, 1, tzinfo=UTC)))
    schedule = build_reducer_schedule(job)
    at = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=at) as context:
        request = schedule(context)
    assert request.partition_key == "2026-11-30-09:00"
    assert schedule.cron_schedule == "5 * * * *"


def test_day_upkeep_creates_days_ahead_and_drops_only_aggregated_days_past_retention(
    pg_address: PostgresAddress,
    instance: dg.DagsterInstance,
    engine: Engine,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    # The upkeep reads the clock when it runs, not when this module was imported: the test
    # takes its own, and stamps its events at noon so their half hour stays within one day.
    before = datetime.now(UTC)
    noon = before.replace(hour=12, minute=0, second=0, microsecond=0)
    defs = reducer_definitions(
        pg_address,
        kafka_bootstrap,
        topics.workflow,
        f"{topics.workflow}.dlq",
        partitions_start=noon - timedelta(days=60),
    )
    old, older = noon - timedelta(days=31), noon - timedelta(days=35)
    send(kafka_bootstrap, topics, 2, start=old)
    send(kafka_bootstrap, topics, 2, start=older)
    land_all(engine, kafka_bootstrap, topics.workflow, retention_days=40)
    materialize_range(defs, instance, old, old + timedelta(hours=1))

    upkeep = dg.Definitions.merge(defs, dg.Definitions(jobs=[maintain_workflow_event_days]))
    assert (
        upkeep.resolve_job_def("maintain_workflow_event_days")
        .execute_in_process(instance=instance)
        .success
    )
    after = datetime.now(UTC)

    with engine.connect() as conn:
        days = set(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'workflow_events'::regclass"
                )
            ).scalars()
        )
    assert partition_name(old.date()) not in days, "aggregated and past retention: dropped"
    assert partition_name(older.date()) in days, "past retention but never aggregated: kept"
    # The job's today is the date before or after it ran (they differ only across midnight).
    assert any(
        {partition_name(day + timedelta(days=n)) for n in range(4)} <= days
        for day in {before.date(), after.date()}
    ), f"today and the next three days are made ahead: {sorted(days)}"
    assert count(engine, "SELECT count(*) FROM reducer_namespace_hourly") > 0, "aggregates stay"
    assert count(engine, "SELECT count(*) FROM workflow_namespaces") == 0, "older than retention"
