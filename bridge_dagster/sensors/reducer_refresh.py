"""`reducer_refresh_sensor`: hours that landing touched are aggregated again, whatever hour.

PostgreSQL knows which hours are stale (reducer_landed_hours.touch_seq past what each table
recorded in reducer_hour_state), so the sensor needs no cursor and a failed or lost run is
simply asked for again. The hour in progress stays fresh this way, and an event that arrives
days late for an old hour lands, marks that hour stale, and is aggregated without a manual
step. Contiguous stale hours go into one run (BackfillPolicy.single_run), at most
REDUCER_CONCURRENCY runs are queued or running, and an hour that a run created after its
last landing will aggregate is not asked for again.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from bridge_dagster.reducer.jobs import REDUCER_TAGS
from bridge_dagster.reducer.partitions import hour_of, partition_key
from bridge_dagster.reducer.sql import query
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.sensors.frequency import tick_frequency
from bridge_dagster.sensors.stamp_requests import IN_FLIGHT

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# A range run this long keeps one run's transaction, and its lock on the table, short.
MAX_HOURS_PER_RUN = 24
NOT_YET_STARTED = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)


def build_refresh_sensor(
    job: UnresolvedAssetJobDefinition,
    partitions: dg.HourlyPartitionsDefinition,
    *,
    interval_s: int,
    concurrency: int,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="reducer_refresh_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Asks `{job.name}` to aggregate every hour that landing touched since it"
        " was last aggregated, late hours included, contiguous hours in one run; at most"
        f" {concurrency} runs (REDUCER_CONCURRENCY) queued or running. "
        + tick_frequency(interval_s, "AGGREGATION_WINDOW_SIZE_MS"),
    )
    def reducer_refresh_sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource
    ) -> dg.SensorResult | dg.SkipReason:
        stale = stale_hours(postgres, partitions.start, _partitions_end())
        if not stale:
            return dg.SkipReason("every hour landing touched is aggregated")
        records = context.instance.get_run_records(
            dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT)
        )
        wanted = [h for h, landed_at in stale.items() if not covered(h, landed_at, records)]
        if not wanted:
            return dg.SkipReason(
                f"{len(stale)} stale hours are in {job.name} runs queued or created since"
                " their last landing"
            )
        room = concurrency - len(records)
        if room <= 0:
            return dg.SkipReason(
                f"{len(wanted)} stale hours wait: {len(records)} {job.name} runs are queued or"
                " running, the REDUCER_CONCURRENCY limit"
            )
        requests = [run_request(first, last) for first, last in contiguous(wanted)[:room]]
        context.log.info(
            f"aggregating {sum(_span(r) for r in requests)} stale hours in {len(requests)}"
            f" runs, newest first: {', '.join(_describe(r) for r in requests)}"
        )
        return dg.SensorResult(run_requests=requests)

    return reducer_refresh_sensor


def _partitions_end() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def stale_hours(
    postgres: PostgresResource, start: datetime, end: datetime
) -> dict[datetime, datetime]:
    """Each stale hour, newest first, with the time of its last landing."""
    with postgres.engine().connect() as conn:
        found = conn.execute(
            query("stale_hours"),
            {"start": start, "end": end, "tables": list(HOURLY_TABLE_NAMES)},
        )
        return dict(found.all())


def covered(hour: datetime, landed_at: datetime, records: list[dg.RunRecord]) -> bool:
    """Whether a queued or running run will aggregate `hour` with its last landing.

    A run not yet started reads the hour when it starts, and so does a run created after
    the landing; a run that started before may already have read the hour, so the hour
    needs another (at most one waits, since that one then covers it).
    """
    return any(
        hour in hours_of_run(r.dagster_run.tags)
        and (r.dagster_run.status in NOT_YET_STARTED or r.create_timestamp >= landed_at)
        for r in records
    )


def hours_of_run(tags: dict[str, str]) -> set[datetime]:
    if "dagster/partition" in tags:
        return {hour_of(tags["dagster/partition"])}
    if RANGE_START in tags and RANGE_END in tags:
        first, last = hour_of(tags[RANGE_START]), hour_of(tags[RANGE_END])
        count = int((last - first) / timedelta(hours=1)) + 1
        return {first + timedelta(hours=i) for i in range(count)}
    return set()


def contiguous(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Runs of consecutive hours, newest first, each at most MAX_HOURS_PER_RUN long."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours, reverse=True):
        if ranges:
            first, last = ranges[-1]
            span = int((last - first) / timedelta(hours=1)) + 1
            if first - hour == timedelta(hours=1) and span < MAX_HOURS_PER_RUN:
                ranges[-1] = (hour, last)
                continue
        ranges.append((hour, hour))
    return ranges


def run_request(first: datetime, last: datetime) -> dg.RunRequest:
    if first == last:
        return dg.RunRequest(partition_key=partition_key(first), tags=REDUCER_TAGS)
    return dg.RunRequest(
        tags={RANGE_START: partition_key(first), RANGE_END: partition_key(last), **REDUCER_TAGS}
    )


def _span(request: dg.RunRequest) -> int:
    return len(hours_of_run({**request.tags, **_partition_tag(request)}))


def _partition_tag(request: dg.RunRequest) -> dict[str, str]:
    return {} if request.partition_key is None else {"dagster/partition": request.partition_key}


def _describe(request: dg.RunRequest) -> str:
    if request.partition_key is not None:
        return request.partition_key
    return f"{request.tags[RANGE_START]}...{request.tags[RANGE_END]}"
