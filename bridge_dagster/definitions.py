"""The one Definitions object: every job, sensor, schedule, asset and resource, and its home."""

from __future__ import annotations

import dagster as dg

from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.settings import load_settings

settings = load_settings()

resources = {
    "postgres": PostgresResource(
        host=dg.EnvVar("POSTGRES_HOST"),
        port=settings.postgres.port,
        database=settings.postgres.database,
        user=settings.postgres.user,
        password=dg.EnvVar("POSTGRES_PASSWORD"),
        ssl_mode=settings.postgres.ssl_mode,
        pool_min_size=settings.postgres.pool_min_size,
        pool_max_size=settings.postgres.pool_max_size,
        query_timeout_s=settings.postgres.query_timeout_s,
        acquire_timeout_s=settings.postgres.acquire_timeout_s,
    ),
    "kafka": KafkaResource(
        bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS"),
        request_topic=settings.request_topic,
        workflow_topic=settings.workflow_topic,
    ),
}

defs = dg.Definitions(resources=resources)
