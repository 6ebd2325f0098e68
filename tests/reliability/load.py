"""The load the scenarios send: valid requests in this project's and the original OmniNode
envelope, produced through the project's own producer helper, each delivery recorded."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from bridge_dagster.cli.submit import produce_when_room
from bridge_dagster.events.demo import demo_requests
from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import BROKER_MESSAGE_MAX_BYTES

ENVIRONMENT = "reliability"
# librdkafka's upper bound: the dead-letter topic holds records near 600 KB.
RECEIVE_MAX_BYTES = 2_147_483_647


@dataclass(frozen=True)
class Outgoing:
    """One message to send: its key, its value, and the workflow it asks for (if valid)."""

    key: bytes | None
    value: bytes | None
    workflow_id: UUID | None = None  # set for a valid request only
    kind: str = "valid"


@dataclass(frozen=True)
class Delivered:
    message: Outgoing
    partition: int
    offset: int


@dataclass
class Deliveries:
    """What reached the topic, and what the broker refused (with its error)."""

    delivered: list[Delivered]
    refused: list[tuple[Outgoing, KafkaError]]

    def valid_ids(self) -> set[UUID]:
        return {d.message.workflow_id for d in self.delivered if d.message.workflow_id}


def demo_load(count: int, seed: int) -> list[Outgoing]:
    """Varied valid requests (namespaces, content types, sizes, rich stamps, intelligence)."""
    return [
        valid(
            r.workflow_id, build_request(r.workflow_id, environment=ENVIRONMENT, **r.build_kwargs())
        )
        for r in demo_requests(count, seed=seed)
    ]


def small_load(count: int) -> list[Outgoing]:
    """Plain text requests of a few hundred bytes, under fresh workflow ids."""
    messages = []
    for _ in range(count):
        workflow_id = uuid.uuid4()
        body = f"# {workflow_id}\n" + "print('stamp me')\n" * 10
        messages.append(
            valid(workflow_id, build_request(workflow_id, environment=ENVIRONMENT, content=body))
        )
    return messages


def valid(workflow_id: UUID, value: bytes) -> Outgoing:
    """A valid request keyed by its workflow id, as the README asks producers to key it."""
    return Outgoing(str(workflow_id).encode(), value, workflow_id)


def original_envelope(workflow_id: UUID, content: str) -> bytes:
    """A request as the original OmniNode producers send it: `ModelOnexEnvelopeV1` with
    envelope_version and event_version "1.0" and all of its fields, `+00:00` times."""
    return json.dumps(
        {
            "envelope_version": "1.0",
            "event_id": str(uuid.uuid4()),
            "event_type": "stamp_workflow_requested",
            "event_version": "1.0",
            "event_timestamp": datetime.now(UTC).isoformat(),
            "source_node_id": "omninode-bridge-producer-0",
            "source_service": "omninode_bridge",
            "source_version": "0.1.0",
            "correlation_id": str(workflow_id),
            "causation_id": None,
            "environment": "dev",
            "partition_key": str(workflow_id),
            "payload": {
                "workflow_id": str(workflow_id),
                "content": content,
                "file_path": "original.py",
                "content_type": "text/x-python",
                "stamp_type": "lightweight",
                "namespace": "omninode.bridge",
            },
            "metadata": {"producer": "ModelOnexEnvelopeV1"},
        }
    ).encode()


def produce(
    bootstrap: str, topic: str, messages: Iterable[Outgoing], *, max_bytes: int | None = None
) -> Deliveries:
    """Send every message in order and wait for each one's outcome.

    No compression, so a message's size on the broker is its own; `max_bytes` above the
    broker's limit lets a message reach the broker for the broker to refuse.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.max.bytes": max_bytes or BROKER_MESSAGE_MAX_BYTES,
            "log_level": 0,
        }
    )
    outcome = Deliveries([], [])
    listed = list(messages)

    def recorder(message: Outgoing) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, sent: Message) -> None:
            if error is None:
                outcome.delivered.append(Delivered(message, sent.partition(), sent.offset()))
            else:
                outcome.refused.append((message, error))

        return delivered

    for message in listed:
        produce_when_room(producer, topic, message.key, message.value, recorder(message))
    remaining = producer.flush(120)
    assert remaining == 0, f"{remaining} of {len(listed)} messages still queued after 120 s"
    return outcome


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reliability-reader"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def read_from(bootstrap: str, topic: str, start: dict[int, int]) -> list[Record]:
    """Every record from `start` (offsets per partition) to the current end, in order."""
    end = watermarks(bootstrap, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reliability-reader",
            "enable.auto.commit": False,
            "receive.message.max.bytes": RECEIVE_MAX_BYTES,
        }
    )
    position = {p: start.get(p, 0) for p, high in end.items() if high > start.get(p, 0)}
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in position.items()])
    records: list[Record] = []
    try:
        while position:
            # consume() waits for the count it is asked for: never ask for more than is left.
            left = sum(end[p] - offset for p, offset in position.items())
            batch = consumer.consume(min(left, 10_000), timeout=10)
            assert batch, f"timed out reading {topic}; partitions {sorted(position)} unread"
            for m in batch:
                assert m.error() is None, m.error()
                p = m.partition()
                if p not in position or m.offset() >= end[p]:
                    continue
                records.append(Record(p, m.offset(), m.key(), m.value()))
                position[p] = m.offset() + 1
                if position[p] >= end[p]:
                    del position[p]
    finally:
        consumer.close()
    return records
