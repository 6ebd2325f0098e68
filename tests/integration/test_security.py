"""Security through the real parts: signed events through a real landing run, API keys on
the real services during a rotation, and secrets that never reach Dagster's storage."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
from confluent_kafka import Producer
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.cli.main import _service_app
from bridge_dagster.definitions import build_resources
from bridge_dagster.devstack.kafka import ensure_topics
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events import synthetic
from bridge_dagster.events.envelope import encode, sign
from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import dlq_topic, parse_dead_letter
from bridge_dagster.exporter.dagster_state import InstanceSource
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.reducer.jobs import land_workflow_events
from bridge_dagster.resources.kafka import KafkaResource
from bridge_dagster.resources.reducer_settings import ReducerSettings
from bridge_dagster.sensors.stamp_requests import build_stamp_request_sensor
from bridge_dagster.settings import load_settings
from tests.conftest import Topics
from tests.integration.onextree_server import serve
from tests.integration.reducer_harness import BASE_HOUR
from tests.integration.workflow_harness import postgres_resource, produce, read_all

pytestmark = pytest.mark.integration

SIGNING_KEY = "the-landing-key"


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def signed_stream_with_three_bad_events(bootstrap: str, topic: str) -> set[str]:
    """Produce 4 well-signed events, one signed with another key, one altered after signing
    and one unsigned; return the ids of the well-signed ones."""
    flows = synthetic.workflows(
        1, start=BASE_HOUR, spread=timedelta(minutes=30), namespaces=["sec"], failure_rate=0
    )
    events = list(synthetic.stream(flows, environment="test"))[:7]
    producer = Producer({"bootstrap.servers": bootstrap})
    for envelope in events[:4]:
        value = encode(envelope)
        producer.produce(topic, value, headers=[("x-signature", sign(value, SIGNING_KEY))])
    wrong_key = encode(events[4])
    producer.produce(topic, wrong_key, headers=[("x-signature", sign(wrong_key, "another-key"))])
    original = encode(events[5])
    altered = original.replace(b'"environment":"test"', b'"environment":"prod"')
    assert altered != original
    producer.produce(topic, altered, headers=[("x-signature", sign(original, SIGNING_KEY))])
    producer.produce(topic, encode(events[6]))
    assert producer.flush(30) == 0
    return {str(e.event_id) for e in events[:4]}


def test_a_landing_run_with_signing_on_dead_letters_wrong_key_altered_and_unsigned_events(
    pg_address: PostgresAddress, engine: Engine, kafka_bootstrap: str, topics: Topics
) -> None:
    ensure_topics(kafka_bootstrap, [dlq_topic(topics.workflow)])
    good = signed_stream_with_three_bad_events(kafka_bootstrap, topics.workflow)
    result = land_workflow_events.execute_in_process(
        resources={
            "postgres": postgres_resource(pg_address),
            "kafka": KafkaResource(
                bootstrap_servers=kafka_bootstrap,
                request_topic=topics.requests,
                workflow_topic=topics.workflow,
            ),
            "reducer_settings": ReducerSettings(environment="test", signing_key=SIGNING_KEY),
        }
    )
    assert result.success
    with engine.connect() as conn:
        landed = {
            str(i) for i in conn.execute(text("SELECT event_id FROM workflow_events")).scalars()
        }
        codes = conn.execute(text("SELECT code FROM dead_letters")).scalars().all()
    assert landed == good
    assert codes == ["bad_signature"] * 3
    dead = read_all(kafka_bootstrap, dlq_topic(topics.workflow))
    reasons = sorted(parse_dead_letter(value)["reason"] for *_, value in dead)
    assert len(reasons) == 3
    assert all(reason.startswith("bad_signature") for reason in reasons)
    assert any("no x-signature header" in reason for reason in reasons)


@pytest.mark.parametrize("service", ["stamping", "onextree"])
def test_during_a_rotation_the_services_take_the_new_and_the_old_key_and_refuse_others(
    service: str, tmp_path: Path
) -> None:
    settings = load_settings(
        {
            "API_KEY": "new-key-4f1c9e",
            "API_KEY_PREVIOUS": "old-key-77ab20, older-key-0d3e",
            "BRIDGE_ALLOWED_ROOTS": str(tmp_path),
        }
    )
    path = "/api/v1/metadata-stamping/validate" if service == "stamping" else "/query"
    body = {"content": "x"} if service == "stamping" else {"query": "x"}
    with serve(_service_app(service, settings)) as url:

        def status(**headers: str) -> int:
            return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=10).status_code

        assert status() == 401
        assert status(**{"X-API-Key": "new-key-4f1c9"}) == 401
        assert status(**{"X-API-Key": "retired-key"}) == 401
        assert status(**{"X-API-Key": "new-key-4f1c9e"}) != 401
        assert status(**{"X-API-Key": "old-key-77ab20"}) != 401
        assert status(**{"X-API-Key": "older-key-0d3e"}) != 401


def rows_containing(engine: Engine, needle: str) -> dict[str, int]:
    """Rows of every table in the database whose text form contains `needle`."""
    found = {}
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ).scalars()
        for table in tables:
            hits = conn.execute(
                text(f'SELECT count(*) FROM "{table}" AS r WHERE strpos(r::text, :needle) > 0'),
                {"needle": needle},
            ).scalar_one()
            if hits:
                found[table] = hits
    return found


def test_secrets_from_the_environment_reach_no_stored_record_run_config_tick_or_ui_snapshot(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = {
        # The database's real password: the job cannot run without it.
        "POSTGRES_PASSWORD": pg_address.password,
        "API_KEY": f"api-key-{uuid.uuid4().hex}",
        "EVENT_SIGNING_KEY": f"signing-key-{uuid.uuid4().hex}",
    }
    env = {
        **pg_address.env(),
        **secrets,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_REQUEST_TOPIC": topics.requests,
        "KAFKA_WORKFLOW_TOPIC": topics.workflow,
        "BRIDGE_ALLOWED_ROOTS": str(project_root),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sensor = build_stamp_request_sensor(
        stamp_workflow,
        max_requests_per_run=10,
        max_queue_size=100,
        interval_s=1,
        max_workflow_attempts=3,
    )
    defs = dg.Definitions(
        jobs=[stamp_workflow], sensors=[sensor], resources=build_resources(load_settings())
    )
    workflow_id = uuid.uuid4()
    request = build_request(workflow_id, environment="test", content="print('secret?')\n")
    produce(kafka_bootstrap, topics.requests, [(str(workflow_id).encode(), request)])
    source = InstanceSource(pg_address.url())
    instance = source.get()
    try:
        with dg.build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs
        ) as context:
            tick = sensor(context)
        (run_request,) = tick.run_requests
        run = defs.resolve_job_def(stamp_workflow.name).execute_in_process(
            run_config=run_request.run_config, tags=run_request.tags, instance=instance
        )
        assert run.success
        stored_run = instance.get_run_by_id(run.run_id)
        # What the daemon stores in a tick (run requests and cursor), what the UI shows
        # (the repository snapshot, resources included) and the run's own record.
        shown = [
            serialize_value([*tick.run_requests]) + (tick.cursor or ""),
            serialize_value(RepositorySnap.from_def(defs.get_repository_def())),
            json.dumps(stored_run.run_config) + json.dumps(stored_run.tags),
        ]
        assert "EVENT_SIGNING_KEY" in shown[1], "the snapshot shows the resources' config"
        engine = create_engine(pg_address.url())
        assert rows_containing(engine, str(workflow_id)), "the scan must see the run's rows"
        for name, secret in secrets.items():
            assert rows_containing(engine, secret) == {}, name
            assert not any(secret in text_ for text_ in shown), name
        engine.dispose()
    finally:
        source.close()
