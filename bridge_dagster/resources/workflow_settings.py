"""The limits and identity every workflow step applies, as a resource the UI shows."""

import dagster as dg
from pydantic import Field


class WorkflowSettings(dg.ConfigurableResource):
    """DEFAULT_NAMESPACE, BRIDGE_MAX_CONTENT_BYTES, BRIDGE_ALLOWED_ROOTS, ENVIRONMENT,
    EVENT_SIGNING_KEY and ORCHESTRATOR_WORKFLOW_TIMEOUT_MS, as the steps need them."""

    default_namespace: str = "omninode.bridge"
    max_content_bytes: int = 100 * 1024 * 1024
    allowed_roots: list[str] = Field(default_factory=list)
    environment: str = "dev"
    signing_key: str | None = None
    workflow_timeout_ms: int = 600_000
