"""Shared pieces for landing and reducer tests against the real PostgreSQL and broker."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from confluent_kafka import Consumer, Producer
from sqlalchemy import Engine

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.envelope import EventEnvelope, encode, sign
from bridge_dagster.reducer.assets import build_reducer_assets
from bridge_dagster.reducer.checks import build_reducer_checks
from bridge_dagster.reducer.jobs import build_reducer_job, land_workflow_events
from bridge_dagster.reducer.landing import LandingConfig, LandingResult, land
from bridge_dagster.reducer.partitions import hourly_partitions, partition_key
from bridge_dagster.resources.kafka import RECEIVE_MAX_BYTES, KafkaResource
from bridge_dagster.resources.reducer_settings import ReducerSettings
from bridge_dagster.sensors.reducer_refresh import build_refresh_sensor
from bridge_dagster.sensors.workflow_events import build_landing_sensor
from tests.integration.workflow_harness import postgres_resource

NOW = datetime.now(UTC)
# Three hours back, so every test stream lies in complete hours inside the partition range.
BASE_HOUR = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
PARTITIONS_START = BASE_HOUR - timedelta(days=7)


def producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})


def produce_events(
    bootstrap: str,
    topic: str,
    envelopes: Iterable[EventEnvelope],
    *,
    signing_key: str | None = None,
) -> int:
    out = producer(bootstrap)
    sent = 0
    for envelope in envelopes:
        value = encode(envelope)
        headers = None if signing_key is None else [("x-signature", sign(value, signing_key))]
        key = envelope.partition_key.encode() if envelope.partition_key else None
        while True:
            try:
                out.produce(topic, value, key, headers=headers)
                break
            except BufferError:
                # The local queue is full: let deliveries drain, then try again.
                out.poll(0.1)
        sent += 1
    assert out.flush(60) == 0
    return sent


def produce_raw(bootstrap: str, topic: str, values: Iterable[bytes | None]) -> None:
    out = producer(bootstrap)
    for value in values:
        out.produce(topic, value, b"k")
    assert out.flush(60) == 0


def consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bridge-dagster-landing",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "receive.message.max.bytes": RECEIVE_MAX_BYTES,
        }
    )


def land_all(
    engine: Engine,
    bootstrap: str,
    topic: str,
    *,
    batch_size: int = 1_000,
    signing_key: str | None = None,
    retention_days: int = 30,
) -> LandingResult:
    config = LandingConfig(
        topic=topic,
        batch_size=batch_size,
        max_events=10_000_000,
        retention_days=retention_days,
        signing_key=signing_key,
    )
    reader, writer = consumer(bootstrap), producer(bootstrap)
    try:
        return land(engine, reader, writer, config)
    finally:
        reader.close()


def reducer_definitions(
    pg: PostgresAddress,
    bootstrap: str,
    workflow_topic: str,
    reducer_topic: str,
    *,
    partitions_start: datetime = PARTITIONS_START,
) -> dg.Definitions:
    """The reducer's assets, checks, jobs and sensors over the test's database and topics."""
    hourly = hourly_partitions(partitions_start)
    job = build_reducer_job(hourly)
    return dg.Definitions(
        assets=build_reducer_assets(hourly),
        asset_checks=build_reducer_checks(hourly),
        jobs=[job, land_workflow_events],
        sensors=[
            build_refresh_sensor(job, hourly, interval_s=1, concurrency=10),
            build_landing_sensor(land_workflow_events, interval_s=1),
        ],
        resources={
            "postgres": postgres_resource(pg),
            "kafka": KafkaResource(
                bootstrap_servers=bootstrap, request_topic="unused", workflow_topic=workflow_topic
            ),
            "reducer_settings": ReducerSettings(
                reducer_topic=reducer_topic,
                environment="test",
                partitions_start=partitions_start.isoformat(),
            ),
        },
    )


def materialize_range(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: datetime, last: datetime
) -> dg.ExecuteInProcessResult:
    """One single_run materialization of every reducer asset over [first, last], as a
    backfill's run does."""
    tags = {
        "dagster/asset_partition_range_start": partition_key(first),
        "dagster/asset_partition_range_end": partition_key(last),
    }
    result = defs.resolve_job_def("reducer_hourly").execute_in_process(instance=instance, tags=tags)
    assert result.success
    return result


def run_sensor_requests(
    defs: dg.Definitions, instance: dg.DagsterInstance, name: str
) -> list[dg.RunRequest]:
    """Tick a sensor once and execute what it asks for in process, as the daemon would."""
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        result = sensor(context)
    requests = [] if isinstance(result, dg.SkipReason) else _requests(result)
    job = defs.resolve_job_def(sensor.job_name)
    for request in requests:
        outcome = job.execute_in_process(
            run_config=request.run_config,
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
        )
        assert outcome.success
    return requests


def _requests(result: Any) -> list[dg.RunRequest]:
    if isinstance(result, dg.RunRequest):
        return [result]
    if isinstance(result, dg.SensorResult):
        return list(result.run_requests or [])
    return list(result or [])
