import uuid

import pytest

from bridge_dagster.orchestrator.fsm import (
    ALLOWED_TRANSITIONS,
    IllegalTransition,
    Transition,
    WorkflowState,
    allowed_sources,
    is_terminal,
    transition,
)

S = WorkflowState
LEGAL = [
    (S.PENDING, S.PROCESSING),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.FAILED),
    (S.PENDING, S.FAILED),
]
ILLEGAL = [(a, b) for a in S for b in S if (a, b) not in LEGAL]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_allowed_transition_is_returned(current: WorkflowState, target: WorkflowState) -> None:
    assert transition(current, target) == Transition(from_state=current, to_state=target)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_transition_is_refused(current: WorkflowState, target: WorkflowState) -> None:
    with pytest.raises(IllegalTransition, match=f"'{current}'.*'{target}'"):
        transition(current, target)


def test_creation_enters_pending() -> None:
    assert transition(None, S.PENDING) == Transition(from_state=None, to_state=S.PENDING)


@pytest.mark.parametrize("target", [S.PROCESSING, S.COMPLETED, S.FAILED])
def test_creation_in_any_other_state_is_refused(target: WorkflowState) -> None:
    with pytest.raises(IllegalTransition, match="must be created in state 'pending'"):
        transition(None, target)


def test_refusal_names_the_workflow() -> None:
    workflow_id = uuid.uuid4()
    with pytest.raises(IllegalTransition, match=str(workflow_id)):
        transition(S.COMPLETED, S.PROCESSING, workflow_id=workflow_id)


@pytest.mark.parametrize("state", [S.COMPLETED, S.FAILED])
def test_terminal_states_have_no_exits(state: WorkflowState) -> None:
    assert is_terminal(state)
    assert ALLOWED_TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize("state", [S.PENDING, S.PROCESSING])
def test_working_states_are_not_terminal(state: WorkflowState) -> None:
    assert not is_terminal(state)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (S.PENDING, ()),
        (S.PROCESSING, (S.PENDING,)),
        (S.COMPLETED, (S.PROCESSING,)),
        (S.FAILED, (S.PENDING, S.PROCESSING)),
    ],
)
def test_allowed_sources_lists_the_states_that_may_reach_a_target(
    target: WorkflowState, sources: tuple[WorkflowState, ...]
) -> None:
    assert allowed_sources(target) == sources


def test_allowed_transitions_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(TypeError):
        ALLOWED_TRANSITIONS[S.COMPLETED] = frozenset({S.PENDING})  # type: ignore[index]


def test_state_values_match_the_database_check_constraint() -> None:
    from bridge_dagster.db.tables import WORKFLOW_STATES

    assert tuple(S) == WORKFLOW_STATES
