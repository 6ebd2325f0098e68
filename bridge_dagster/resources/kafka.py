"""Kafka as a Dagster resource: producers, offset reads and watermarks for one broker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import Field, PrivateAttr

from bridge_dagster.events.topics import PRODUCER_MESSAGE_MAX_BYTES
from bridge_dagster.settings import KafkaSecurity

# librdkafka's upper bound for receive.message.max.bytes.
RECEIVE_MAX_BYTES = 2_147_483_647


class BrokerUnavailable(RuntimeError):
    """The broker did not answer in time; sensors turn this into a skip reason."""


class TopicMissing(RuntimeError):
    """The topic does not exist on the broker."""


class KafkaResource(dg.ConfigurableResource):
    """Clients are made on first use and closed when the run or tick ends."""

    bootstrap_servers: str = Field(
        description="KAFKA_BOOTSTRAP_SERVERS: the broker list, host:port[,host:port…]"
    )
    request_topic: str = Field(
        description="KAFKA_REQUEST_TOPIC: stamp requests are read from here; rejected ones go"
        " to `<topic>.dlq`"
    )
    workflow_topic: str = Field(
        description="KAFKA_WORKFLOW_TOPIC: workflow events are published here and landed from here"
    )
    timeout_s: float = Field(
        default=10.0, description="Seconds to wait for the broker's answer before giving up"
    )
    security_protocol: str = Field(default="plaintext", description="KAFKA_SECURITY_PROTOCOL")
    sasl_mechanism: str | None = Field(default=None, description="KAFKA_SASL_MECHANISM")
    sasl_username: str | None = Field(default=None, description="KAFKA_SASL_USERNAME")
    sasl_password: str | None = Field(
        default=None, description="KAFKA_SASL_PASSWORD (an EnvVar, so the UI shows its name)"
    )
    ssl_ca_location: str | None = Field(default=None, description="KAFKA_SSL_CA_LOCATION")

    _producer: Producer | None = PrivateAttr(default=None)

    def client_config(self, tuning: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration of every client this resource makes: the broker and the
        security settings, then the client's own librdkafka `tuning`."""
        security = KafkaSecurity(
            protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=self.sasl_password,
            ssl_ca_location=self.ssl_ca_location,
        )
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **security.client_config(),
            **tuning,
        }

    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                self.client_config(
                    {
                        # Idempotence keeps a retried send from writing an event twice.
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": 5,
                        "batch.num.messages": 10000,
                        "compression.type": "lz4",
                        "queue.buffering.max.messages": 500000,
                        # Said outright rather than left to librdkafka's default: below the
                        # broker's max.message.bytes, and above every bounded dead letter.
                        "message.max.bytes": PRODUCER_MESSAGE_MAX_BYTES,
                    }
                )
            )
        return self._producer

    @contextmanager
    def consumer(self) -> Iterator[Consumer]:
        consumer = Consumer(
            self.client_config(
                {
                    # Offsets live in the sensor cursor, never in a consumer group.
                    "group.id": "bridge-dagster-reader",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "socket.timeout.ms": int(self.timeout_s * 1000),
                    # The embedded broker answers a fetch with everything from the offset on,
                    # ignoring fetch.max.bytes; a backlog over librdkafka's default 100 MB
                    # receive limit would never be read. Real brokers keep to fetch.max.bytes.
                    "receive.message.max.bytes": RECEIVE_MAX_BYTES,
                }
            )
        )
        try:
            yield consumer
        finally:
            consumer.close()

    def partitions(self, consumer: Consumer, topic: str) -> list[int]:
        try:
            metadata = consumer.list_topics(topic, timeout=self.timeout_s)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"broker {self.bootstrap_servers} did not answer: {exc}"
            ) from exc
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise TopicMissing(f"topic {topic!r} does not exist on {self.bootstrap_servers}")
        return sorted(info.partitions)

    def watermarks(self, consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
        """Low and high watermark per partition."""
        marks = {}
        for partition in self.partitions(consumer, topic):
            try:
                marks[partition] = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self.timeout_s
                )
            except KafkaException as exc:
                raise BrokerUnavailable(
                    f"broker {self.bootstrap_servers} did not report offsets: {exc}"
                ) from exc
        return marks

    def read_range(
        self, consumer: Consumer, topic: str, partition: int, start: int, end: int
    ) -> list[Message]:
        """Messages with offsets in [start, end), in order."""
        if end <= start:
            return []
        consumer.assign([TopicPartition(topic, partition, start)])
        messages: list[Message] = []
        while True:
            after = messages[-1].offset() + 1 if messages else start
            # Ask for no more than the range still holds: consume() waits for the count.
            batch = consumer.consume(min(end - after, 5000), timeout=self.timeout_s)
            if not batch:
                raise BrokerUnavailable(
                    f"no messages from {topic}[{partition}] at offset {after} within"
                    f" {self.timeout_s:.0f} s although the range ends at {end}; check that the"
                    f" broker at {self.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) is up, then"
                    " re-execute the run (safe: every step is idempotent)"
                )
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        # The end of the log: offsets past it (transaction markers, or a
                        # topic that was cut short) hold nothing to wait for.
                        consumer.unassign()
                        return messages
                    raise KafkaException(error)
                if message.offset() >= end:
                    consumer.unassign()
                    return messages
                messages.append(message)
            if messages and messages[-1].offset() >= end - 1:
                consumer.unassign()
                return messages

    def ensure_topic(self, topic: str, *, like: str) -> None:
        """Create `topic` with the partitions of `like` if it does not exist yet."""
        admin = AdminClient(self.client_config({}))
        try:
            existing = admin.list_topics(timeout=self.timeout_s).topics
            if topic in existing:
                return
            partitions = len(existing[like].partitions) if like in existing else 1
            future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
            future.result(timeout=self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            raise TopicMissing(
                f"topic {topic!r} does not exist on {self.bootstrap_servers} and could not be"
                f" created ({exc}); create it with the partitions of {like!r}, or grant this"
                " client the right to create topics"
            ) from exc

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None
