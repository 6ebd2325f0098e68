"""The limits and identity every workflow step applies, as a resource the UI shows."""

import dagster as dg
from pydantic import Field


class WorkflowSettings(dg.ConfigurableResource):
    """What the stamp_workflow steps apply, and the limits that size and pace its runs; each
    field is the setting of the same name."""

    default_namespace: str = Field(
        default="omninode.bridge",
        description="DEFAULT_NAMESPACE: the namespace of requests that name none",
    )
    max_content_bytes: int = Field(
        default=100 * 1024 * 1024,
        description="BRIDGE_MAX_CONTENT_BYTES: larger content fails its workflow"
        " (content_too_large)",
    )
    max_run_content_bytes: int = Field(
        default=256 * 1024 * 1024,
        description="BRIDGE_MAX_RUN_CONTENT_BYTES: file bytes one run holds in memory between"
        " its steps; a file beyond them is read again by each step and must be unchanged",
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="BRIDGE_ALLOWED_ROOTS: the directories a request's file_path must lie under",
    )
    environment: str = Field(
        default="dev", description="ENVIRONMENT: written into every event envelope"
    )
    signing_key: str | None = Field(
        default=None,
        description="EVENT_SIGNING_KEY (an EnvVar): when set, events carry an HMAC-SHA256"
        " x-signature header",
    )
    workflow_timeout_ms: int = Field(
        default=600_000,
        description="ORCHESTRATOR_WORKFLOW_TIMEOUT_MS: a workflow unfinished this long after its"
        " last change, whose run has ended, is failed by sweep_stale_workflows",
    )
    step_timeout_ms: int = Field(
        default=120_000,
        description="ORCHESTRATOR_STEP_TIMEOUT_MS: the longest one service call may take,"
        " retries included; a batch calls no service after BATCH_DEADLINE_CALLS (10) times"
        " it, and its unfinished workflows fail (batch_deadline)",
    )
    # The limits below are applied by the request sensor and the run queue; they are here so
    # the UI shows them beside the rest.
    max_requests_per_run: int = Field(
        default=1000,
        description="MAX_REQUESTS_PER_RUN: the most requests stamp_request_sensor puts in one"
        " stamp_workflow run",
    )
    max_workflow_queue_size: int = Field(
        default=10_000,
        description="MAX_WORKFLOW_QUEUE_SIZE: requests that queued and running stamp_workflow"
        " runs may hold; stamp_request_sensor requests no more until they drop below it",
    )
    orchestrator_concurrency: int = Field(
        default=10,
        description="ORCHESTRATOR_CONCURRENCY: the most runs in progress at once, the run"
        " queue's max_concurrent_runs (landing and reducer runs are dequeued first)",
    )
