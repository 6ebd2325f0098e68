"""The request side's dead letters as an outbox, sent after the transaction that stored them.

A step stores each dead letter, record and all, in its own transaction (`store.new_dead_letters`,
keyed by `dead_letter_key`); after the commit `relay` sends what is unsent and marks it sent.
So a rolled-back step sends nothing, a retried or re-executed one finds its letters already
stored, and what a crash left unsent goes out with the next relay, byte-identical and under
the same key. A letter the broker refuses for good (too large, not allowed) records its error
and costs only itself; a broker that does not answer fails the step, to be retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError
from sqlalchemy import Engine

from bridge_dagster.orchestrator import store
from bridge_dagster.orchestrator.events_out import DeliveryFailed, Sink

RELAY_BATCH = 1000
# Errors that say the broker is away or slow, not that it refuses this letter.
TRANSIENT = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._QUEUE_FULL,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
}


class DeadLetterTopicMissing(DeliveryFailed):
    """The dead-letter topic does not exist, and producing to it would wait or create it."""


@dataclass
class Relayed:
    sent: int = 0
    # letter_key → the broker's reason, for letters it refused for good.
    refused: dict[str, str] = field(default_factory=dict)


def relay(engine: Engine, sink: Sink, dlq_topic: str) -> Relayed:
    """Send every stored, unsent dead letter of `dlq_topic`; mark each sent or refused."""
    relayed = Relayed()
    checked_topic = False
    while True:
        with engine.begin() as conn:
            letters = store.unsent_dead_letters(conn, dlq_topic, RELAY_BATCH)
            if not letters:
                return relayed
            if not checked_topic:
                _require_topic(sink, dlq_topic)
                checked_topic = True
            outcomes = _send(sink, dlq_topic, letters)
            sent = [d.id for d, error in zip(letters, outcomes, strict=True) if error is None]
            transient = [e for e in outcomes if e is not None and _is_transient(e)]
            refused = {
                d: error
                for d, error in zip(letters, outcomes, strict=True)
                if error is not None and not _is_transient(error)
            }
            store.mark_dead_letters_sent(conn, sent)
            store.record_send_errors(conn, {d.id: e.str() for d, e in refused.items()})
        relayed.sent += len(sent)
        relayed.refused.update({d.letter_key: e.str() for d, e in refused.items()})
        if transient:
            raise DeliveryFailed(
                f"the broker did not take {len(transient)} dead letters for {dlq_topic}"
                f" ({transient[0].str()}); they stay stored and go out with the next relay:"
                " check KAFKA_BOOTSTRAP_SERVERS and the broker, then re-execute the run"
            )


def _send(sink: Sink, dlq_topic: str, letters: list[store.UnsentLetter]) -> list[KafkaError | None]:
    """Each letter's outcome. A broker that checks its limit on a whole batch refuses the
    batch's every letter for one too large, so refused letters are tried again one by one:
    only the letter that does not fit is refused for good."""
    outcomes = sink.deliver(dlq_topic, [(d.letter_key.encode(), d.value) for d in letters])
    if len(letters) == 1:
        return outcomes
    for index, (letter, error) in enumerate(zip(letters, outcomes, strict=True)):
        if error is not None and not _is_transient(error):
            [outcomes[index]] = sink.deliver(
                dlq_topic, [(letter.letter_key.encode(), letter.value)]
            )
    return outcomes


def _is_transient(error: KafkaError) -> bool:
    return error.code() in TRANSIENT


def _require_topic(sink: Sink, dlq_topic: str) -> None:
    if not sink.has_topic(dlq_topic):
        raise DeadLetterTopicMissing(
            f"the dead-letter topic {dlq_topic!r} does not exist; create it (with the request"
            " topic's partitions: `bridge-dagster dev` and the stamp_workflow job do), or"
            " change KAFKA_REQUEST_TOPIC, whose `.dlq` it is; the dead letters stay stored"
            " and go out once it exists"
        )
