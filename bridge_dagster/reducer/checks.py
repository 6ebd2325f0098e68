"""Asset checks that reconcile the reducer tables with the landed events they came from.

They run with every materialization, over the hours it covered (the last day when run on
their own). A failure names the hours, namespaces or workflows that disagree and the two
numbers. Hours that landing touched after their aggregation read them are left out: they
are stale and already queued for aggregation, so a mismatch there is not a defect.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from bridge_dagster.reducer.sql import query
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.reducer_settings import ReducerSettings

# An hour with events may lack stats this long: landing, a refresh tick, a run's start.
STATS_GRACE = timedelta(minutes=15)
SHOWN = 20


def build_reducer_checks(
    partitions: dg.HourlyPartitionsDefinition,
) -> list[dg.AssetChecksDefinition]:
    start = partitions.start

    @dg.asset_check(
        asset="reducer_namespace_hourly",
        blocking=True,
        description="Each hour's workflows_completed per namespace equals a direct count of"
        " stamp_workflow_completed events in workflow_events.",
    )
    def namespace_totals_match_events(
        context: dg.AssetCheckExecutionContext,
        postgres: PostgresResource,
        reducer_settings: ReducerSettings,
    ) -> dg.AssetCheckResult:
        window = _window(context)
        params = {**window, "default_namespace": reducer_settings.default_namespace}
        with postgres.engine().connect() as conn:
            wrong = conn.execute(query("check_namespace_totals"), params).mappings().all()
        return dg.AssetCheckResult(
            passed=not wrong,
            metadata={
                "mismatches": len(wrong),
                "window": _describe(window),
                "disagreeing": _table(wrong, "hour, namespace: reported vs counted"),
            },
        )

    @dg.asset_check(
        asset="reducer_workflow_projection",
        description="No workflow in the projection is in an earlier FSM state than its latest"
        " event says.",
    )
    def projection_not_behind_events(
        context: dg.AssetCheckExecutionContext, postgres: PostgresResource
    ) -> dg.AssetCheckResult:
        window = _window(context)
        with postgres.engine().connect() as conn:
            behind = conn.execute(query("check_projection_behind"), window).mappings().all()
        return dg.AssetCheckResult(
            passed=not behind,
            metadata={
                "workflows_behind": len(behind),
                "window": _describe(window),
                "behind": _table(behind, "workflow: latest event state vs projected state"),
            },
        )

    @dg.asset_check(
        asset="reducer_namespace_hourly",
        description=f"No hour that has landed events lacks stats for more than {STATS_GRACE}.",
    )
    def every_landed_hour_has_stats(postgres: PostgresResource) -> dg.AssetCheckResult:
        params = {"partitions_start": start, "grace": f"{int(STATS_GRACE.total_seconds())} s"}
        with postgres.engine().connect() as conn:
            missing = conn.execute(query("check_hours_without_stats"), params).mappings().all()
        return dg.AssetCheckResult(
            passed=not missing,
            metadata={
                "hours_without_stats": len(missing),
                "hours": _table(missing, "hour: events landed, last landed at"),
            },
        )

    return [
        namespace_totals_match_events,
        projection_not_behind_events,
        every_landed_hour_has_stats,
    ]


def _window(context: dg.AssetCheckExecutionContext) -> dict[str, datetime]:
    op_context = context.op_execution_context
    if op_context.has_partition_key_range:
        start, end = op_context.partition_time_window
        return {"start": start, "end": end}
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return {"start": now - timedelta(days=1), "end": now + timedelta(hours=1)}


def _describe(window: dict[str, datetime]) -> str:
    return f"[{window['start']:%Y-%m-%d %H:%M}, {window['end']:%Y-%m-%d %H:%M}) UTC"


def _table(rows: Any, heading: str) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("none")
    lines = [f"| {' | '.join(str(v) for v in row.values())} |" for row in rows[:SHOWN]]
    more = f"\n\n…and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    columns = list(rows[0].keys())
    header = f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n"
    return dg.MetadataValue.md(f"{heading}\n\n{header}" + "\n".join(lines) + more)
