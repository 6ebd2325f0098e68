"""Shared pieces for landing and reducer tests against the real PostgreSQL and broker."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, Producer
from sqlalchemy import Engine

from bridge_dagster.events.envelope import EventEnvelope, encode, sign
from bridge_dagster.reducer.landing import LandingConfig, LandingResult, land
from bridge_dagster.resources.kafka import RECEIVE_MAX_BYTES

NOW = datetime.now(UTC)
# Two hours back, so every test stream lies in complete hours inside the partition range.
BASE_HOUR = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


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
        out.produce(topic, value, key, headers=headers)
        sent += 1
        if sent % 10_000 == 0:
            out.poll(0)
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
) -> LandingResult:
    config = LandingConfig(
        topic=topic,
        batch_size=batch_size,
        max_events=10_000_000,
        retention_days=30,
        signing_key=signing_key,
    )
    reader, writer = consumer(bootstrap), producer(bootstrap)
    try:
        return land(engine, reader, writer, config)
    finally:
        reader.close()
