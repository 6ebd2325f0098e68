"""Workflow events and dead letters on their way to Kafka, in order, with deterministic ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from bridge_dagster.events.envelope import encode, event_id_for, make_event, sign
from bridge_dagster.events.types import EventType
from bridge_dagster.orchestrator.fsm import WorkflowState

# Each workflow emits each event at most once per "slot"; the slot is the seq of its
# deterministic id, so a workflow processed twice republishes the same event ids.
STEP_SEQ = {"validate": 0, "intelligence": 1, "hash": 2, "stamp": 3, "record": 4}
STATE_SEQ = {
    WorkflowState.PENDING: 0,
    WorkflowState.PROCESSING: 1,
    WorkflowState.COMPLETED: 2,
    WorkflowState.FAILED: 3,
}


class DeliveryFailed(RuntimeError):
    """Kafka did not take every message; the run fails so a retry can republish."""


class Sink(Protocol):
    def produce(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None: ...

    def flush(self) -> None: ...

    def deliver(
        self, topic: str, messages: Sequence[tuple[bytes, bytes]]
    ) -> list[KafkaError | None]:
        """Send (key, value) messages and wait: each one's error, or None once delivered."""
        ...

    def has_topic(self, topic: str) -> bool: ...


class ProducerSink:
    """A confluent-kafka producer that remembers delivery errors until `flush` reports them."""

    def __init__(self, producer: Producer, flush_timeout_s: float = 30.0) -> None:
        self._producer = producer
        self._flush_timeout_s = flush_timeout_s
        self._errors: list[str] = []
        self.produced = 0

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error.str()}")

    def produce(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=headers, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                # The local queue is full: let deliveries drain, then try again.
                self._producer.poll(0.1)
        self.produced += 1
        if self.produced % 10000 == 0:
            self._producer.poll(0)

    def deliver(
        self, topic: str, messages: Sequence[tuple[bytes, bytes]]
    ) -> list[KafkaError | None]:
        # Each message's own outcome, apart from the events' errors that `flush` reports: a
        # message the broker refuses must fail only itself.
        timed_out = KafkaError(KafkaError._MSG_TIMED_OUT, "not delivered before the flush ended")
        outcomes: list[KafkaError | None] = [timed_out] * len(messages)

        def record(index: int) -> Callable[[KafkaError | None, Message], None]:
            return lambda error, _message: outcomes.__setitem__(index, error)

        for index, (key, value) in enumerate(messages):
            while True:
                try:
                    self._producer.produce(topic, value, key, on_delivery=record(index))
                    break
                except BufferError:
                    self._producer.poll(0.1)
                except KafkaException as exc:
                    # Refused before it left, e.g. over message.max.bytes.
                    outcomes[index] = exc.args[0]
                    break
        self._producer.flush(self._flush_timeout_s)
        return outcomes

    def has_topic(self, topic: str) -> bool:
        # All topics, not this one: asking for a missing topic by name may create it.
        try:
            return topic in self._producer.list_topics(timeout=self._flush_timeout_s).topics
        except KafkaException as exc:
            raise DeliveryFailed(
                f"the broker did not list its topics: {exc}; check KAFKA_BOOTSTRAP_SERVERS"
                " and the broker, then re-execute the run (it is idempotent)"
            ) from exc

    def flush(self) -> None:
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining or self._errors:
            detail = "; ".join(self._errors[:3]) or f"{remaining} still queued"
            self._errors.clear()
            raise DeliveryFailed(
                f"Kafka did not accept every event ({detail}); check KAFKA_BOOTSTRAP_SERVERS"
                " and the broker, then re-execute the run (it is idempotent)"
            )


@dataclass(frozen=True)
class OutboxEvent:
    """One encoded event on its way to the outbox: these bytes are what the topic gets."""

    event_id: UUID
    workflow_id: UUID
    topic: str
    value: bytes
    signature: bytes | None


class WorkflowEvents:
    """Builds envelope events for one topic and keeps them, in call order, until the step's
    transaction writes them to the outbox (`take`) or rolls back (`discard`)."""

    def __init__(self, topic: str, *, environment: str, signing_key: str | None = None) -> None:
        self._topic = topic
        self._environment = environment
        self._signing_key = signing_key
        self._pending: list[OutboxEvent] = []

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take(self) -> list[OutboxEvent]:
        taken, self._pending = self._pending, []
        return taken

    def discard(self) -> None:
        self._pending = []

    def emit(
        self,
        workflow_id: UUID,
        event_type: EventType,
        payload: dict[str, Any],
        *,
        seq: int = 0,
        causation_id: UUID | None = None,
    ) -> UUID:
        event_id = event_id_for(workflow_id, event_type, seq)
        envelope = make_event(
            event_type,
            {"workflow_id": str(workflow_id), **payload},
            correlation_id=workflow_id,
            causation_id=causation_id,
            event_id=event_id,
            environment=self._environment,
        )
        value = encode(envelope)
        signature = None
        if self._signing_key is not None:
            signature = sign(value, self._signing_key).encode()
        self._pending.append(OutboxEvent(event_id, workflow_id, self._topic, value, signature))
        return event_id

    def transition(
        self, workflow_id: UUID, before: WorkflowState | None, after: WorkflowState, reason: str
    ) -> None:
        self.emit(
            workflow_id,
            EventType.WORKFLOW_STATE_TRANSITION,
            {
                "from_state": None if before is None else str(before),
                "to_state": str(after),
                "reason": reason,
            },
            seq=STATE_SEQ[after],
        )

    def step_completed(self, workflow_id: UUID, step: str, **details: Any) -> None:
        self.emit(
            workflow_id,
            EventType.WORKFLOW_STEP_COMPLETED,
            {"step": step, **details},
            seq=STEP_SEQ[step],
        )
