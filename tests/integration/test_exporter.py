"""The exporter against the real PostgreSQL and broker: /metrics after known workflows and
materializations, parsed with prometheus-client's own parser; /health as parts go down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from bridge_dagster.devstack.kafka import EmbeddedKafka, ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.exporter.dagster_state import InstanceSource
from bridge_dagster.orchestrator import event_outbox
from bridge_dagster.orchestrator.events_out import WorkflowEvents
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.sensors.stamp_requests import REQUESTS_TAG
from tests.integration.reducer_harness import (
    PARTITIONS_START,
    land_all,
    materialize_range,
    produce_raw,
    reducer_definitions,
)
from tests.integration.workflow_harness import produce, workflow_resources

pytestmark = pytest.mark.integration

REQUEST_TOPIC = "exporter.requests"
WORKFLOW_TOPIC = "exporter.workflows"
NAMESPACE = "exporter.test"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    """A broker of this test's own, so that it can be stopped."""
    kafka = EmbeddedKafka(tmp_path / "kafka", free_port())
    kafka.start()
    ensure_topics(kafka.bootstrap_servers, [REQUEST_TOPIC, WORKFLOW_TOPIC, f"{REQUEST_TOPIC}.dlq"])
    yield kafka
    kafka.stop()


@pytest.fixture
def instance(
    pg_address: PostgresAddress, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """Dagster's storage in the test's database, where the exporter finds it."""
    # With DAGSTER_HOME set, InstanceSource opens that instance instead, as the exporter
    # does in a deployment; a developer's own DAGSTER_HOME must not take this test's runs.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    source = InstanceSource(pg_address.url())
    yield source.get()
    source.close()


def exporter_env(pg: PostgresAddress, bootstrap: str, **extra: str) -> dict[str, str]:
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTGRES_", "KAFKA_", "API_KEY", "METRICS_", "DAGSTER_HOME"))
    }
    return {
        **kept,
        **pg.env(),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_REQUEST_TOPIC": REQUEST_TOPIC,
        "KAFKA_WORKFLOW_TOPIC": WORKFLOW_TOPIC,
        "REDUCER_PARTITIONS_START": PARTITIONS_START.strftime("%Y-%m-%d-%H:00"),
        **extra,
    }


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator:
    processes: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> str:
        port = free_port()
        # From an empty directory, so neither a `.env` nor a running dev stack is picked up.
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "bridge-dagster"), "exporter", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"exporter-{port}.log").open("wb"),
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / f"exporter-{port}.log").read_text()
            try:
                httpx.get(f"{url}/health", timeout=10)
                return url
            except httpx.TransportError:
                time.sleep(0.3)
        raise AssertionError("the exporter did not answer within 60 s")

    yield start
    for process in processes:
        process.terminate()
        process.wait(30)


def beat_every_daemon(instance: dg.DagsterInstance, at: float) -> None:
    # No daemon runs in this test (it would cost a core for minutes): these are the rows the
    # daemon writes every 30 s, written through the same instance API it uses.
    from dagster._daemon.types import DaemonHeartbeat

    for daemon in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(at, daemon, str(uuid.uuid4()), None))


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def run_known_workflows(
    pg: PostgresAddress, bootstrap: str, instance: dg.DagsterInstance, root: Path
) -> None:
    """Three workflows that complete and one that fails validation, in one run."""
    requests = [
        {"workflow_id": str(uuid.uuid4()), "content": f"print({i})\n", "namespace": NAMESPACE}
        for i in range(3)
    ]
    requests.append(
        {
            "workflow_id": str(uuid.uuid4()),
            "content": "x",
            "namespace": NAMESPACE,
            "stamp_type": "golden",
        }
    )
    resources = workflow_resources(pg, bootstrap, REQUEST_TOPIC, WORKFLOW_TOPIC, root)
    result = stamp_workflow.execute_in_process(
        run_config={"ops": {"load_requests": {"config": {"requests": requests}}}},
        resources=resources,
        instance=instance,
    )
    assert result.success


def test_metrics_count_the_stored_workflows_aggregations_queues_and_lag_and_health_names_a_stopped_broker(  # noqa: E501
    pg_address: PostgresAddress,
    broker: EmbeddedKafka,
    instance: dg.DagsterInstance,
    project_root: Path,
    start_exporter,
) -> None:
    bootstrap = broker.bootstrap_servers
    run_known_workflows(pg_address, bootstrap, instance, project_root)
    engine = create_engine(pg_address.url())
    landed = land_all(engine, bootstrap, WORKFLOW_TOPIC).landed
    defs = reducer_definitions(pg_address, bootstrap, WORKFLOW_TOPIC, "exporter.reducer")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    materialize_range(defs, instance, hour, hour)
    # Waiting work: a running run holding 7 requests, 5 requests no run has taken, and 2
    # events landing has not read.
    instance.add_run(
        dg.DagsterRun(
            job_name=stamp_workflow.name,
            status=dg.DagsterRunStatus.STARTED,
            tags={REQUESTS_TAG: "7"},
        )
    )
    produce(bootstrap, REQUEST_TOPIC, [(b"k", b"{}")] * 5)
    produce_raw(bootstrap, WORKFLOW_TOPIC, [b"late", b"later"])
    # Two events committed while the broker was away: in the outbox, not yet relayed.
    unsent = WorkflowEvents(WORKFLOW_TOPIC, environment="test")
    for step in ("validate", "hash"):
        unsent.step_completed(uuid.uuid4(), step)
    with engine.begin() as conn:
        event_outbox.write(conn, unsent.take())
    beat_every_daemon(instance, time.time())

    url = start_exporter(exporter_env(pg_address, bootstrap))
    samples = scrape(url)

    assert total(samples, "workflow_orchestration_total", status="completed") == 3
    assert total(samples, "workflow_orchestration_total", status="failed") == 1
    assert total(samples, "workflow_orchestration_total", namespace=NAMESPACE) == 4
    assert total(samples, "workflow_orchestration_errors_total", code="bad_stamp_type") == 1
    assert total(samples, "workflow_orchestration_duration_ms_count", status="completed") == 3
    assert total(samples, "workflow_queue_size") == 7
    hourly_tables = {"reducer_namespace_hourly", "reducer_content_type_hourly"}
    for table in hourly_tables:
        assert total(samples, "aggregation_duration_ms_count", asset=table) == 1
        assert total(samples, "aggregation_items_total", asset=table) == landed
    assert total(samples, "aggregation_errors_total") == 0
    assert total(samples, "aggregation_queue_size") == 0
    assert total(samples, "bridge_workflow_outbox_unsent_events") == 2
    assert total(samples, "bridge_consumer_lag", consumer="stamp_request_sensor") == 5
    assert total(samples, "bridge_consumer_lag", consumer="landing") == 2
    assert total(samples, "bridge_exporter_source_up") == 3

    healthy = httpx.get(f"{url}/health", timeout=30)
    assert healthy.status_code == 200, healthy.text
    assert healthy.json()["failing"] == []

    broker.stop()
    started = time.monotonic()
    down = httpx.get(f"{url}/health", timeout=30)
    assert down.status_code == 503
    assert down.json()["failing"] == ["kafka"]
    assert "KAFKA_BOOTSTRAP_SERVERS" in down.json()["components"]["kafka"]["fix"]
    assert time.monotonic() - started < 10, "a probe must answer in bounded time"
    assert scrape(url)[("bridge_exporter_source_up", (("source", "kafka"),))] == 0


def test_health_names_the_daemon_when_its_heartbeat_is_old(
    pg_address: PostgresAddress,
    broker: EmbeddedKafka,
    instance: dg.DagsterInstance,
    start_exporter,
) -> None:
    beat_every_daemon(instance, time.time() - 600)
    url = start_exporter(exporter_env(pg_address, broker.bootstrap_servers))
    response = httpx.get(f"{url}/health", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["daemon"]
    assert "no heartbeat within 120 s" in body["components"]["daemon"]["error"]


def test_metrics_need_an_api_key_when_asked_and_health_stays_open(
    pg_address: PostgresAddress,
    broker: EmbeddedKafka,
    start_exporter,
) -> None:
    env = exporter_env(
        pg_address,
        broker.bootstrap_servers,
        API_KEY="new-key-0123456789",
        API_KEY_PREVIOUS="old-key-0123456789",
        METRICS_REQUIRE_API_KEY="true",
    )
    url = start_exporter(env)
    assert httpx.get(f"{url}/metrics", timeout=30).status_code == 401
    wrong = {"X-API-Key": "guess"}
    assert httpx.get(f"{url}/metrics", headers=wrong, timeout=30).status_code == 401
    assert scrape(url, **{"X-API-Key": "new-key-0123456789"})
    assert scrape(url, Authorization="Bearer old-key-0123456789")
    assert httpx.get(f"{url}/health", timeout=30).status_code in (200, 503)
