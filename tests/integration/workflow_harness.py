"""Shared pieces for driving stamp_workflow against the real PostgreSQL and broker."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any
from uuid import UUID

import dagster as dg
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.topics import dlq_topic
from bridge_dagster.orchestrator import workflow
from bridge_dagster.orchestrator.events_out import ProducerSink, WorkflowEvents
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.orchestrator.ops import IO
from bridge_dagster.orchestrator.range_ledger import REQUESTED_TAG
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.resources.stamping import StampingResource
from bridge_dagster.resources.tree import TreeResource
from bridge_dagster.resources.workflow_settings import WorkflowSettings
from bridge_dagster.sensors.stamp_requests import build_stamp_request_sensor
from tests.conftest import Topics

# The events of a workflow that completes, in order: (event_type, to_state or step).
HAPPY_PATH = [
    ("workflow_state_transition", "pending"),
    ("stamp_workflow_started", None),
    ("workflow_state_transition", "processing"),
    ("workflow_step_completed", "validate"),
    ("blake3_hash_generated", None),
    ("workflow_step_completed", "hash"),
    ("metadata_stamp_created", None),
    ("workflow_step_completed", "stamp"),
    ("workflow_step_completed", "record"),
    ("workflow_state_transition", "completed"),
    ("stamp_workflow_completed", None),
]

# The same with intelligence asked for: its three events come right after validation.
HAPPY_PATH_WITH_INTELLIGENCE = [
    *HAPPY_PATH[:4],
    ("onextree_intelligence_requested", None),
    ("onextree_intelligence_received", None),
    ("workflow_step_completed", "intelligence"),
    *HAPPY_PATH[4:],
]


def postgres_resource(pg: PostgresAddress) -> PostgresResource:
    return PostgresResource(
        host=pg.host,
        port=pg.port,
        database=pg.database,
        user=pg.user,
        password=pg.password,
        ssl_mode="disable",
    )


def workflow_resources(
    pg: PostgresAddress,
    bootstrap: str,
    request_topic: str,
    workflow_topic: str,
    allowed_root: Path,
    *,
    max_content_bytes: int = 100 * 1024 * 1024,
) -> dict[str, Any]:
    return {
        "postgres": postgres_resource(pg),
        "kafka": KafkaResource(
            bootstrap_servers=bootstrap, request_topic=request_topic, workflow_topic=workflow_topic
        ),
        "workflow_settings": WorkflowSettings(
            max_content_bytes=max_content_bytes,
            allowed_roots=[str(allowed_root)],
            environment="test",
        ),
        "stamping": StampingResource(),
        "tree": TreeResource(allowed_roots=[str(allowed_root)]),
        IO: dg.mem_io_manager,
    }


def direct_context(
    pg: PostgresAddress, bootstrap: str, topics: Topics, root: Path, run_id: str | None = None
) -> workflow.Context:
    """The workflow steps' context without Dagster, to call the steps one by one."""
    return workflow.Context(
        engine=engine_for(pg),
        events=WorkflowEvents(topics.workflow, environment="test"),
        sink=ProducerSink(Producer({"bootstrap.servers": bootstrap})),
        dlq_topic=dlq_topic(topics.requests),
        run_id=run_id or f"run-{uuid.uuid4()}",
        default_namespace="omninode.bridge",
        max_content_bytes=1 << 20,
        allowed_roots=(root,),
        warn=print,
    )


def fail_once(engine: Engine, table: str, event: str, *, at_commit: bool, message: str) -> None:
    """Make the next `event` (INSERT or UPDATE) on `table` fail once, when it runs or at its
    transaction's COMMIT, as a dropped connection would. A sequence counts the attempts,
    because it is the one thing a rolled-back transaction does not undo."""
    deferral = "DEFERRABLE INITIALLY DEFERRED" if at_commit else ""
    with engine.begin() as conn:
        conn.execute(text("CREATE SEQUENCE injected_failures"))
        conn.execute(
            text(
                "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF nextval('injected_failures') = 1 THEN"
                f" RAISE EXCEPTION '{message}'; END IF; RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE CONSTRAINT TRIGGER fail_once AFTER {event} ON {table} {deferral}"
                " FOR EACH ROW EXECUTE FUNCTION fail_once()"
            )
        )


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    for key, value in messages:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes | None, bytes]]:
    """Every message on the topic: (partition, offset, key, value)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    open_partitions, out = set(partitions), []
    while open_partitions:
        message = consumer.poll(10)
        assert message is not None, f"timed out reading {topic}"
        error = message.error()
        if error is not None:
            assert error.code() == KafkaError._PARTITION_EOF, error
            open_partitions.discard(message.partition())
            continue
        out.append((message.partition(), message.offset(), message.key(), message.value()))
    consumer.close()
    return out


def whole_topic_ranges(bootstrap: str, topic: str) -> dict[str, Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ranges = []
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ranges.append({"topic": topic, "partition": p, "start": low, "end": high})
    consumer.close()
    return {"ops": {"load_requests": {"config": {"ranges": ranges}}}}


def sensor_run_configs(
    kafka: KafkaResource, postgres: PostgresResource, max_per_run: int
) -> list[dict[str, Any]]:
    """Tick the real request sensor until it has nothing new; return its runs' configs.

    No run is made between ticks, so each tick also requests the earlier ranges again (as
    for deleted runs); only the new ones are kept.
    """
    sensor = build_stamp_request_sensor(
        stamp_workflow,
        max_requests_per_run=max_per_run,
        max_queue_size=1_000_000,
        interval_s=1,
        max_workflow_attempts=3,
    )
    cursor, configs = None, []
    while True:
        with dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            cursor=cursor,
            resources={"kafka": kafka, "postgres": postgres},
        ) as context:
            result = sensor(context)
        if isinstance(result, dg.SkipReason):
            return configs
        new = [r for r in result.run_requests if REQUESTED_TAG not in r.tags]
        if not new:
            return configs
        configs += [request.run_config for request in new]
        cursor = result.cursor


def events_by_workflow(bootstrap: str, topic: str) -> dict[UUID, list[dict[str, Any]]]:
    grouped: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for _, _, key, value in sorted(read_all(bootstrap, topic), key=lambda m: (m[0], m[1])):
        envelope = json.loads(value)
        assert key == envelope["correlation_id"].encode()
        grouped[UUID(envelope["correlation_id"])].append(envelope)
    return grouped


def engine_for(pg: PostgresAddress) -> Engine:
    return create_engine(pg.url())


def count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()
