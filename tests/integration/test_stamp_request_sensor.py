"""The request sensor against the real broker: ticks as the daemon would evaluate them."""

import time
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.postgres import PostgresResource
from bridge_dagster.sensors.cursor import Cursor
from bridge_dagster.sensors.stamp_requests import build_stamp_request_sensor
from tests.conftest import Topics
from tests.integration.workflow_harness import postgres_resource

pytestmark = pytest.mark.integration

MAX_PER_RUN = 4
MAX_QUEUE = 20


@dg.op(
    config_schema={
        "ranges": [{"topic": str, "partition": int, "start": int, "end": int}],
        "requests": dg.Field([dg.Permissive()], default_value=[]),
    }
)
def load_requests(context: dg.OpExecutionContext) -> int:
    return sum(r["end"] - r["start"] for r in context.op_config["ranges"])


@dg.job
def stamp_workflow() -> None:
    load_requests()


# Dagster only queues runs that name the code location the daemon will launch them from.
QUEUE_ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("bridge_dagster"), "__repository__"),
    "stamp_workflow",
)

sensor = build_stamp_request_sensor(
    stamp_workflow,
    max_requests_per_run=MAX_PER_RUN,
    max_queue_size=MAX_QUEUE,
    interval_s=5,
    max_workflow_attempts=3,
)


# Each test's ticks record their ranges in that test's own database (the ledger is real).
_ledger: dict[str, PostgresResource] = {}


@pytest.fixture(autouse=True)
def ledger(pg_address: PostgresAddress) -> Iterator[None]:
    _ledger["postgres"] = postgres_resource(pg_address)
    yield
    _ledger.clear()


def kafka(bootstrap: str, topic: str, timeout_s: float = 10.0) -> KafkaResource:
    return KafkaResource(
        bootstrap_servers=bootstrap,
        request_topic=topic,
        workflow_topic="unused",
        timeout_s=timeout_s,
    )


def tick(
    resource: KafkaResource,
    cursor: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.SensorResult:
    """One tick, with a skip reason returned alone shown as a result without runs."""
    with dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"kafka": resource, **_ledger},
    ) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return dg.SensorResult(skip_reason=result, cursor=cursor)
    return result


def skip_message(result: dg.SensorResult) -> str:
    assert result.skip_reason is not None, f"expected a skip, got {result.run_requests}"
    return result.skip_reason.skip_message or ""


def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in per_partition.items():
        for n in range(count):
            producer.produce(topic, value=f"request {n}".encode(), partition=partition)
    assert producer.flush(15) == 0


def add_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, *, requests: int) -> None:
    """A stamp_workflow run in `status` holding `requests` offsets, as the sensor tags them."""
    ranges = [{"topic": "requests", "partition": 0, "start": 0, "end": requests}]
    instance.create_run_for_job(
        stamp_workflow,
        run_config={"ops": {"load_requests": {"config": {"ranges": ranges}}}},
        status=status,
        tags={"bridge/requests": str(requests)},
        remote_job_origin=QUEUE_ORIGIN,
    )


def launch(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """Queue the tick's runs, as the daemon does before the next tick."""
    for request in result.run_requests:
        instance.create_run_for_job(
            stamp_workflow,
            run_config=request.run_config,
            status=dg.DagsterRunStatus.QUEUED,
            tags=request.tags,
            remote_job_origin=QUEUE_ORIGIN,
        )


def offsets_requested(result: dg.SensorResult) -> list[tuple[int, int]]:
    """Every (partition, offset) the tick's runs will load, in the order they list them."""
    return [
        (r["partition"], offset)
        for request in result.run_requests
        for r in request.run_config["ops"]["load_requests"]["config"]["ranges"]
        for offset in range(r["start"], r["end"])
    ]


def every_offset(per_partition: dict[int, int]) -> list[tuple[int, int]]:
    return [(p, o) for p, count in per_partition.items() for o in range(count)]


def test_the_sensor_is_named_runs_by_default_and_ticks_at_the_interval() -> None:
    assert (sensor.name, sensor.default_status, sensor.minimum_interval_seconds) == (
        "stamp_request_sensor",
        dg.DefaultSensorStatus.RUNNING,
        5,
    )
    assert sensor.job_name == "stamp_workflow"


def test_new_requests_are_requested_exactly_once_in_bounded_runs(
    kafka_bootstrap: str, topics: Topics
) -> None:
    sent = {0: 5, 1: 2, 2: 6}
    produce(kafka_bootstrap, topics.requests, sent)

    result = tick(kafka(kafka_bootstrap, topics.requests))

    assert sorted(offsets_requested(result)) == every_offset(sent)
    assert len(result.run_requests) == 4  # 13 requests, at most 4 per run
    assert Cursor.from_json(result.cursor).offsets == sent


def test_each_run_is_tagged_with_its_request_count_and_source(
    kafka_bootstrap: str, topics: Topics
) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 6})

    result = tick(kafka(kafka_bootstrap, topics.requests))

    assert [(r.tags["bridge/requests"], r.tags["bridge/source"]) for r in result.run_requests] == [
        ("4", "kafka"),
        ("2", "kafka"),
    ]


def test_run_config_is_accepted_by_a_job_with_the_load_requests_contract(
    kafka_bootstrap: str, topics: Topics
) -> None:
    produce(kafka_bootstrap, topics.requests, {1: 3})
    [request] = tick(kafka(kafka_bootstrap, topics.requests)).run_requests

    run = stamp_workflow.execute_in_process(run_config=request.run_config)

    assert run.output_for_node("load_requests") == 3


def test_a_second_tick_with_nothing_new_skips(kafka_bootstrap: str, topics: Topics) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 3})
    resource = kafka(kafka_bootstrap, topics.requests)
    instance = dg.DagsterInstance.ephemeral()
    first = tick(resource, instance=instance)
    launch(instance, first)

    second = tick(resource, cursor=first.cursor, instance=instance)

    assert second.run_requests == []
    assert skip_message(second) == f"no new requests on {topics.requests}"


def test_the_next_tick_requests_only_what_arrived_since(
    kafka_bootstrap: str, topics: Topics
) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 3})
    resource = kafka(kafka_bootstrap, topics.requests)
    instance = dg.DagsterInstance.ephemeral()
    first = tick(resource, instance=instance)
    launch(instance, first)
    produce(kafka_bootstrap, topics.requests, {0: 2, 2: 1})

    second = tick(resource, cursor=first.cursor, instance=instance)

    assert sorted(offsets_requested(second)) == [(0, 3), (0, 4), (2, 0)]


def test_a_missing_topic_skips_and_says_how_to_fix_it(kafka_bootstrap: str) -> None:
    missing = f"test.missing.{uuid.uuid4().hex[:10]}"

    result = tick(kafka(kafka_bootstrap, missing))

    assert result.run_requests == []
    assert f"topic {missing!r} does not exist" in skip_message(result)
    assert "KAFKA_REQUEST_TOPIC" in skip_message(result)


def test_an_unreachable_broker_skips_quickly() -> None:
    cursor = Cursor("requests", 0, {0: 7}).to_json()
    started = time.monotonic()

    result = tick(kafka(f"127.0.0.1:{free_port()}", "requests", timeout_s=1), cursor=cursor)

    assert time.monotonic() - started < 10
    assert result.run_requests == []
    assert "KAFKA_BOOTSTRAP_SERVERS" in skip_message(result)


def test_a_full_queue_skips_with_the_numbers_and_the_settings_to_raise(
    kafka_bootstrap: str, topics: Topics
) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 3})
    instance = dg.DagsterInstance.ephemeral()
    for status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED):
        add_run(instance, status, requests=MAX_QUEUE // 2)

    result = tick(kafka(kafka_bootstrap, topics.requests), instance=instance)

    assert result.run_requests == []
    assert skip_message(result).startswith(
        f"backpressure: {MAX_QUEUE} requests in 2 stamp_workflow runs are queued or running"
    )
    assert "raise MAX_WORKFLOW_QUEUE_SIZE or ORCHESTRATOR_CONCURRENCY" in skip_message(result)


def test_a_nearly_full_queue_admits_only_what_fits(kafka_bootstrap: str, topics: Topics) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 5})
    instance = dg.DagsterInstance.ephemeral()
    add_run(instance, dg.DagsterRunStatus.QUEUED, requests=MAX_QUEUE - 2)

    result = tick(kafka(kafka_bootstrap, topics.requests), instance=instance)

    assert offsets_requested(result) == [(0, 0), (0, 1)]
    assert Cursor.from_json(result.cursor).offsets[0] == 2


def test_finished_runs_do_not_hold_back_new_requests(kafka_bootstrap: str, topics: Topics) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 1})
    instance = dg.DagsterInstance.ephemeral()
    add_run(instance, dg.DagsterRunStatus.SUCCESS, requests=MAX_QUEUE)

    result = tick(kafka(kafka_bootstrap, topics.requests), instance=instance)

    assert offsets_requested(result) == [(0, 0)]


def test_a_cursor_past_the_high_watermark_starts_again_with_new_run_keys(
    kafka_bootstrap: str, topics: Topics
) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 2, 1: 1})
    recreated = Cursor(topics.requests, 0, {0: 500, 1: 0, 2: 0}).to_json()

    result = tick(kafka(kafka_bootstrap, topics.requests), cursor=recreated)

    assert offsets_requested(result) == [(0, 0), (0, 1), (1, 0)]
    assert [r.run_key for r in result.run_requests] == [f"{topics.requests}/g1/p0:0-2,p1:0-1"]
    assert Cursor.from_json(result.cursor).generation == 1


def test_a_reset_is_reported_as_a_warning_naming_the_partition(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 2})
    recreated = Cursor(topics.requests, 0, {0: 500}).to_json()

    tick(kafka(kafka_bootstrap, topics.requests), cursor=recreated)

    assert (
        f"WARNING - {topics.requests}[0]: cursor 500 is past the high watermark 2; the topic was"
        " recreated, so reading starts again at offset 0"
    ) in capsys.readouterr().err


def test_requests_deleted_by_retention_are_skipped_and_reported(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    produce(kafka_bootstrap, topics.requests, {0: 5})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for done in admin.delete_records([TopicPartition(topics.requests, 0, 3)]).values():
        done.result(timeout=10)

    result = tick(
        kafka(kafka_bootstrap, topics.requests), cursor=Cursor(topics.requests, 0, {0: 1}).to_json()
    )

    assert offsets_requested(result) == [(0, 3), (0, 4)]
    assert (
        f"{topics.requests}[0]: 2 requests (offsets [1, 3)) were deleted by retention"
        in capsys.readouterr().err
    )


def test_a_malformed_cursor_skips_and_shows_a_good_one(
    kafka_bootstrap: str, topics: Topics
) -> None:
    result = tick(kafka(kafka_bootstrap, topics.requests), cursor="{broken")

    assert result.run_requests == []
    assert "set it in the Dagster UI to JSON like" in skip_message(result)
