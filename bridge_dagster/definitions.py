"""The one Definitions object: every job, sensor, schedule and resource, and where it lives.

| object                                  | home                                    |
|-----------------------------------------|-----------------------------------------|
| stamp_workflow, sweep_stale_workflows   | orchestrator/jobs.py (ops: ops.py)      |
| sweep_stale_workflows_every_5_minutes   | orchestrator/jobs.py                    |
| stamp_request_sensor                    | sensors/stamp_requests.py               |
| postgres, kafka, stamping, tree         | resources/                              |
| workflow_settings                       | resources/workflow_settings.py          |

Values come from `settings.py`, which checks every environment variable at load; secrets
(POSTGRES_PASSWORD, API_KEY, EVENT_SIGNING_KEY) stay EnvVars so the UI shows only names.
"""

from __future__ import annotations

import dagster as dg

from bridge_dagster.orchestrator.jobs import stamp_workflow, sweep_schedule, sweep_stale_workflows
from bridge_dagster.orchestrator.ops import IO
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.stamping import StampingResource
from bridge_dagster.resources.tree import TreeResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings
from bridge_dagster.sensors.stamp_requests import build_stamp_request_sensor
from bridge_dagster.settings import Settings, load_settings


def _optional_secret(value: str | None, name: str) -> str | dg.EnvVar | None:
    return dg.EnvVar(name) if value is not None else None


def build_resources(settings: Settings) -> dict[str, object]:
    pg = settings.postgres
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
            allowed_roots=allowed_roots,
            environment=settings.environment,
            signing_key=_optional_secret(settings.event_signing_key, "EVENT_SIGNING_KEY"),
            workflow_timeout_ms=settings.workflow_timeout_ms,
        ),
        IO: dg.mem_io_manager,
    }


settings = load_settings()

defs = dg.Definitions(
    jobs=[stamp_workflow, sweep_stale_workflows],
    schedules=[sweep_schedule],
    sensors=[
        build_stamp_request_sensor(
            stamp_workflow,
            max_requests_per_run=settings.max_requests_per_run,
            max_queue_size=settings.max_workflow_queue_size,
            interval_s=settings.request_sensor_interval_s,
        )
    ],
    resources=build_resources(settings),
)
