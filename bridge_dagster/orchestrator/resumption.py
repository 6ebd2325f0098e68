"""Handing unfinished workflows whose run ended to a new run (`attempts`, `resume_key`).

A workflow belongs to the run that admitted it (its root run id), and only that run or a
retry of it resumes it. When every such run has ended, the request sensor hands the
workflow over: it counts one more attempt and names the new run's key, and that run claims
it at admission. A workflow handed over more than the allowed attempts is claimed only to
be failed with the reason set here.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Connection, text

# The tag naming the hand-over a run claims; Dagster's retries copy it.
RESUME_TAG = "bridge/resume"
# The most attempts among the workflows a resumption run takes.
ATTEMPT_TAG = "bridge/workflow_attempt"
# Launchpad requests live in their run's config, not on a topic: no new run can read them.
_FROM_A_TOPIC = "request_offset NOT LIKE 'inline/%'"


@dataclass(frozen=True)
class Owner:
    """Who holds a group of unfinished workflows: the run that admitted them, and the
    hand-over they were last given to, if any."""

    run_id: str | None
    resume_key: str | None


@dataclass(frozen=True)
class HandedOver:
    workflow_id: UUID
    request_offset: str
    attempts: int


def unfinished_owners(conn: Connection, max_attempts: int, limit: int) -> list[Owner]:
    """Owners of unfinished workflows that may still be handed over."""
    rows = conn.execute(
        text(
            "SELECT DISTINCT run_id, resume_key FROM workflow_executions"
            f" WHERE state IN ('pending', 'processing') AND {_FROM_A_TOPIC}"
            " AND attempts <= :max_attempts LIMIT :limit"
        ),
        {"max_attempts": max_attempts, "limit": limit},
    )
    return [Owner(r.run_id, r.resume_key) for r in rows]


def hand_over(conn: Connection, owner: Owner, new_key: str, max_attempts: int) -> list[HandedOver]:
    """Give the owner's unfinished workflows to the run `new_key`; one past `max_attempts`
    is given its failure reason, which that run applies."""
    rows = conn.execute(
        text(
            f"""
            UPDATE workflow_executions
            SET attempts = attempts + 1, resume_key = :new_key,
                error = CASE WHEN attempts + 1 > :max_attempts
                    THEN 'abandoned: ' || attempts || ' runs ended before it finished (the'
                        || ' last ' || coalesce(run_id, 'unknown') || '); resubmit the'
                        || ' request under a new workflow id, or raise'
                        || ' BRIDGE_MAX_WORKFLOW_ATTEMPTS' END
            WHERE state IN ('pending', 'processing') AND {_FROM_A_TOPIC}
              AND attempts <= :max_attempts
              AND run_id IS NOT DISTINCT FROM :run_id
              AND resume_key IS NOT DISTINCT FROM :resume_key
            RETURNING workflow_id, request_offset, attempts
            """
        ),
        {
            "new_key": new_key,
            "max_attempts": max_attempts,
            "run_id": owner.run_id,
            "resume_key": owner.resume_key,
        },
    )
    return [HandedOver(r.workflow_id, r.request_offset, r.attempts) for r in rows]


def claim(conn: Connection, resume_key: str, run_id: str) -> dict[UUID, str | None]:
    """Make `run_id` the owner of the workflows handed to `resume_key`; return each with
    the reason it must fail for, or None to resume it."""
    rows = conn.execute(
        text(
            "UPDATE workflow_executions SET run_id = :run_id"
            " WHERE resume_key = :resume_key AND state IN ('pending', 'processing')"
            " RETURNING workflow_id, error"
        ),
        {"resume_key": resume_key, "run_id": run_id},
    )
    return {r.workflow_id: r.error for r in rows}
