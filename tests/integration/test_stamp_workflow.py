"""stamp_workflow end to end against the real PostgreSQL and broker."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.requests import build_request
from bridge_dagster.events.topics import parse_dead_letter
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.stamping import canonical_hash
from tests.conftest import Topics
from tests.integration.workflow_harness import (
    HAPPY_PATH,
    HAPPY_PATH_WITH_INTELLIGENCE,
    count,
    engine_for,
    events_by_workflow,
    produce,
    read_all,
    sensor_run_configs,
    whole_topic_ranges,
    workflow_resources,
)

pytestmark = pytest.mark.integration

LIMIT = 20_000


def _good_requests(root: Path, n: int) -> tuple[list[tuple[bytes, bytes]], dict[uuid.UUID, bytes]]:
    """n valid requests of every content kind; returns the messages and each one's bytes."""
    messages, contents = [], {}
    for i in range(n):
        workflow_id = uuid.uuid4()
        body = f"# file {i}\n\nprint({i})\n".encode() * (1 + i % 7)
        kind = i % 3
        if kind == 0:
            value = build_request(
                workflow_id,
                environment="test",
                content=body.decode(),
                stamp_type="rich" if i % 10 == 0 else "lightweight",
            )
        elif kind == 1:
            value = build_request(
                workflow_id,
                environment="test",
                content_b64=base64.b64encode(body).decode(),
                namespace="team.alpha",
            )
        else:
            path = root / f"src/module_{i}.py"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(body)
            value = build_request(
                workflow_id, environment="test", file_path=str(path), enable_intelligence=i % 4 == 0
            )
        messages.append((str(workflow_id).encode(), value))
        contents[workflow_id] = body
    return messages, contents


def _envelope(payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {"envelope_version": "1", "event_type": "stamp_workflow_requested", "payload": payload}
    ).encode()


def _bad_requests(outside: Path) -> list[tuple[bytes | None, bytes]]:
    """50 malformed requests, 7 or 8 of each kind the acceptance list names."""
    bad: list[tuple[bytes | None, bytes]] = []
    for i in range(8):
        bad.append((None, b"{not json" + bytes([i])))
    for _ in range(7):
        bad.append((None, _envelope({"workflow_id": str(uuid.uuid4())})))
        bad.append(
            (
                None,
                _envelope(
                    {"workflow_id": str(uuid.uuid4()), "content": "a", "content_b64": "YQ=="}
                ),
            )
        )
        bad.append(
            (
                None,
                _envelope({"workflow_id": str(uuid.uuid4()), "content": "a", "stamp_type": "gold"}),
            )
        )
        bad.append(
            (None, _envelope({"workflow_id": str(uuid.uuid4()), "content": "x" * (LIMIT + 1)}))
        )
        bad.append((None, _envelope({"workflow_id": str(uuid.uuid4()), "file_path": str(outside)})))
        bad.append((None, _envelope({"workflow_id": "not-a-uuid", "content": "a"})))
    return bad


@pytest.fixture
def outside_file(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_text("not yours")
    return path


def _run(
    pg: PostgresAddress, bootstrap: str, topics: Topics, root: Path, run_config: dict[str, Any]
) -> dict[str, Any]:
    resources = workflow_resources(
        pg, bootstrap, topics.requests, topics.workflow, root, max_content_bytes=LIMIT
    )
    result = stamp_workflow.execute_in_process(run_config=run_config, resources=resources)
    assert result.success
    return result.output_for_node("record_results")


@pytest.fixture
def run_topic(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> Callable[[], dict[str, Any]]:
    """Run stamp_workflow once over everything on the request topic; return its summary."""

    def run() -> dict[str, Any]:
        return _run(
            pg_address,
            kafka_bootstrap,
            topics,
            project_root,
            whole_topic_ranges(kafka_bootstrap, topics.requests),
        )

    return run


def test_mixed_batch_through_the_sensor_completes_the_good_and_dead_letters_the_bad(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    outside_file: Path,
) -> None:
    good, contents = _good_requests(project_root, 950)
    produce(kafka_bootstrap, topics.requests, [*good, *_bad_requests(outside_file)])
    resources = workflow_resources(
        pg_address,
        kafka_bootstrap,
        topics.requests,
        topics.workflow,
        project_root,
        max_content_bytes=LIMIT,
    )

    configs = sensor_run_configs(resources["kafka"], resources["postgres"], max_per_run=300)
    summaries = []
    for config in configs:
        result = stamp_workflow.execute_in_process(run_config=config, resources=resources)
        assert result.success
        summaries.append(result.output_for_node("record_results"))

    assert len(configs) >= 4
    assert sum(s["completed"] for s in summaries) == 950
    assert sum(s["failed"] for s in summaries) == 50
    engine = engine_for(pg_address)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT workflow_id, file_hash FROM workflow_executions WHERE state = 'completed'"
        ).all()
    assert {r.workflow_id: r.file_hash for r in rows} == {
        wid: canonical_hash(body) for wid, body in contents.items()
    }
    letters = [parse_dead_letter(v) for *_, v in read_all(kafka_bootstrap, topics.requests_dlq)]
    assert len(letters) == 50
    assert all(letter["reason"] for letter in letters)


def test_each_kind_of_bad_request_is_named_in_its_dead_letter(
    kafka_bootstrap: str,
    topics: Topics,
    outside_file: Path,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    produce(kafka_bootstrap, topics.requests, _bad_requests(outside_file))
    run_topic()
    codes = [
        parse_dead_letter(v)["reason"].split(":")[0]
        for *_, v in read_all(kafka_bootstrap, topics.requests_dlq)
    ]
    assert {c: codes.count(c) for c in set(codes)} == {
        "bad_json": 8,
        "no_content": 7,
        "multiple_content": 7,
        "bad_stamp_type": 7,
        "content_too_large": 7,
        "path_refused": 7,
        "bad_workflow_id": 7,
    }


def test_rejected_workflows_with_an_id_are_failed_with_their_reason(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    outside_file: Path,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    produce(kafka_bootstrap, topics.requests, _bad_requests(outside_file))
    run_topic()
    engine = engine_for(pg_address)
    # Bad JSON and bad UUIDs name no workflow: those 15 live only in the dead-letter topic.
    assert (
        count(
            engine,
            "SELECT count(*) FROM workflow_executions WHERE state = 'failed' AND error IS NOT NULL",
        )
        == 35
    )
    events = events_by_workflow(kafka_bootstrap, topics.workflow)
    failed = [
        e for evs in events.values() for e in evs if e["event_type"] == "stamp_workflow_failed"
    ]
    assert len(failed) == 35


def test_events_of_a_workflow_arrive_in_order(
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    good, contents = _good_requests(project_root, 30)
    produce(kafka_bootstrap, topics.requests, good)
    run_topic()
    events = events_by_workflow(kafka_bootstrap, topics.workflow)
    assert events.keys() == contents.keys()
    for envelopes in events.values():
        seen = [
            (e["event_type"], e["payload"].get("to_state") or e["payload"].get("step"))
            for e in envelopes
        ]
        asked = ("onextree_intelligence_requested", None) in seen
        assert seen == (HAPPY_PATH_WITH_INTELLIGENCE if asked else HAPPY_PATH)
    # File requests (i % 3 == 2) with i % 4 == 0 ask for intelligence: i = 8 and 20.
    assert (
        sum(
            ("onextree_intelligence_received" in [e["event_type"] for e in envs])
            for envs in events.values()
        )
        == 2
    )


def test_a_valid_request_is_not_failed_by_a_bad_message_with_its_id(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    workflow_id = uuid.uuid4()
    valid = build_request(workflow_id, environment="test", content="fine")
    twin = _envelope({"workflow_id": str(workflow_id), "content": "a", "stamp_type": "gold"})
    produce(kafka_bootstrap, topics.requests, [(b"k", valid), (b"k", twin)])

    summary = run_topic()

    assert (summary["completed"], summary["dead_lettered"]) == (1, 1)
    with engine_for(pg_address).connect() as conn:
        state = conn.execute(
            text("SELECT state FROM workflow_executions WHERE workflow_id = :w"), {"w": workflow_id}
        ).scalar_one()
    assert state == "completed"


def test_a_rejected_message_with_an_unstorable_namespace_is_still_failed_and_dead_lettered(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    workflow_id = uuid.uuid4()
    bad = _envelope({"workflow_id": str(workflow_id), "namespace": "bad\u0000ns"})
    produce(kafka_bootstrap, topics.requests, [(None, bad)])

    summary = run_topic()

    assert (summary["failed"], summary["dead_lettered"]) == (1, 1)
    with engine_for(pg_address).connect() as conn:
        namespace = conn.execute(
            text("SELECT namespace FROM workflow_executions WHERE workflow_id = :w"),
            {"w": workflow_id},
        ).scalar_one()
    assert namespace == "omninode.bridge"


def test_every_transition_is_persisted(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    good, _ = _good_requests(project_root, 20)
    produce(kafka_bootstrap, topics.requests, good)
    run_topic()
    with engine_for(pg_address).connect() as conn:
        paths = (
            conn.exec_driver_sql(
                "SELECT string_agg(coalesce(from_state, '-') || '>' || to_state, ' ' ORDER BY id)"
                " FROM fsm_transitions GROUP BY workflow_id"
            )
            .scalars()
            .all()
        )
    assert paths == ["->pending pending>processing processing>completed"] * 20


def test_running_the_same_range_twice_adds_nothing(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    outside_file: Path,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    good, _ = _good_requests(project_root, 60)
    produce(kafka_bootstrap, topics.requests, good + _bad_requests(outside_file))
    run_topic()
    engine = engine_for(pg_address)
    tables = ("workflow_executions", "fsm_transitions", "metadata_stamps", "dead_letters")
    before = {t: count(engine, f"SELECT count(*) FROM {t}") for t in tables}
    events_before = len(read_all(kafka_bootstrap, topics.workflow))

    summary = run_topic()

    assert {t: count(engine, f"SELECT count(*) FROM {t}") for t in tables} == before
    assert len(read_all(kafka_bootstrap, topics.workflow)) == events_before
    assert len(read_all(kafka_bootstrap, topics.requests_dlq)) == 50
    assert (summary["duplicates"], summary["completed"], summary["failed"]) == (110, 0, 0)


def test_a_duplicate_workflow_id_is_processed_once(
    pg_address: PostgresAddress,
    kafka_bootstrap: str,
    topics: Topics,
    project_root: Path,
    run_topic: Callable[[], dict[str, Any]],
) -> None:
    good, _ = _good_requests(project_root, 3)
    produce(kafka_bootstrap, topics.requests, [*good, good[0], good[0]])
    summary = run_topic()
    assert (summary["completed"], summary["duplicates"]) == (3, 2)
    engine = engine_for(pg_address)
    assert count(engine, "SELECT count(*) FROM workflow_executions") == 3
    assert count(engine, "SELECT count(*) FROM metadata_stamps") == 3
