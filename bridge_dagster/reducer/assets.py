"""The reducer's assets: landed events, five hourly-partitioned tables and the bridge state.

Each hourly asset is one SQL file (reducer/sql/) run by `aggregate.aggregate` over the
partition's window, or over a whole backfill range in one run (BackfillPolicy.single_run).
The bodies are short recipes: publish aggregation_started, let PostgreSQL compute the
window, publish aggregation_completed (or _failed), report numbers Dagster plots.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import dagster as dg

from bridge_dagster.events.types import EventType
from bridge_dagster.reducer import aggregate
from bridge_dagster.reducer.aggregate import HOURLY_TABLES, Outcome, Table
from bridge_dagster.reducer.events_out import publish
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.reducer_settings import ReducerSettings

GROUP = "reducer"
WORKFLOW_EVENTS = dg.AssetKey("workflow_events")
KINDS = {"postgres", "sql"}
OWNERS = ["team:bridge"]
PREVIEW_ROWS = 10

DESCRIPTIONS = {
    "reducer_namespace_hourly": (
        "Per **hour and namespace**: events, workflows started / completed / failed, stamps"
        " created, bytes stamped, distinct content types, and latency avg / p50 / p95 / p99"
        " (ms, `percentile_cont` over `stamp_workflow_completed.latency_ms`)."
    ),
    "reducer_content_type_hourly": (
        "Per **hour, namespace and content type**: completed workflows, bytes stamped and"
        " p95 latency. A workflow without a content type counts as `unknown`."
    ),
    "reducer_size_bucket_hourly": (
        "Per **hour, namespace and size bucket** (`le_1mib`, `le_10mib`, `le_100mib`,"
        " `gt_100mib`): completed workflows and bytes stamped."
    ),
    "reducer_throughput_minutely": (
        "Per **minute and namespace**: completed workflows, stamps created and stamps per"
        " second (the minute's stamps / 60)."
    ),
    "reducer_workflow_projection": (
        "Per **workflow**: namespace, latest state in FSM order (it never moves back, whichever"
        " hour is processed last), transitions, first and last event times, latency."
    ),
}

COLUMNS: dict[str, list[tuple[str, str]]] = {
    "reducer_namespace_hourly": [
        ("hour", "timestamptz"),
        ("namespace", "varchar"),
        ("events", "bigint"),
        ("workflows_started", "bigint"),
        ("workflows_completed", "bigint"),
        ("workflows_failed", "bigint"),
        ("stamps_created", "bigint"),
        ("bytes_stamped", "bigint"),
        ("distinct_content_types", "integer"),
        ("latency_avg_ms", "double"),
        ("latency_p50_ms", "double"),
        ("latency_p95_ms", "double"),
        ("latency_p99_ms", "double"),
    ],
    "reducer_content_type_hourly": [
        ("hour", "timestamptz"),
        ("namespace", "varchar"),
        ("content_type", "varchar"),
        ("workflows_completed", "bigint"),
        ("bytes_stamped", "bigint"),
        ("latency_p95_ms", "double"),
    ],
    "reducer_size_bucket_hourly": [
        ("hour", "timestamptz"),
        ("namespace", "varchar"),
        ("size_bucket", "varchar"),
        ("workflows_completed", "bigint"),
        ("bytes_stamped", "bigint"),
    ],
    "reducer_throughput_minutely": [
        ("minute", "timestamptz"),
        ("namespace", "varchar"),
        ("workflows_completed", "bigint"),
        ("stamps_created", "bigint"),
        ("stamps_per_s", "double"),
    ],
    "reducer_workflow_projection": [
        ("workflow_id", "uuid"),
        ("namespace", "varchar"),
        ("state", "varchar"),
        ("transitions", "integer"),
        ("first_event_at", "timestamptz"),
        ("last_event_at", "timestamptz"),
        ("latency_ms", "double"),
    ],
    "reducer_bridge_state": [
        ("namespace", "varchar"),
        ("events", "bigint"),
        ("workflows_completed", "bigint"),
        ("workflows_failed", "bigint"),
        ("stamps_created", "bigint"),
        ("bytes_stamped", "bigint"),
        ("first_hour", "timestamptz"),
        ("last_hour", "timestamptz"),
    ],
}


# Per table: the time column a window's preview filters on, and the preview's order.
PREVIEW: dict[str, tuple[str | None, str]] = {
    "reducer_namespace_hourly": ("hour", "hour DESC, workflows_completed DESC"),
    "reducer_content_type_hourly": ("hour", "hour DESC, workflows_completed DESC"),
    "reducer_size_bucket_hourly": ("hour", "hour DESC, workflows_completed DESC"),
    "reducer_throughput_minutely": ("minute", "minute DESC"),
    "reducer_workflow_projection": ("last_event_at", "last_event_at DESC"),
    "reducer_bridge_state": (None, "namespace"),
}


def table_metadata(name: str) -> dict[str, Any]:
    schema = dg.TableSchema(columns=[dg.TableColumn(c, t) for c, t in COLUMNS[name]])
    return {"dagster/column_schema": schema, "dagster/table_name": f"public.{name}"}


def build_reducer_assets(
    partitions: dg.HourlyPartitionsDefinition,
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The landed-events spec, the hourly assets over it, and the bridge state."""
    landed = dg.AssetSpec(
        WORKFLOW_EVENTS,
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"kafka", "postgres"},
        owners=OWNERS,
        description=(
            "Workflow events landed from **KAFKA_WORKFLOW_TOPIC** into PostgreSQL table"
            " `workflow_events` (range-partitioned by day) by the `land_workflow_events` job,"
            " which records a materialization of every hour it touches."
        ),
        metadata={"dagster/table_name": "public.workflow_events"},
    )
    hourly = [_hourly_asset(table, partitions) for table in HOURLY_TABLES]
    return [landed, *hourly, _bridge_state_asset()]


def _hourly_asset(table: Table, partitions: dg.HourlyPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=table.name,
        deps=[WORKFLOW_EVENTS],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds=KINDS,
        owners=OWNERS,
        tags={"bridge/kind": "reducer"},
        description=DESCRIPTIONS[table.name] + f"\n\nWrites PostgreSQL table `{table.name}`.",
        metadata=table_metadata(table.name),
    )
    def hourly_table(
        context: dg.AssetExecutionContext,
        postgres: PostgresResource,
        kafka: KafkaResource,
        reducer_settings: ReducerSettings,
    ) -> dg.MaterializeResult:
        start, end = context.partition_time_window
        outcome = _announced(
            context,
            kafka,
            reducer_settings,
            table.name,
            start,
            end,
            lambda: aggregate.aggregate(
                postgres.engine(),
                table,
                start,
                end,
                default_namespace=reducer_settings.default_namespace,
                run_id=context.run.run_id,
            ),
        )
        return _result(context, postgres, table.name, start, end, outcome)

    return hourly_table


def _bridge_state_asset() -> dg.AssetsDefinition:
    @dg.asset(
        name="reducer_bridge_state",
        deps=[dg.AssetKey("reducer_namespace_hourly")],
        group_name=GROUP,
        kinds=KINDS,
        owners=OWNERS,
        tags={"bridge/kind": "reducer"},
        description=(
            "Per **namespace**, the sum over every materialized hour of"
            " `reducer_namespace_hourly`, recomputed from it whole.\n\n"
            "Writes PostgreSQL table `reducer_bridge_state`."
        ),
        metadata=table_metadata("reducer_bridge_state"),
    )
    def reducer_bridge_state(
        context: dg.AssetExecutionContext, postgres: PostgresResource
    ) -> dg.MaterializeResult:
        outcome = aggregate.rebuild_bridge_state(postgres.engine(), run_id=context.run.run_id)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": outcome.rows,
                "namespaces": outcome.rows,
                "seconds": round(outcome.seconds, 3),
                "preview": _preview(postgres, "reducer_bridge_state"),
            }
        )

    return reducer_bridge_state


def _announced(
    context: dg.AssetExecutionContext,
    kafka: KafkaResource,
    settings: ReducerSettings,
    table: str,
    start: datetime,
    end: datetime,
    compute: Callable[[], Outcome],
) -> Outcome:
    """`compute()` between aggregation_started and aggregation_completed / _failed."""
    producer = kafka.producer()
    base = {
        "asset": table,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "run_id": context.run.run_id,
    }
    emit = _emitter(producer, settings)
    emit(EventType.AGGREGATION_STARTED, base)
    try:
        outcome = compute()
    except Exception as exc:
        emit(EventType.AGGREGATION_FAILED, {**base, "error": repr(exc)[:2000]})
        raise
    emit(
        EventType.AGGREGATION_COMPLETED,
        {
            **base,
            "rows": outcome.rows,
            "events": outcome.events,
            "duration_ms": round(outcome.seconds * 1000, 3),
        },
    )
    return outcome


def _emitter(producer: Any, settings: ReducerSettings) -> Callable[[EventType, dict], None]:
    def emit(event_type: EventType, payload: dict[str, Any]) -> None:
        publish(
            producer,
            settings.reducer_topic,
            event_type,
            payload,
            environment=settings.environment,
            signing_key=settings.signing_key,
        )

    return emit


def _result(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    table: str,
    start: datetime,
    end: datetime,
    outcome: Outcome,
) -> dg.MaterializeResult:
    summaries = aggregate.hour_summaries(postgres.engine(), start, end)
    keys = context.partition_keys
    if len(keys) > 1:
        # A range run copies its result's metadata onto every hour; these are each hour's own.
        for key, hour in zip(keys, aggregate.hours_of(start, end), strict=True):
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    partition=key,
                    metadata=_numbers(summaries.get(hour)),
                )
            )
    totals = _numbers(_sum(summaries.values()))
    return dg.MaterializeResult(
        metadata={
            **totals,
            "dagster/row_count": outcome.rows,
            "rows": outcome.rows,
            "seconds": round(outcome.seconds, 3),
            "hours": len(keys),
            "window": dg.MetadataValue.md(
                f"`[{start.isoformat()}, {end.isoformat()})` (half-open)"
            ),
            "preview": _preview(postgres, table, start, end),
        }
    )


def _numbers(summary: dict[str, Any] | None) -> dict[str, Any]:
    summary = summary or {}
    return {
        "events": int(summary.get("events") or 0),
        "completed": int(summary.get("completed") or 0),
        "failed": int(summary.get("failed") or 0),
        "latency_p95_ms": float(summary.get("latency_p95_ms") or 0.0),
    }


def _sum(summaries: Any) -> dict[str, Any]:
    rows = list(summaries)
    return {
        "events": sum(r["events"] for r in rows),
        "completed": sum(r["completed"] for r in rows),
        "failed": sum(r["failed"] for r in rows),
        "latency_p95_ms": max((r["latency_p95_ms"] or 0.0 for r in rows), default=0.0),
    }


def _preview(
    postgres: PostgresResource,
    table: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dg.MetadataValue:
    """The newest rows of the window (of the whole table when it has no time column)."""
    columns = [c for c, _ in COLUMNS[table]]
    time_column, order = PREVIEW[table]
    where, params = "", {}
    if time_column is not None and start is not None:
        where = f"WHERE {time_column} >= %(start)s AND {time_column} < %(end)s"
        params = {"start": start, "end": end}
    sql = f"SELECT {', '.join(columns)} FROM {table} {where} ORDER BY {order} LIMIT {PREVIEW_ROWS}"
    with postgres.engine().connect() as conn:
        rows = conn.exec_driver_sql(sql, params).all()
    records = [
        dg.TableRecord({c: _plain(v) for c, v in zip(columns, row, strict=True)}) for row in rows
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(c, t) for c, t in COLUMNS[table]])
    return dg.MetadataValue.table(records, schema=schema)


def _plain(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
