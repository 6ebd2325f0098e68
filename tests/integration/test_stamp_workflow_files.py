"""File requests against the real PostgreSQL and broker: read once beneath the allowed root,
hashed and stamped as read, written back only over the file that was read."""

import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import text

from bridge_dagster.devstack.postgres import PostgresAddress
from bridge_dagster.events.requests import build_request
from bridge_dagster.orchestrator.jobs import stamp_workflow
from bridge_dagster.resources.workflow_settings import WorkflowSettings
from bridge_dagster.stamping import canonical_hash
from tests.conftest import Topics
from tests.integration.workflow_harness import (
    engine_for,
    produce,
    whole_topic_ranges,
    workflow_resources,
)

pytestmark = pytest.mark.integration

LIMIT = 20_000
INSIDE = b"print('inside the root')\n"
SECRET = b"the secret outside the root\n"
# A run that holds every file, and one that holds none, so each step re-reads it.
BUDGETS = pytest.mark.parametrize("budget", [LIMIT * 100, 1], ids=["held", "re-read"])


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def stamp(
    pg_address: PostgresAddress, kafka_bootstrap: str, topics: Topics, project_root: Path
) -> Callable[..., dict[uuid.UUID, Any]]:
    """Request each path, run stamp_workflow over them (doing `after` once `op` succeeded),
    and return each workflow's row."""

    def run(
        paths: list[Path],
        *,
        budget: int = LIMIT * 100,
        write_back: bool = False,
        after: tuple[str, Callable[[], None]] | None = None,
    ) -> dict[uuid.UUID, Any]:
        ids = [uuid.uuid4() for _ in paths]
        produce(
            kafka_bootstrap,
            topics.requests,
            [
                (
                    str(w).encode(),
                    build_request(w, environment="test", file_path=str(p), write_back=write_back),
                )
                for w, p in zip(ids, paths, strict=True)
            ],
        )
        resources = workflow_resources(
            pg_address, kafka_bootstrap, topics.requests, topics.workflow, project_root
        )
        resources["workflow_settings"] = WorkflowSettings(
            max_content_bytes=LIMIT,
            max_run_content_bytes=budget,
            allowed_roots=[str(project_root)],
            environment="test",
        )
        job = stamp_workflow if after is None else stamp_workflow.with_hooks({_hook(*after)})
        result = job.execute_in_process(
            run_config=whole_topic_ranges(kafka_bootstrap, topics.requests), resources=resources
        )
        assert result.success
        with engine_for(pg_address).connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT workflow_id, state, error, file_hash, file_size"
                    " FROM workflow_executions WHERE workflow_id = ANY(:ids)"
                ),
                {"ids": ids},
            ).all()
        return {row.workflow_id: row for row in rows}

    return run


def _hook(op_name: str, action: Callable[[], None]) -> dg.HookDefinition:
    # A Dagster success hook runs as soon as its op has finished, before the next op starts:
    # a deterministic moment between two steps of the same run.
    @dg.success_hook(name=f"after_{op_name}")
    def hook(context: dg.HookContext) -> None:
        if context.op.name == op_name:
            action()

    return hook


def _swap_to_symlink(path: Path, target: Path) -> None:
    link = path.with_name(f".{path.name}.link")
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    os.replace(link, path)


def _code(row: Any) -> str:
    return (row.error or "").partition(":")[0]


@BUDGETS
def test_a_symlink_swapped_in_after_the_check_never_leads_outside_the_root(
    stamp: Callable[..., dict[uuid.UUID, Any]], project_root: Path, secret: Path, budget: int
) -> None:
    path = project_root / "data.txt"
    path.write_bytes(INSIDE)

    [row] = stamp(
        [path], budget=budget, after=("validate_requests", lambda: _swap_to_symlink(path, secret))
    ).values()

    assert row.file_hash != canonical_hash(SECRET)
    if budget == 1:  # read again after the swap: refused, not followed
        assert (row.state, _code(row)) == ("failed", "file_changed")
    else:  # read once, before the swap: stamped as read
        assert (row.state, row.file_hash) == ("completed", canonical_hash(INSIDE))


def test_a_symlink_flipping_while_requests_run_never_leads_outside_the_root(
    stamp: Callable[..., dict[uuid.UUID, Any]], project_root: Path, secret: Path
) -> None:
    path = project_root / "data.txt"
    path.write_bytes(INSIDE)
    stop = threading.Event()

    def flip() -> None:
        regular = path.with_name(".data.txt.regular")
        while not stop.is_set():
            _swap_to_symlink(path, secret)
            regular.write_bytes(INSIDE)
            os.replace(regular, path)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        rows = stamp([path] * 200, budget=1)
    finally:
        stop.set()
        flipper.join(timeout=10)

    completed = [r for r in rows.values() if r.state == "completed"]
    assert {r.file_hash for r in completed} <= {canonical_hash(INSIDE)}
    assert {_code(r) for r in rows.values() if r.state == "failed"} <= {
        "file_changed",
        "path_refused",
    }
    assert secret.read_bytes() == SECRET


def test_a_file_changed_after_it_was_read_is_not_written_back(
    stamp: Callable[..., dict[uuid.UUID, Any]], project_root: Path
) -> None:
    path = project_root / "app.py"
    path.write_bytes(INSIDE)
    edited = b"print('edited while it was stamped, and longer')\n"

    [row] = stamp(
        [path], write_back=True, after=("stamp_content", lambda: path.write_bytes(edited))
    ).values()

    assert (row.state, _code(row)) == ("failed", "file_changed")
    assert path.read_bytes() == edited


def test_an_unchanged_file_is_written_back_with_its_stamp(
    stamp: Callable[..., dict[uuid.UUID, Any]], project_root: Path
) -> None:
    path = project_root / "app.py"
    path.write_bytes(INSIDE)
    path.chmod(0o640)

    [row] = stamp([path], write_back=True).values()

    assert row.state == "completed"
    stamped = path.read_bytes()
    assert stamped.startswith(b"# ONEX:uid=") and stamped.endswith(INSIDE)
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in project_root.iterdir()] == ["app.py"]


@BUDGETS
def test_a_file_that_grows_past_the_limit_after_its_check_is_never_stamped_beyond_it(
    stamp: Callable[..., dict[uuid.UUID, Any]], project_root: Path, budget: int
) -> None:
    path = project_root / "growing.log"
    path.write_bytes(INSIDE)
    steady = project_root / "steady.log"
    steady.write_bytes(INSIDE * 2)

    def grow() -> None:
        with path.open("ab") as out:
            out.write(b"x" * (LIMIT + 1))

    rows = stamp([path, steady], budget=budget, after=("validate_requests", grow))

    grown, kept = sorted(rows.values(), key=lambda r: r.file_size or 0)
    if budget == 1:  # read again, past the limit
        assert (grown.state, _code(grown)) == ("failed", "content_too_large")
    else:
        assert (grown.state, grown.file_size) == ("completed", len(INSIDE))
        assert grown.file_hash == canonical_hash(INSIDE)
    assert (kept.state, kept.file_hash) == ("completed", canonical_hash(INSIDE * 2))


def test_a_file_larger_than_the_limit_fails_its_own_workflow(
    stamp: Callable[..., dict[uuid.UUID, Any]], project_root: Path
) -> None:
    big = project_root / "big.bin"
    big.write_bytes(b"y" * (LIMIT + 1))

    [row] = stamp([big]).values()

    assert (row.state, _code(row)) == ("failed", "content_too_large")
    assert "BRIDGE_MAX_CONTENT_BYTES" in row.error


def test_a_file_in_the_bridges_data_directory_is_refused(
    stamp: Callable[..., dict[uuid.UUID, Any]], project_root: Path
) -> None:
    data_dir = project_root / ".data"
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "dev.lock").write_text("123")
    password = data_dir / "postgres" / "postgres-password"
    password.write_text("hunter2")

    [row] = stamp([password]).values()

    assert (row.state, _code(row)) == ("failed", "path_refused")
    assert "data directory" in row.error
