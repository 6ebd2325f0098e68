"""Dagster resource for project-tree intelligence: the in-process engine or the HTTP service."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
from pydantic import Field, PrivateAttr

from bridge_dagster.onextree import ContextAnalysis, TreeEngine
from bridge_dagster.resources.http_client import (
    EnvelopeClient,
    ServiceRejected,
    ServiceUnavailable,
)


class TreeServiceError(Exception):
    """The tree service refused a request or kept failing."""


class _Backend(Protocol):
    def intelligence(
        self, file_path: str | None, context: str, project_root: str | None
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


class TreeResource(dg.ConfigurableResource):
    """Tree intelligence for stamp workflows. It never raises: when the engine or the service
    fails, `intelligence` returns a fallback marked `degraded` with the reason, so a workflow
    never fails because of it."""

    service_url: str | None = Field(
        default=None,
        description="OnexTree service base URL (ONEXTREE_SERVICE_URL); unset runs the engine "
        "in process.",
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="Directories (BRIDGE_ALLOWED_ROOTS) the in-process engine may read.",
    )
    timeout_s: float = Field(
        default=5.0, gt=0, description="The longest one call may take, retries included."
    )
    max_retries: int = Field(
        default=2,
        ge=0,
        description="Retries after connection errors and 5xx answers, while the call has time.",
    )
    api_key: str | None = Field(default=None, description="X-API-Key for the service.")

    _backend: _Backend | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.service_url:
            self._backend = _HttpBackend(
                self.service_url, self.timeout_s, self.max_retries, self.api_key
            )
        else:
            self._backend = _EngineBackend(TreeEngine([Path(root) for root in self.allowed_roots]))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._backend is not None:
            self._backend.close()

    def intelligence(
        self, file_path: str | None, context: str, project_root: str | None = None
    ) -> dict[str, Any]:
        """The intelligence dict with `degraded: False`, or a degraded fallback."""
        if self._backend is None:
            return degraded_intelligence(
                file_path, project_root, "TreeResource is not set up; use it inside a run"
            )
        try:
            result = self._backend.intelligence(file_path, context, project_root)
        # Anything at all, bug or outage, degrades the answer instead of failing the workflow.
        except Exception as exc:
            return degraded_intelligence(file_path, project_root, f"{type(exc).__name__}: {exc}")
        return {**result, "degraded": False}


def degraded_intelligence(
    file_path: str | None, project_root: str | None, reason: str
) -> dict[str, Any]:
    """A fallback with the keys of a real answer and nothing learned."""
    return {
        "file_path": file_path,
        "in_tree": False,
        "purpose": None,
        "file": None,
        "related_files": [],
        "statistics": {},
        "context_analysis": asdict(ContextAnalysis()),
        "project_root": project_root,
        "degraded": True,
        "reason": reason,
    }


class _EngineBackend:
    def __init__(self, engine: TreeEngine) -> None:
        self.engine = engine

    def intelligence(
        self, file_path: str | None, context: str, project_root: str | None
    ) -> dict[str, Any]:
        return self.engine.intelligence(file_path, context, project_root).to_dict()

    def close(self) -> None:
        """Nothing to release: the engine holds only memory."""


class _HttpBackend:
    def __init__(
        self, service_url: str, timeout_s: float, max_retries: int, api_key: str | None
    ) -> None:
        self.client = EnvelopeClient(service_url, timeout_s, max_retries, api_key)

    def intelligence(
        self, file_path: str | None, context: str, project_root: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"context": context, "file_path": file_path}
        if project_root is not None:
            body["project_root"] = project_root
        try:
            return self.client.post("/intelligence", body)
        except (ServiceRejected, ServiceUnavailable) as exc:
            raise TreeServiceError(str(exc)) from exc

    def close(self) -> None:
        self.client.close()
