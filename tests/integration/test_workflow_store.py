"""The state machine as the SQL applies it: transitions it refuses are never applied."""

import uuid
from uuid import UUID

import pytest
from sqlalchemy import Engine, create_engine, text

from bridge_dagster.orchestrator import store
from bridge_dagster.orchestrator.fsm import WorkflowState

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(pg_url: str) -> Engine:
    return create_engine(pg_url)


def _workflow_in(engine: Engine, state: str) -> UUID:
    workflow_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_executions (workflow_id, namespace, state)"
                " VALUES (:w, 'ns', :s)"
            ),
            {"w": workflow_id, "s": state},
        )
    return workflow_id


def _state_and_transitions(engine: Engine, workflow_id: UUID) -> tuple[str, int]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT state, (SELECT count(*) FROM fsm_transitions t"
                " WHERE t.workflow_id = w.workflow_id)"
                " FROM workflow_executions w WHERE workflow_id = :w"
            ),
            {"w": workflow_id},
        ).one()


def _completion(workflow_id: UUID) -> store.Completion:
    return store.Completion(
        workflow_id=workflow_id,
        file_size=1,
        file_hash="0" * 64,
        stamp_id=uuid.uuid4(),
        stamp_type="lightweight",
        stamp="# ONEX:uid=…",
        namespace="ns",
        file_path=None,
        content_type="text/plain",
        metadata={},
        intelligence=None,
        steps=["record"],
    )


@pytest.mark.parametrize("state", ["completed", "failed", "processing"])
def test_moving_to_processing_is_refused_from_anything_but_pending(
    engine: Engine, state: str
) -> None:
    workflow_id = _workflow_in(engine, state)
    with engine.begin() as conn:
        moved = store.move(conn, [workflow_id], WorkflowState.PROCESSING, "test")
    assert moved == set()
    assert tuple(_state_and_transitions(engine, workflow_id)) == (state, 0)


@pytest.mark.parametrize("state", ["completed", "failed"])
def test_a_finished_workflow_cannot_be_failed_again(engine: Engine, state: str) -> None:
    workflow_id = _workflow_in(engine, state)
    with engine.begin() as conn:
        failed = store.fail(conn, {workflow_id: "late"})
    assert failed == {}
    assert tuple(_state_and_transitions(engine, workflow_id)) == (state, 0)


@pytest.mark.parametrize("state", ["pending", "failed", "completed"])
def test_only_a_processing_workflow_completes_and_gets_a_stamp_row(
    engine: Engine, state: str
) -> None:
    workflow_id = _workflow_in(engine, state)
    with engine.begin() as conn:
        completed = store.complete(conn, [_completion(workflow_id)])
    assert completed == set()
    with engine.connect() as conn:
        stamps = conn.execute(text("SELECT count(*) FROM metadata_stamps")).scalar_one()
    assert stamps == 0


def test_a_processing_workflow_completes_with_one_transition_and_its_stamp(
    engine: Engine,
) -> None:
    workflow_id = _workflow_in(engine, "processing")
    with engine.begin() as conn:
        assert store.complete(conn, [_completion(workflow_id)]) == {workflow_id}
    assert tuple(_state_and_transitions(engine, workflow_id)) == ("completed", 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM metadata_stamps")).scalar_one() == 1


def test_failing_reports_the_state_each_workflow_left(engine: Engine) -> None:
    pending, processing = _workflow_in(engine, "pending"), _workflow_in(engine, "processing")
    with engine.begin() as conn:
        left = store.fail(conn, {pending: "a", processing: "b"})
    assert left == {pending: WorkflowState.PENDING, processing: WorkflowState.PROCESSING}


def test_text_postgresql_cannot_store_is_replaced_not_refused(engine: Engine) -> None:
    workflow_id = _workflow_in(engine, "processing")
    with engine.begin() as conn:
        store.fail(conn, {workflow_id: "bad\x00byte and \udc80 lone surrogate"})
    with engine.connect() as conn:
        error = conn.execute(
            text("SELECT error FROM workflow_executions WHERE workflow_id = :w"), {"w": workflow_id}
        ).scalar_one()
    assert error == "bad\ufffdbyte and ? lone surrogate"


def test_a_long_request_source_fits(engine: Engine) -> None:
    source = f"{'t' * 249}/99/123456789012"
    with engine.begin() as conn:
        created = store.insert_pending(
            conn,
            [store.NewWorkflow(uuid.uuid4(), "ns", None, None, None, source, None)],
            "run",
        )
    assert len(created) == 1


def _created_days_ago(engine: Engine, state: str, days: int) -> UUID:
    workflow_id = _workflow_in(engine, state)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE workflow_executions SET created_at = now() - make_interval(days => :d)"
                " WHERE workflow_id = :w"
            ),
            {"w": workflow_id, "d": days},
        )
    return workflow_id


def _duration_ms(engine: Engine, workflow_id: UUID) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT duration_ms FROM workflow_executions WHERE workflow_id = :w"),
            {"w": workflow_id},
        ).scalar_one()


# A 32-bit millisecond count overflows after 24.8 days.
def test_a_workflow_finishing_thirty_days_after_it_was_admitted_records_its_duration(
    engine: Engine,
) -> None:
    completed = _created_days_ago(engine, "processing", 30)
    failed = _created_days_ago(engine, "processing", 30)
    with engine.begin() as conn:
        store.complete(conn, [_completion(completed)])
        store.fail(conn, {failed: "timeout: too slow"})

    thirty_days_ms = 30 * 24 * 3600 * 1000
    for workflow_id in (completed, failed):
        assert thirty_days_ms <= _duration_ms(engine, workflow_id) < thirty_days_ms + 60_000
