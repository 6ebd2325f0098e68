"""The workflow state machine: pending → processing → completed | failed, and pending → failed.

Pure Python so the rules can be tested without Dagster. The orchestrator also enforces the
same rules in SQL (`UPDATE ... WHERE state = ANY(:allowed_from)`), using `allowed_sources`,
so two runs racing on one workflow cannot both apply a transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from uuid import UUID


class WorkflowState(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


ALLOWED_TRANSITIONS: Mapping[WorkflowState, frozenset[WorkflowState]] = MappingProxyType(
    {
        WorkflowState.PENDING: frozenset({WorkflowState.PROCESSING, WorkflowState.FAILED}),
        WorkflowState.PROCESSING: frozenset({WorkflowState.COMPLETED, WorkflowState.FAILED}),
        WorkflowState.COMPLETED: frozenset(),
        WorkflowState.FAILED: frozenset(),
    }
)
"""Each state's permitted next states. Creation (no state → pending) is not listed here
because it is an INSERT, not an UPDATE of an existing row."""

INITIAL_STATE = WorkflowState.PENDING


class IllegalTransition(ValueError):
    """A transition the state machine does not allow; it must never be applied."""


@dataclass(frozen=True, slots=True)
class Transition:
    from_state: WorkflowState | None
    to_state: WorkflowState


def is_terminal(state: WorkflowState) -> bool:
    return not ALLOWED_TRANSITIONS[state]


def allowed_sources(target: WorkflowState) -> tuple[WorkflowState, ...]:
    """The states a workflow may move to `target` from, in declaration order."""
    return tuple(state for state in WorkflowState if target in ALLOWED_TRANSITIONS[state])


def transition(
    current: WorkflowState | None,
    target: WorkflowState,
    *,
    workflow_id: UUID | str | None = None,
) -> Transition:
    """Check one step and return it; `current=None` means the workflow is being created."""
    allowed = frozenset({INITIAL_STATE}) if current is None else ALLOWED_TRANSITIONS[current]
    if target not in allowed:
        raise IllegalTransition(_refusal(current, target, workflow_id))
    return Transition(from_state=current, to_state=target)


def _refusal(
    current: WorkflowState | None, target: WorkflowState, workflow_id: UUID | str | None
) -> str:
    subject = f"workflow {workflow_id}" if workflow_id is not None else "workflow"
    if current is None:
        return f"{subject} must be created in state '{INITIAL_STATE}', not '{target}'"
    if is_terminal(current):
        return f"{subject} is already '{current}' (terminal); it cannot move to '{target}'"
    choices = ", ".join(f"'{s}'" for s in WorkflowState if s in ALLOWED_TRANSITIONS[current])
    return f"{subject} cannot move from '{current}' to '{target}'; from '{current}' only {choices}"
