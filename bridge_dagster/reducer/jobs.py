"""Reducer jobs: landing, the hourly asset job and its schedule, and event-day upkeep."""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field
from sqlalchemy import text

from bridge_dagster.k8s_config import LIGHT_RUN_TAGS
from bridge_dagster.reducer import event_days
from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from bridge_dagster.reducer.assets import WORKFLOW_EVENTS
from bridge_dagster.reducer.landing import LANDING_LOCK, LandingConfig, LandingResult, land
from bridge_dagster.reducer.partitions import partition_key
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.reducer_settings import ReducerSettings

REDUCER_ASSETS = (*HOURLY_TABLE_NAMES, "reducer_bridge_state")
# Landing and aggregation runs are small and keep the reducer fresh: the run queue
# takes them before stamp_workflow batches.
PRIORITY = {"dagster/priority": "10"}
LANDING_TAGS = {"bridge/kind": "landing", **PRIORITY, **LIGHT_RUN_TAGS}
REDUCER_TAGS = {"bridge/kind": "reducer", **PRIORITY, **LIGHT_RUN_TAGS}
# Event days made ahead of the clock, so landing seldom creates one.
DAYS_AHEAD = 3
# Hours linked from a landing run's page; a backlog spanning more is summed up in one line.
LINKED_HOURS = 48


# How long a run the landing sensor starts keeps landing, a pass per window, and how many
# passes that find nothing end it early. Between one run and the next nothing lands: the
# sensor's tick, the queue and the new run's start-up, 20-40 s on a loaded machine. Under a
# steady stream, runs of a minute left that gap a third of the time, and it set the p95 of
# freshness; ten minutes leave it about a twentieth. An idle stream still frees the run slot
# after two windows, and a run of ten minutes is far below run monitoring's hour.
SENSOR_LANDING_RUN_S = 600.0
IDLE_PASSES = 2


class LandingRunConfig(dg.Config):
    keep_landing_s: float = Field(
        default=0.0,
        ge=0.0,
        description="Keep landing for this many seconds, one pass every `every_s`, ending"
        " early after two passes that find nothing; 0 lands once. The landing sensor asks for"
        f" {SENSOR_LANDING_RUN_S:.0f}.",
    )
    every_s: float = Field(
        default=5.0, gt=0.0, description="Seconds between passes (AGGREGATION_WINDOW_SIZE_MS)."
    )


@dg.op(
    description="Land the workflow topic's new events into workflow_events; record every hour"
    " it touched as a materialization of the hourly `workflow_events` asset.",
)
def land_events(
    context: dg.OpExecutionContext,
    config: LandingRunConfig,
    postgres: PostgresResource,
    kafka: KafkaResource,
    reducer_settings: ReducerSettings,
) -> None:
    landing = LandingConfig(
        topic=kafka.workflow_topic,
        batch_size=reducer_settings.batch_size,
        max_events=reducer_settings.max_events_per_pass,
        retention_days=reducer_settings.retention_days,
        signing_key=reducer_settings.signing_key,
        poll_timeout_s=kafka.timeout_s,
    )
    deadline = time.monotonic() + config.keep_landing_s
    total = LandingResult()
    passes = idle = 0
    with kafka.consumer() as consumer:
        while True:
            result = land(postgres.engine(), consumer, kafka.producer(), landing)
            _report_pass(context, result, kafka.workflow_topic)
            total.add(result)
            passes += 1
            idle = idle + 1 if not result.read else 0
            if idle >= IDLE_PASSES or time.monotonic() + config.every_s > deadline:
                break
            time.sleep(config.every_s)
    context.add_output_metadata(
        {
            "passes": passes,
            "hours_touched": len(total.hours),
            "events_landed": total.landed,
            "touched partitions": touched_partitions(total.hours),
        }
    )
    context.instance.add_run_tags(
        context.run_id,
        {"bridge/landed": str(total.landed), "bridge/dead_lettered": str(total.dead_lettered)},
    )


def _report_pass(context: dg.OpExecutionContext, result: LandingResult, topic: str) -> None:
    for warning in result.warnings:
        context.log.warning(warning)
    for hour, events in sorted(result.hours.items()):
        context.log_event(
            dg.AssetMaterialization(
                asset_key=WORKFLOW_EVENTS,
                partition=partition_key(hour),
                metadata={"events_landed": events},
            )
        )
    for code, count in sorted(result.rejected.items()):
        context.log.warning(f"{count} events dead-lettered to {topic}.dlq as {code}")
    if result.read or result.warnings:
        context.log.info(
            f"read {result.read} events: {result.landed} landed, {result.duplicates} already"
            f" landed, {result.dead_lettered} dead-lettered, in {result.batches} transactions,"
            f" {result.seconds:.1f} s ({result.events_per_s:,.0f} events/s); touched"
            f" {len(result.hours)} hours; positions {dict(sorted(result.positions.items()))}"
            " (next offset to land)"
        )


def touched_partitions(hours: dict[datetime, int]) -> dg.MetadataValue:
    """Markdown links from the run's page to each `workflow_events` hour it landed into."""
    if not hours:
        return dg.MetadataValue.md("none: nothing new to land")
    newest = sorted(hours.items(), reverse=True)
    lines = [
        f"- [{partition_key(hour)}](/assets/{WORKFLOW_EVENTS.to_user_string()}"
        f"?view=partitions&partition={partition_key(hour)}): {events:,} events"
        for hour, events in newest[:LINKED_HOURS]
    ]
    if len(newest) > LINKED_HOURS:
        older = sum(events for _, events in newest[LINKED_HOURS:])
        lines.append(f"- and {len(newest) - LINKED_HOURS} older hours: {older:,} events")
    return dg.MetadataValue.md("\n".join(lines))


@dg.job(tags=LANDING_TAGS, executor_def=dg.in_process_executor)
def land_workflow_events() -> None:
    """Land new workflow events into PostgreSQL table `workflow_events`, exactly once.

    Also writes `landing_positions` (the next offset per partition, in the same transaction
    as the rows), `reducer_landed_hours` (which hours are stale), `workflow_namespaces` and
    `dead_letters`. The run's page links to every hour it touched.

    Started by `workflow_event_landing_sensor`; safe to launch by hand at any time (one
    landing runs at a time, it resumes where the database says, and rows are idempotent).
    Malformed events go to `<KAFKA_WORKFLOW_TOPIC>.dlq` with their reason.
    """
    land_events()


@dg.op(
    description="Create workflow_events' day partitions ahead; drop whole days older than"
    " WORKFLOW_EVENTS_RETENTION_DAYS once every hour of them is aggregated.",
)
def maintain_event_days(
    context: dg.OpExecutionContext, postgres: PostgresResource, reducer_settings: ReducerSettings
) -> None:
    today = datetime.now(UTC).date()
    horizon = today - timedelta(days=reducer_settings.retention_days)
    with postgres.engine().begin() as conn:
        # The landing lock: no landing may create or fill a day while it is dropped.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LANDING_LOCK})
        known = event_days.existing_days(conn)
        ahead = [today + timedelta(days=n) for n in range(DAYS_AHEAD + 1)]
        created = event_days.ensure_days(conn, ahead, known)
        expired = sorted(d for d in known if d < horizon)
        waiting = event_days.unaggregated_days(
            conn,
            expired,
            HOURLY_TABLE_NAMES,
            datetime.fromisoformat(reducer_settings.partitions_start),
        )
        dropped = event_days.drop_days(conn, [d for d in expired if d not in waiting])
        forgotten = event_days.forget_workflows_before(conn, event_days.day_start(horizon))
    for day in sorted(waiting):
        context.log.warning(
            f"workflow_events day {day} is past retention but has hours not yet aggregated;"
            " it is kept until they are (materialize them, or run a backfill)"
        )
    context.log.info(
        f"created {len(created)} day partitions {sorted(map(str, created))}; dropped"
        f" {len(dropped)} {list(map(str, dropped))} (older than {horizon}); forgot the"
        f" namespaces of {forgotten} workflows first seen before it"
    )


@dg.job(tags={"bridge/kind": "maintenance"}, executor_def=dg.in_process_executor)
def maintain_workflow_event_days() -> None:
    """Keep the day partitions of PostgreSQL table `workflow_events`: made ahead, dropped after
    `WORKFLOW_EVENTS_RETENTION_DAYS` once aggregated; prunes `workflow_namespaces` alike."""
    maintain_event_days()


maintain_event_days_schedule = dg.ScheduleDefinition(
    name="maintain_workflow_event_days_hourly",
    job=maintain_workflow_event_days,
    cron_schedule="17 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At HH:17, make the coming days' `workflow_events` partitions and drop expired"
    " ones.",
)


def build_reducer_job(partitions: dg.HourlyPartitionsDefinition) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "reducer_hourly",
        selection=dg.AssetSelection.assets(*REDUCER_ASSETS),
        partitions_def=partitions,
        tags=REDUCER_TAGS,
        # One process for the whole run: a process per step costs seconds each, the SQL
        # about one.
        executor_def=dg.in_process_executor,
        description="Aggregate hours of `workflow_events` into the reducer tables"
        f" ({', '.join(f'`{n}`' for n in REDUCER_ASSETS)}), with their checks.",
    )


def build_reducer_schedule(job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """At five past each hour, aggregate the hour that just closed, once.

    A hand-made schedule: the partitions include the hour in progress (end_offset=1), so
    build_schedule_from_partitioned_job would aggregate that one instead.
    """

    @dg.schedule(
        name="reducer_hourly_after_the_hour",
        job=job,
        cron_schedule="5 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="At HH:05 UTC, re-materialize the reducer tables for the hour that closed"
        " at HH:00, with every event that landed for it by then.",
    )
    def reducer_hourly_after_the_hour(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest:
        ticked = context.scheduled_execution_time.astimezone(UTC)
        closed = ticked.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        key = partition_key(closed)
        return dg.RunRequest(run_key=key, partition_key=key, tags=REDUCER_TAGS)

    return reducer_hourly_after_the_hour
