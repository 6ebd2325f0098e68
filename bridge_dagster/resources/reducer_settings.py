"""The reducer's limits and identity, as a resource the UI shows."""

import dagster as dg
from pydantic import Field


class ReducerSettings(dg.ConfigurableResource):
    """What landing and the reducer assets apply; each field is the setting of the same name."""

    default_namespace: str = Field(
        default="omninode.bridge",
        description="DEFAULT_NAMESPACE: events of workflows that name no namespace count here",
    )
    reducer_topic: str = Field(
        default="dev.omninode_bridge.onex.reducer.v1",
        description="KAFKA_REDUCER_TOPIC: aggregation_started/completed/failed go here",
    )
    environment: str = Field(default="dev", description="ENVIRONMENT, written into every event")
    signing_key: str | None = Field(
        default=None,
        description="EVENT_SIGNING_KEY: landing dead-letters events without a valid signature,"
        " and reducer events are signed",
    )
    batch_size: int = Field(
        default=10_000, description="AGGREGATION_BATCH_SIZE: events per landing transaction"
    )
    max_events_per_pass: int = Field(
        default=200_000,
        description="MAX_AGGREGATION_QUEUE_SIZE: most events one landing pass takes",
    )
    partitions_start: str = Field(
        default="2026-10-01T00:00:00+00:00",
        description="REDUCER_PARTITIONS_START: the first hour of the hourly partitions",
    )
    retention_days: int = Field(
        default=30,
        description="WORKFLOW_EVENTS_RETENTION_DAYS: whole days of workflow_events kept",
    )
    # Applied by reducer_refresh_sensor; here so the UI shows it beside the rest.
    reducer_concurrency: int = Field(
        default=10,
        description="REDUCER_CONCURRENCY: the most reducer_hourly runs queued or running at once",
    )
