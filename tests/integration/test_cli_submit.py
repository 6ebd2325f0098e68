"""`bridge-dagster submit` and `status` against the real broker and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import create_engine, insert

from bridge_dagster.cli.main import main
from bridge_dagster.db.tables import fsm_transitions, workflow_executions
from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.devstack.processes import free_port
from bridge_dagster.events import decode
from tests.conftest import Topics

pytestmark = pytest.mark.integration

FILE_HASH = "a" * 64
STAMP_ID = uuid.UUID("5f0c2b1e-7d3a-4e9b-8c6f-1a2b3c4d5e6f")
START = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


@pytest.fixture
def broker_env(kafka_bootstrap: str, topics: Topics, project_root: Path) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_REQUEST_TOPIC": topics.requests,
        "BRIDGE_ALLOWED_ROOTS": str(project_root),
    }


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def read_all(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    """Every message on `topic` as (key, payload), read up to the high watermarks."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + 30
        while len(messages) < sum(ends.values()) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                payload = decode(message.value()).payload
                messages.append((message.key().decode(), payload))
        return messages
    finally:
        consumer.close()


def write(relative: str, root: Path, text: str = "print('hi')\n") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- submit --------------------------------------------------------------------------------


def test_submit_content_sends_one_message_keyed_by_the_printed_workflow_id(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    result = run(broker_env, "submit", "--content", "hello, bridge")

    assert result.exit_code == 0, result.output
    workflow_id = result.stdout.strip()
    [(key, payload)] = read_all(kafka_bootstrap, topics.requests)
    assert key == workflow_id
    assert payload["workflow_id"] == workflow_id
    assert payload["content"] == "hello, bridge"


def test_submit_options_reach_the_request(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    result = run(
        broker_env,
        *("submit", "--content", "x", "--namespace", "team.alpha"),
        *("--stamp-type", "rich", "--intelligence"),
    )

    assert result.exit_code == 0, result.output
    [(_, payload)] = read_all(kafka_bootstrap, topics.requests)
    assert (payload["namespace"], payload["stamp_type"], payload["enable_intelligence"]) == (
        "team.alpha",
        "rich",
        True,
    )


def test_submit_demo_sends_one_message_per_request_and_a_summary(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    result = run(broker_env, "submit", "--demo", "50")

    assert result.exit_code == 0, result.output
    messages = read_all(kafka_bootstrap, topics.requests)
    assert len(messages) == 50
    assert len({key for key, _ in messages}) == 50
    assert "Submitted 50 requests" in result.stdout


def test_two_demo_runs_send_different_workflows(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    run(broker_env, "submit", "--demo", "5")
    run(broker_env, "submit", "--demo", "5")

    assert len({key for key, _ in read_all(kafka_bootstrap, topics.requests)}) == 10


def test_submit_demo_with_a_namespace_puts_every_request_there(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    run(broker_env, "submit", "--demo", "20", "--namespace", "team.alpha")

    payloads = [payload for _, payload in read_all(kafka_bootstrap, topics.requests)]
    assert {p["namespace"] for p in payloads} == {"team.alpha"}


def test_submit_file_sends_its_path_for_the_workflow_to_read(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    path = write("src/app.py", project_root)

    result = run(broker_env, "submit", "--file", str(path), "--write-back")

    assert result.exit_code == 0, result.output
    [(_, payload)] = read_all(kafka_bootstrap, topics.requests)
    assert payload["file_path"] == str(path.resolve())
    assert payload["content_type"] == "text/x-python"
    assert payload["write_back"] is True
    assert "content" not in payload


def test_the_same_content_submitted_twice_names_the_same_workflow(
    broker_env: dict[str, str],
) -> None:
    first = run(broker_env, "submit", "--content", "hello, bridge")
    again = run(broker_env, "submit", "--content", "hello, bridge")
    other = run(broker_env, "submit", "--content", "hello, bridge", "--stamp-type", "rich")

    assert first.exit_code == again.exit_code == other.exit_code == 0
    assert first.stdout == again.stdout
    assert other.stdout != first.stdout


def test_submit_id_names_the_workflow(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    chosen = "0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f"

    result = run(broker_env, "submit", "--content", "x", "--id", chosen)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == chosen
    [(key, payload)] = read_all(kafka_bootstrap, topics.requests)
    assert key == payload["workflow_id"] == chosen


def test_submit_id_with_many_requests_is_a_usage_error(broker_env: dict[str, str]) -> None:
    result = run(broker_env, "submit", "--demo", "3", "--id", str(uuid.uuid4()))

    assert result.exit_code == 2
    assert "--id applies to one request" in result.output


def test_resubmitting_a_directory_keeps_the_ids_of_unchanged_files(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    write("src/app.py", project_root)
    changing = write("src/lib.py", project_root)
    run(broker_env, "submit", "--path", str(project_root))
    changing.write_text("print('changed')\n")

    result = run(broker_env, "submit", "--path", str(project_root))

    assert result.exit_code == 0, result.output
    ids: dict[str, list[str]] = {}
    for key, payload in read_all(kafka_bootstrap, topics.requests):
        ids.setdefault(Path(payload["file_path"]).name, []).append(key)
    assert len(set(ids["app.py"])) == 1
    assert len(set(ids["lib.py"])) == 2


def test_submit_content_over_the_size_limit_is_a_clear_error(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    env = broker_env | {"BRIDGE_MAX_CONTENT_BYTES": "1000"}

    result = run(env, "submit", "--content", "x" * 1001)

    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "1,001 bytes, over the 1,000-byte limit" in result.output
    assert "BRIDGE_MAX_CONTENT_BYTES" in result.output
    assert "--file" in result.output
    assert read_all(kafka_bootstrap, topics.requests) == []


def test_submit_content_over_the_brokers_message_limit_is_a_clear_error(
    broker_env: dict[str, str],
) -> None:
    result = run(broker_env, "submit", "--content", "x" * 2_000_000)

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "0 of 1 requests were delivered" in result.output
    assert "message limit" in result.output
    assert "--file" in result.output


def test_submit_file_outside_the_allowed_roots_is_refused_naming_the_variable(
    broker_env: dict[str, str], tmp_path: Path
) -> None:
    outside = write("elsewhere/notes.txt", tmp_path)

    result = run(broker_env, "submit", "--file", str(outside))

    assert result.exit_code == 1
    assert "BRIDGE_ALLOWED_ROOTS" in result.output


def test_submit_path_sends_one_request_per_file_except_excluded_directories(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    kept = {write(name, project_root) for name in ("src/app.py", "README.md", "docs/a.txt")}
    for excluded in ("node_modules/lib/index.js", ".git/config", "src/__pycache__/app.pyc"):
        write(excluded, project_root)

    result = run(broker_env, "submit", "--path", str(project_root))

    assert result.exit_code == 0, result.output
    sent = {payload["file_path"] for _, payload in read_all(kafka_bootstrap, topics.requests)}
    assert sent == {str(path.resolve()) for path in kept}
    assert "Submitted 3 requests" in result.stdout


def test_submit_path_in_a_git_work_tree_skips_what_gitignore_ignores(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    subprocess.run(["git", "init", "-q", str(project_root)], check=True)
    gitignore = write(".gitignore", project_root, "/.data/\n*.log\nsecrets/\n")
    kept = {gitignore} | {write(name, project_root) for name in ("src/app.py", "notes.md")}
    for ignored in ("debug.log", "secrets/token.txt", ".data/postgres/postgres-password"):
        write(ignored, project_root)

    result = run(broker_env, "submit", "--path", str(project_root))

    assert result.exit_code == 0, result.output
    sent = {payload["file_path"] for _, payload in read_all(kafka_bootstrap, topics.requests)}
    assert sent == {str(path.resolve()) for path in kept}


def test_submit_path_outside_a_git_work_tree_skips_the_bridges_data_directory(
    broker_env: dict[str, str], kafka_bootstrap: str, topics: Topics, project_root: Path
) -> None:
    kept = write("src/app.py", project_root)
    for name in (".data/dev.lock", ".data/dev.env", ".data/postgres/postgres-password"):
        write(name, project_root)

    result = run(broker_env, "submit", "--path", str(project_root))

    assert result.exit_code == 0, result.output
    sent = [payload["file_path"] for _, payload in read_all(kafka_bootstrap, topics.requests)]
    assert sent == [str(kept.resolve())]


def test_submit_path_with_only_excluded_files_is_refused(
    broker_env: dict[str, str], project_root: Path
) -> None:
    write("node_modules/lib/index.js", project_root)

    result = run(broker_env, "submit", "--path", str(project_root))

    assert result.exit_code == 1
    assert "no files" in result.output


def test_two_sources_are_a_usage_error(broker_env: dict[str, str]) -> None:
    result = run(broker_env, "submit", "--content", "x", "--demo", "3")

    assert result.exit_code == 2
    assert "exactly one of" in result.output


def test_no_source_is_a_usage_error(broker_env: dict[str, str]) -> None:
    result = run(broker_env, "submit")

    assert result.exit_code == 2
    assert "exactly one of" in result.output


def test_write_back_with_inline_content_is_a_usage_error(broker_env: dict[str, str]) -> None:
    result = run(broker_env, "submit", "--content", "x", "--write-back")

    assert result.exit_code == 2
    assert "--write-back" in result.output


@pytest.mark.parametrize("count", ["0", "1000001"])
def test_demo_count_outside_the_bounds_is_refused(broker_env: dict[str, str], count: str) -> None:
    result = run(broker_env, "submit", "--demo", count)

    assert result.exit_code == 2
    assert "1<=x<=1000000" in result.output


def test_invalid_namespace_is_refused(broker_env: dict[str, str]) -> None:
    result = run(broker_env, "submit", "--content", "x", "--namespace", "no spaces")

    assert result.exit_code == 2
    assert "--namespace" in result.output


def test_unreachable_broker_is_a_clear_error_naming_the_fix(broker_env: dict[str, str]) -> None:
    env = broker_env | {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}

    result = run(env, "submit", "--content", "x")

    assert result.exit_code == 1
    assert "cannot reach the Kafka broker" in result.output
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.output
    assert "bridge-dagster dev" in result.output


def test_missing_request_topic_is_a_clear_error_naming_the_variable(
    broker_env: dict[str, str],
) -> None:
    env = broker_env | {"KAFKA_REQUEST_TOPIC": f"missing.{uuid.uuid4().hex}"}

    result = run(env, "submit", "--content", "x")

    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "KAFKA_REQUEST_TOPIC" in result.output


# --- submit --wait -------------------------------------------------------------------------


@pytest.fixture
def wait_env(broker_env: dict[str, str], pg_address: PostgresAddress) -> dict[str, str]:
    return broker_env | pg_address.env()


@contextmanager
def finishing_requests(
    bootstrap: str, topic: str, pg_url: str, count: int, failing: int = 0
) -> Iterator[None]:
    """Plays the workflow: records each request on `topic` as completed (or failed)."""
    stop = threading.Event()

    def worker() -> None:
        engine = create_engine(pg_url)
        done: set[str] = set()
        while len(done) < count and not stop.is_set():
            for key, payload in read_all(bootstrap, topic):
                if key in done:
                    continue
                state = "failed" if len(done) < failing else "completed"
                with engine.begin() as conn:
                    conn.execute(
                        insert(workflow_executions).values(
                            workflow_id=uuid.UUID(key),
                            namespace=payload.get("namespace", "omninode.bridge"),
                            state=state,
                            error=f"stamp_rejected: reason of {key}" if state == "failed" else None,
                        )
                    )
                done.add(key)
            time.sleep(0.2)
        engine.dispose()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def test_submit_wait_reports_completed_and_failed_workflows(
    wait_env: dict[str, str], kafka_bootstrap: str, topics: Topics, pg_url: str
) -> None:
    with finishing_requests(kafka_bootstrap, topics.requests, pg_url, count=5, failing=2):
        result = run(wait_env, "submit", "--demo", "5", "--wait", "--timeout", "60")

    assert "Completed 3, failed 2" in result.stdout
    assert "workflows/s" in result.stdout
    assert result.exit_code == 1
    assert "bridge-dagster status" in result.output


def test_submit_wait_names_every_failed_workflow_with_its_reason(
    wait_env: dict[str, str], kafka_bootstrap: str, topics: Topics, pg_url: str
) -> None:
    with finishing_requests(kafka_bootstrap, topics.requests, pg_url, count=5, failing=2):
        result = run(wait_env, "submit", "--demo", "5", "--wait", "--timeout", "60")

    failed_lines = [line for line in result.stdout.splitlines() if "stamp_rejected" in line]
    assert len(failed_lines) == 2
    for line in failed_lines:
        workflow_id = line.split()[1]
        assert line.endswith(f"stamp_rejected: reason of {workflow_id}")


def test_submit_wait_succeeds_when_every_workflow_completes(
    wait_env: dict[str, str], kafka_bootstrap: str, topics: Topics, pg_url: str
) -> None:
    with finishing_requests(kafka_bootstrap, topics.requests, pg_url, count=3):
        result = run(wait_env, "submit", "--demo", "3", "--wait", "--timeout", "60")

    assert result.exit_code == 0, result.output
    assert "Completed 3, failed 0" in result.stdout


def test_submit_wait_gives_up_after_the_timeout(wait_env: dict[str, str]) -> None:
    result = run(wait_env, "submit", "--content", "x", "--wait", "--timeout", "1")

    assert result.exit_code == 1
    assert "Completed 0, failed 0" in result.stdout
    assert "neither completed nor failed within 1 s" in result.output


# --- status --------------------------------------------------------------------------------


def insert_workflow(pg_url: str, state: str, **columns: Any) -> uuid.UUID:
    workflow_id = uuid.uuid4()
    steps = [(None, "pending"), ("pending", "processing"), ("processing", state)]
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            insert(workflow_executions).values(
                workflow_id=workflow_id, namespace="omninode.docs", state=state, **columns
            )
        )
        # Inserted newest first, so only ordering by time puts them right.
        for index, (before, after) in reversed(list(enumerate(steps))):
            conn.execute(
                insert(fsm_transitions).values(
                    workflow_id=workflow_id,
                    from_state=before,
                    to_state=after,
                    reason=f"step {index}",
                    transitioned_at=START + timedelta(milliseconds=150 * index),
                )
            )
    engine.dispose()
    return workflow_id


def completed_workflow(pg_url: str) -> uuid.UUID:
    return insert_workflow(
        pg_url,
        "completed",
        file_path="docs/guide.md",
        content_type="text/markdown",
        file_size=1234,
        file_hash=FILE_HASH,
        stamp_id=STAMP_ID,
        stamp_type="rich",
        requested_at=START,
        completed_at=START + timedelta(milliseconds=300),
        duration_ms=300,
    )


def test_status_shows_state_stamp_and_transitions_in_order(
    pg_address: PostgresAddress, pg_url: str
) -> None:
    workflow_id = completed_workflow(pg_url)

    result = run(pg_address.env(), "status", str(workflow_id))

    assert result.exit_code == 0, result.output
    for expected in ("completed", "omninode.docs", FILE_HASH, f"{STAMP_ID} (rich)", "300 ms"):
        assert expected in result.stdout
    lines = result.stdout.splitlines()
    transitions = lines[lines.index("Transitions") + 1 :]
    assert transitions == [
        "  2025-01-31 12:00:00.000Z  (new) -> pending  step 0",
        "  2025-01-31 12:00:00.150Z  pending -> processing  step 1",
        "  2025-01-31 12:00:00.300Z  processing -> completed  step 2",
    ]


def test_status_of_a_failed_workflow_shows_its_error(
    pg_address: PostgresAddress, pg_url: str
) -> None:
    workflow_id = insert_workflow(pg_url, "failed", error="file_path is outside the roots")

    result = run(pg_address.env(), "status", str(workflow_id))

    assert result.exit_code == 0, result.output
    assert "Error      file_path is outside the roots" in result.stdout


def test_status_json_prints_the_same_fields(pg_address: PostgresAddress, pg_url: str) -> None:
    workflow_id = completed_workflow(pg_url)

    result = run(pg_address.env(), "status", str(workflow_id), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["workflow_id"] == str(workflow_id)
    assert (report["state"], report["file_hash"], report["stamp_id"]) == (
        "completed",
        FILE_HASH,
        str(STAMP_ID),
    )
    assert [t["to_state"] for t in report["transitions"]] == ["pending", "processing", "completed"]
    assert datetime.fromisoformat(report["transitions"][0]["at"]) == START


def test_status_of_an_unknown_workflow_fails_with_a_message(pg_address: PostgresAddress) -> None:
    unknown = uuid.uuid4()

    result = run(pg_address.env(), "status", str(unknown))

    assert result.exit_code == 1
    assert f"no workflow {unknown}" in result.output


def test_status_of_a_malformed_id_is_a_usage_error(pg_address: PostgresAddress) -> None:
    result = run(pg_address.env(), "status", "not-a-uuid")

    assert result.exit_code == 2
    assert "is not a workflow id" in result.output


def test_status_with_an_unreachable_database_names_the_fix(
    pg_address: PostgresAddress,
) -> None:
    env = pg_address.env() | {"POSTGRES_PORT": str(free_port())}

    result = run(env, "status", str(uuid.uuid4()))

    assert result.exit_code == 1
    assert "cannot read PostgreSQL" in result.output
    assert "POSTGRES_" in result.output
