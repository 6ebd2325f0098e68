"""Dagster resource for project-tree intelligence: the in-process engine or the HTTP service."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr

from bridge_dagster.onextree import ContextAnalysis, TreeEngine

BACKOFF_BASE_S = 0.2


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
    timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one HTTP attempt.")
    max_retries: int = Field(
        default=2, ge=0, description="Retries after connection errors and 5xx answers."
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
        self.max_retries = max_retries
        self.client = httpx.Client(
            base_url=service_url,
            timeout=timeout_s,
            headers={"X-API-Key": api_key} if api_key else {},
        )

    def intelligence(
        self, file_path: str | None, context: str, project_root: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"context": context, "file_path": file_path}
        if project_root is not None:
            body["project_root"] = project_root
        return self._post("/intelligence", body)

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POSTs with retries on connection failures and 5xx; a 4xx is final."""
        failure: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(BACKOFF_BASE_S * 2 ** (attempt - 1))
            try:
                response = self.client.post(path, json=body)
            # A read timeout means the service is busy, not gone: retrying would only
            # multiply the wait, so it is final like a 4xx.
            except httpx.ReadTimeout:
                raise
            except httpx.TransportError as exc:
                failure = exc
                continue
            if response.status_code >= 500:
                failure = TreeServiceError(_describe(response))
                continue
            if response.status_code >= 400:
                raise TreeServiceError(_describe(response))
            return response.json()["data"]
        raise TreeServiceError(
            f"{self.client.base_url}{path} failed after {self.max_retries + 1} attempts: {failure}"
        ) from failure


def _describe(response: httpx.Response) -> str:
    try:
        message = response.json().get("message", "")
    except (ValueError, AttributeError):  # not JSON, or JSON without the envelope
        message = response.text[:200]
    return f"{response.request.url} answered {response.status_code}: {message}"
