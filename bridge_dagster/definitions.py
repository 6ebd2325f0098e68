"""The one Definitions object: every job, sensor, schedule and resource, and where it lives.

| object                                  | home                                    |
|-----------------------------------------|-----------------------------------------|
| stamp_workflow, sweep_stale_workflows   | orchestrator/jobs.py (ops: ops.py)      |
| sweep_stale_workflows_every_5_minutes   | orchestrator/jobs.py                    |
| stamp_request_sensor                    | sensors/stamp_requests.py               |
| workflow_events + reducer_* assets      | reducer/assets.py (SQL: reducer/sql/)   |
| reducer asset checks                    | reducer/checks.py                       |
| land_workflow_events, reducer_hourly,   | reducer/jobs.py                         |
|   maintain_workflow_event_days + their  |                                         |
|   schedules                             |                                         |
| workflow_event_landing_sensor           | sensors/workflow_events.py              |
| reducer_refresh_sensor                  | sensors/reducer_refresh.py              |
| prune_dagster_runs + its schedule       | maintenance/run_retention.py            |
| postgres, kafka, stamping, tree         | resources/                              |
| workflow_settings, reducer_settings     | resources/*_settings.py                 |

Values come from `settings.py`, which checks every environment variable at load; secrets
(POSTGRES_PASSWORD, KAFKA_SASL_PASSWORD, API_KEY, EVENT_SIGNING_KEY) stay EnvVars so the UI
shows only names.
"""

from __future__ import annotations

import dagster as dg

from bridge_dagster.maintenance.run_retention import build_prune_dagster_runs, build_prune_schedule
from bridge_dagster.orchestrator.jobs import stamp_workflow, sweep_schedule, sweep_stale_workflows
from bridge_dagster.orchestrator.ops import IO
from bridge_dagster.reducer.assets import build_reducer_assets
from bridge_dagster.reducer.checks import build_reducer_checks
from bridge_dagster.reducer.jobs import (
    build_reducer_job,
    build_reducer_schedule,
    land_workflow_events,
    maintain_event_days_schedule,
    maintain_workflow_event_days,
)
from bridge_dagster.reducer.partitions import hourly_partitions
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.reducer_settings import ReducerSettings
from bridge_dagster.resources.stamping import StampingResource
from bridge_dagster.resources.tree import TreeResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings
from bridge_dagster.sensors.reducer_refresh import build_refresh_sensor
from bridge_dagster.sensors.stamp_requests import build_stamp_request_sensor
from bridge_dagster.sensors.workflow_events import build_landing_sensor
from bridge_dagster.settings import Settings, load_settings


def _optional_secret(value: str | None, name: str) -> str | dg.EnvVar | None:
    return dg.EnvVar(name) if value is not None else None


def build_resources(settings: Settings) -> dict[str, object]:
    pg = settings.postgres
    kafka = settings.kafka_security
    allowed_roots = [str(root) for root in settings.allowed_roots]
    step_timeout_s = settings.step_timeout_ms / 1000
    return {
        "postgres": PostgresResource(
            host=dg.EnvVar("POSTGRES_HOST"),
            port=pg.port,
            database=pg.database,
            user=pg.user,
            password=dg.EnvVar("POSTGRES_PASSWORD"),
            ssl_mode=pg.ssl_mode,
            pool_min_size=pg.pool_min_size,
            pool_max_size=pg.pool_max_size,
            query_timeout_s=pg.query_timeout_s,
            acquire_timeout_s=pg.acquire_timeout_s,
        ),
        "kafka": KafkaResource(
            bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS"),
            request_topic=settings.request_topic,
            workflow_topic=settings.workflow_topic,
            security_protocol=kafka.protocol,
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_username=kafka.sasl_username,
            sasl_password=_optional_secret(kafka.sasl_password, "KAFKA_SASL_PASSWORD"),
            ssl_ca_location=kafka.ssl_ca_location,
        ),
        "stamping": StampingResource(
            service_url=settings.stamping_service_url,
            timeout_s=step_timeout_s,
            api_key=_optional_secret(settings.api_key, "API_KEY"),
        ),
        "tree": TreeResource(
            service_url=settings.onextree_service_url,
            allowed_roots=allowed_roots,
            timeout_s=step_timeout_s,
            api_key=_optional_secret(settings.api_key, "API_KEY"),
        ),
        "workflow_settings": WorkflowSettings(
            default_namespace=settings.default_namespace,
            max_content_bytes=settings.max_content_bytes,
            max_run_content_bytes=settings.max_run_content_bytes,
            allowed_roots=allowed_roots,
            environment=settings.environment,
            signing_key=_optional_secret(settings.event_signing_key, "EVENT_SIGNING_KEY"),
            workflow_timeout_ms=settings.workflow_timeout_ms,
            step_timeout_ms=settings.step_timeout_ms,
            max_requests_per_run=settings.max_requests_per_run,
            max_workflow_queue_size=settings.max_workflow_queue_size,
            orchestrator_concurrency=settings.orchestrator_concurrency,
        ),
        "reducer_settings": ReducerSettings(
            default_namespace=settings.default_namespace,
            reducer_topic=settings.reducer_topic,
            environment=settings.environment,
            signing_key=_optional_secret(settings.event_signing_key, "EVENT_SIGNING_KEY"),
            batch_size=settings.aggregation_batch_size,
            max_events_per_pass=settings.max_aggregation_queue_size,
            partitions_start=settings.reducer_partitions_start.isoformat(),
            retention_days=settings.workflow_events_retention_days,
            reducer_concurrency=settings.reducer_concurrency,
        ),
        IO: dg.mem_io_manager,
    }


settings = load_settings()
hourly = hourly_partitions(settings.reducer_partitions_start)
reducer_hourly = build_reducer_job(hourly)
window_s = max(1, settings.aggregation_window_ms // 1000)
prune_dagster_runs = build_prune_dagster_runs(settings.dagster_run_retention_days)

defs = dg.Definitions(
    assets=build_reducer_assets(hourly),
    asset_checks=build_reducer_checks(hourly),
    jobs=[
        stamp_workflow,
        sweep_stale_workflows,
        land_workflow_events,
        reducer_hourly,
        maintain_workflow_event_days,
        prune_dagster_runs,
    ],
    schedules=[
        sweep_schedule,
        build_reducer_schedule(reducer_hourly),
        maintain_event_days_schedule,
        build_prune_schedule(prune_dagster_runs),
    ],
    sensors=[
        build_stamp_request_sensor(
            stamp_workflow,
            max_requests_per_run=settings.max_requests_per_run,
            max_queue_size=settings.max_workflow_queue_size,
            interval_s=settings.request_sensor_interval_s,
            max_workflow_attempts=settings.max_workflow_attempts,
        ),
        build_landing_sensor(land_workflow_events, interval_s=window_s),
        build_refresh_sensor(
            reducer_hourly, hourly, interval_s=window_s, concurrency=settings.reducer_concurrency
        ),
    ],
    resources=build_resources(settings),
    # Also for the runs the UI and backfills make from an asset selection.
    executor=dg.in_process_executor,
)
