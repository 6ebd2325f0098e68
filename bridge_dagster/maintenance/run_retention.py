"""`prune_dagster_runs`: delete finished runs past DAGSTER_RUN_RETENTION_DAYS.

Dagster 1.13 bounds ticks in dagster.yaml but keeps every run and its event log forever.
Deleting a run deletes its events, materializations included, and the newest
materialization of an asset partition is what the UI, the asset checks and automation read
as that partition's state: so every run that holds one is kept, however old. What is left
is bounded by the partitions (a landing and a reducer run per hour, at most), not by the
number of workflows.
"""

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# Deleting a run cost 80 ms here (bench/retention.py): this many per run takes minutes, and
# hourly that is 120,000 a day, against the 43,000 runs a day of 100 workflows/s.
MAX_DELETIONS_PER_RUN = 5_000
PAGE = 1_000


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    kept: int
    left: int
    seconds: float

    def metadata(self, horizon: datetime) -> dict[str, int | float | str]:
        return {
            "deleted_runs": self.deleted,
            "kept_for_latest_materializations": self.kept,
            "finished_runs_left_past_horizon": self.left,
            "horizon": horizon.isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 2),
        }


def runs_holding_latest_materializations(instance: dg.DagsterInstance) -> set[str]:
    """Ids of the runs that hold the newest materialization of some asset or asset partition."""
    holders: set[str] = set()
    for key in instance.get_asset_keys():
        latest = instance.get_latest_materialization_event(key)
        if latest is not None:
            holders.add(latest.run_id)
        by_partition = instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        for storage_ids in _chunks(sorted(by_partition.values()), PAGE):
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, storage_ids=storage_ids),
                limit=len(storage_ids),
            ).records
            holders.update(record.run_id for record in records)
    return holders


def prune_runs(
    instance: dg.DagsterInstance, older_than: datetime, max_deletions: int
) -> PruneResult:
    """Delete up to `max_deletions` finished runs last updated before `older_than`."""
    started = time.monotonic()
    keep = runs_holding_latest_materializations(instance)
    old = dg.RunsFilter(statuses=FINISHED, updated_before=older_than)
    deleted = kept = 0
    # A page continues after the last run it kept: a deleted run can no longer be a cursor.
    cursor: str | None = None
    while deleted < max_deletions:
        page = instance.get_run_ids(old, cursor=cursor, limit=PAGE)
        if not page:
            break
        for run_id in page:
            if run_id in keep:
                kept += 1
                cursor = run_id
                continue
            instance.delete_run(run_id)
            deleted += 1
            if deleted == max_deletions:
                break
    left = instance.get_runs_count(old)
    return PruneResult(deleted, kept, left, time.monotonic() - started)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def build_prune_dagster_runs(retention_days: int) -> dg.JobDefinition:
    """The job, its horizon defaulting to DAGSTER_RUN_RETENTION_DAYS (the Launchpad may
    set another)."""

    @dg.op(
        config_schema={
            "older_than_days": dg.Field(
                int,
                default_value=retention_days,
                description="Delete finished runs last updated more than this many days ago.",
            )
        },
        out=dg.Out(dg.Nothing),
        description="Delete finished runs older than the horizon, at most"
        f" {MAX_DELETIONS_PER_RUN} a run, keeping every run that holds the latest"
        " materialization of an asset partition.",
    )
    def prune_runs_past_retention(context: dg.OpExecutionContext) -> dg.Output:
        days = context.op_config["older_than_days"]
        horizon = datetime.now(UTC) - timedelta(days=days)
        result = prune_runs(context.instance, horizon, MAX_DELETIONS_PER_RUN)
        context.log.info(
            f"deleted {result.deleted} finished runs last updated before {horizon:%Y-%m-%d %H:%M}"
            f" UTC; kept {result.kept} that hold the latest materialization of an asset"
            f" partition; {result.left} finished runs past the horizon remain"
            f" ({result.seconds:.1f} s)"
        )
        if result.deleted == MAX_DELETIONS_PER_RUN:
            context.log.warning(
                f"stopped at {MAX_DELETIONS_PER_RUN} deletions; the next scheduled run goes on"
            )
        return dg.Output(None, metadata=result.metadata(horizon))

    @dg.job(
        name="prune_dagster_runs",
        executor_def=dg.in_process_executor,
        tags={"bridge/kind": "maintenance"},
    )
    def prune_dagster_runs() -> None:
        """Delete Dagster runs (and their event logs) past DAGSTER_RUN_RETENTION_DAYS, keeping
        the runs that hold the latest materialization of each asset partition."""
        prune_runs_past_retention()

    return prune_dagster_runs


def build_prune_schedule(job: dg.JobDefinition) -> dg.ScheduleDefinition:
    # Hourly rather than daily: a busy day makes tens of thousands of runs, more than one
    # bounded run may delete.
    return dg.ScheduleDefinition(
        name="prune_dagster_runs_hourly",
        job=job,
        cron_schedule="41 * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
