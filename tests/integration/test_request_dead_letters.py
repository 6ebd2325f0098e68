"""Dead letters of the request side: bounded in size, and sent once per rejected message."""

import json
import os
import re
import uuid
from pathlib import Path

import blake3
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Engine, text

from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import MAX_DEAD_LETTER_BYTES, parse_dead_letter
from bridge_dagster.orchestrator import workflow
from bridge_dagster.orchestrator.dead_letter_outbox import DeadLetterTopicMissing
from bridge_dagster.orchestrator.jobs import stamp_workflow
from tests.conftest import Topics
from tests.integration.workflow_harness import (
    direct_context,
    engine_for,
    fail_once,
    read_all,
    whole_topic_ranges,
    workflow_resources,
)

pytestmark = pytest.mark.integration

# Quotes double when the record escapes its original as JSON text, and base64 adds a third:
# the unbounded record of this message would be about 1.5 MB, over the broker's 1 MB limit.
HUGE_MALFORMED = b'{"workflow_id": "' + b'"' * 420_000


def _produce_to_partition_0(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(30) == 0


def _partition_0(bootstrap: str, topic: str) -> list[workflow.Incoming]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dl-test"})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, low)])
    messages = consumer.consume(high - low, timeout=10) if high > low else []
    consumer.close()
    return [workflow.Incoming.from_message(m) for m in messages]


def _fail_once_at(engine: Engine, timing: str) -> None:
    """Make the next write of a dead_letters row fail once, at `timing`."""
    event, at_commit = {"commit": ("INSERT", True), "mark_sent": ("UPDATE", False)}[timing]
    fail_once(
        engine, "dead_letters", event, at_commit=at_commit, message="injected database failure"
    )


def test_a_420_kb_malformed_request_gets_a_bounded_dead_letter_and_its_batch_completes(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    valid = [uuid.uuid4(), uuid.uuid4()]
    _produce_to_partition_0(
        kafka_bootstrap,
        topics.requests,
        [
            build_request(valid[0], environment="test", content="one\n"),
            HUGE_MALFORMED,
            build_request(valid[1], environment="test", content="two\n"),
        ],
    )

    result = stamp_workflow.execute_in_process(
        run_config=whole_topic_ranges(kafka_bootstrap, topics.requests),
        resources=workflow_resources(
            pg_address, kafka_bootstrap, topics.requests, topics.workflow, project_root
        ),
    )

    assert result.success
    with engine_for(pg_address).connect() as conn:
        rows = conn.execute(text("SELECT workflow_id, state FROM workflow_executions"))
        states = dict(rows.all())
    assert states == dict.fromkeys(valid, "completed")
    [(_, _, _, value)] = read_all(kafka_bootstrap, topics.requests_dlq)
    assert len(value) <= MAX_DEAD_LETTER_BYTES
    letter = parse_dead_letter(value)
    assert letter["reason"].startswith("bad_json")
    assert f"of {len(HUGE_MALFORMED)} bytes" in letter["reason"]
    assert blake3.blake3(HUGE_MALFORMED).hexdigest() in letter["reason"]
    assert letter["original"] is not None and HUGE_MALFORMED.startswith(letter["original"])


def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(15)


def test_a_missing_dead_letter_topic_is_created_with_the_request_topics_partitions(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    _delete_topic(kafka_bootstrap, topics.requests_dlq)
    _produce_to_partition_0(kafka_bootstrap, topics.requests, [b"not json"])

    result = stamp_workflow.execute_in_process(
        run_config=whole_topic_ranges(kafka_bootstrap, topics.requests),
        resources=workflow_resources(
            pg_address, kafka_bootstrap, topics.requests, topics.workflow, project_root
        ),
    )

    assert result.success
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert len(admin.list_topics(timeout=10).topics[topics.requests_dlq].partitions) == 3
    [(_, _, _, value)] = read_all(kafka_bootstrap, topics.requests_dlq)
    assert parse_dead_letter(value)["reason"].startswith("bad_json")


def test_a_dead_letter_the_broker_refuses_fails_only_itself_and_the_run_goes_on(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    # A topic whose limit is below one letter and above the other: random bytes, so that
    # compression cannot bring the big letter under it.
    _delete_topic(kafka_bootstrap, topics.requests_dlq)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    small_limit = NewTopic(topics.requests_dlq, 3, config={"max.message.bytes": "4000"})
    admin.create_topics([small_limit])[topics.requests_dlq].result(15)
    big = b"\xff" + os.urandom(6000)
    valid = uuid.uuid4()
    _produce_to_partition_0(
        kafka_bootstrap,
        topics.requests,
        [big, b"not json", build_request(valid, environment="test", content="fine\n")],
    )

    result = stamp_workflow.execute_in_process(
        run_config=whole_topic_ranges(kafka_bootstrap, topics.requests),
        resources=workflow_resources(
            pg_address, kafka_bootstrap, topics.requests, topics.workflow, project_root
        ),
    )

    assert result.success
    [(_, _, _, value)] = read_all(kafka_bootstrap, topics.requests_dlq)
    assert parse_dead_letter(value)["original"] == b"not json"
    with engine_for(pg_address).connect() as conn:
        refused = conn.execute(
            text("SELECT send_error FROM dead_letters WHERE sent_at IS NULL")
        ).scalars()
        assert [error for error in refused if "too large" in error.lower()] != []
        state = conn.execute(
            text("SELECT state FROM workflow_executions WHERE workflow_id = :w"), {"w": valid}
        )
        assert state.scalar_one() == "completed"


def test_without_its_dead_letter_topic_the_workflow_steps_name_it_and_keep_the_letter(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    _delete_topic(kafka_bootstrap, topics.requests_dlq)
    _produce_to_partition_0(kafka_bootstrap, topics.requests, [b"not json"])
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root)

    with pytest.raises(DeadLetterTopicMissing, match=re.escape(repr(topics.requests_dlq))):
        workflow.admit(ctx, _partition_0(kafka_bootstrap, topics.requests))

    with ctx.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM dead_letters WHERE sent_at IS NULL"))
        assert stored.scalar_one() == 1
    assert (
        topics.requests_dlq
        not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    )


def test_a_database_error_at_commit_leaves_one_dead_letter_after_the_retry(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    _produce_to_partition_0(kafka_bootstrap, topics.requests, [b"not json"])
    incoming = _partition_0(kafka_bootstrap, topics.requests)
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root)
    _fail_once_at(ctx.engine, "commit")

    with pytest.raises(Exception, match="injected database failure"):
        workflow.admit(ctx, incoming)
    workflow.admit(ctx, incoming)

    assert len(read_all(kafka_bootstrap, topics.requests_dlq)) == 1


def test_a_database_error_after_sending_resends_the_same_bytes_under_the_same_key(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    _produce_to_partition_0(kafka_bootstrap, topics.requests, [b"not json"])
    incoming = _partition_0(kafka_bootstrap, topics.requests)
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root)
    _fail_once_at(ctx.engine, "mark_sent")

    with pytest.raises(Exception, match="injected database failure"):
        workflow.admit(ctx, incoming)
    workflow.admit(ctx, incoming)

    published = {
        (key, value) for _, _, key, value in read_all(kafka_bootstrap, topics.requests_dlq)
    }
    assert len(published) == 1
    with ctx.engine.connect() as conn:
        unsent = conn.execute(text("SELECT count(*) FROM dead_letters WHERE sent_at IS NULL"))
        assert unsent.scalar_one() == 0


def test_bad_messages_at_reused_offsets_of_a_recreated_topic_are_each_dead_lettered(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    ctx = direct_context(pg_address, kafka_bootstrap, topics, project_root)
    _produce_to_partition_0(kafka_bootstrap, topics.requests, [b"first bad", b"same bad"])
    workflow.admit(ctx, _partition_0(kafka_bootstrap, topics.requests))
    _delete_topic(kafka_bootstrap, topics.requests)
    ensure_topics(kafka_bootstrap, [topics.requests])
    # Offset 0 now holds other bytes, offset 1 the same bytes sent anew.
    _produce_to_partition_0(kafka_bootstrap, topics.requests, [b"second bad", b"same bad"])

    workflow.admit(ctx, _partition_0(kafka_bootstrap, topics.requests))

    letters = [
        parse_dead_letter(v) for _, _, _, v in read_all(kafka_bootstrap, topics.requests_dlq)
    ]
    assert sorted((d["offset"], d["original"]) for d in letters) == [
        (0, b"first bad"),
        (0, b"second bad"),
        (1, b"same bad"),
        (1, b"same bad"),
    ]


def test_a_launchpad_run_executed_again_dead_letters_its_bad_request_once(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    bad = {"workflow_id": str(uuid.uuid4()), "content": "x", "stamp_type": "golden"}
    config = {"ops": {"load_requests": {"config": {"requests": [bad]}}}}
    resources = workflow_resources(
        pg_address, kafka_bootstrap, topics.requests, topics.workflow, project_root
    )

    for _ in range(2):
        assert stamp_workflow.execute_in_process(run_config=config, resources=resources).success

    [(_, _, _, value)] = read_all(kafka_bootstrap, topics.requests_dlq)
    assert json.loads(parse_dead_letter(value)["original"] or b"{}")["payload"]["stamp_type"] == (
        "golden"
    )
