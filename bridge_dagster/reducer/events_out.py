"""Reducer events (aggregation_started / completed / failed) on KAFKA_REDUCER_TOPIC."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from bridge_dagster.events.envelope import encode, make_event, sign
from bridge_dagster.events.types import EventType

SOURCE_SERVICE = "bridge-dagster-reducer"


def publish(
    producer: Producer,
    topic: str,
    event_type: EventType,
    payload: dict[str, Any],
    *,
    environment: str,
    signing_key: str | None,
) -> None:
    """Produce one reducer event and wait for the broker to take it."""
    envelope = make_event(
        event_type,
        payload,
        correlation_id=None,
        source_service=SOURCE_SERVICE,
        environment=environment,
    )
    value = encode(envelope)
    headers = None if signing_key is None else [("x-signature", sign(value, signing_key))]
    # Keyed by the table, so one table's events stay in order in one partition.
    producer.produce(topic, value, str(payload["asset"]).encode(), headers=headers)
    if producer.flush(30):
        raise RuntimeError(
            f"the broker did not take the {event_type} event for {payload['asset']} on {topic}"
            " within 30 s; check KAFKA_BOOTSTRAP_SERVERS"
        )
