"""The OnexTree service over real HTTP, driven by httpx and by TreeResource."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from bridge_dagster.resources.tree import TreeResource
from bridge_dagster.services.onextree_app import create_onextree_app
from tests.integration.onextree_server import serve

pytestmark = pytest.mark.integration

API_KEY = "test-key-123"


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    for relative in (
        "project/pyproject.toml",
        "project/src/builder.py",
        "project/tests/test_builder.py",
        "project/README.md",
    ):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("content")
    return root


@pytest.fixture
def project(allowed: Path) -> Path:
    return allowed / "project"


@pytest.fixture
def base_url(allowed: Path) -> Iterator[str]:
    with serve(create_onextree_app(allowed_roots=[allowed])) as url:
        yield url


@contextmanager
def tree_resource(**config: object) -> Iterator[TreeResource]:
    resource = TreeResource(**config)
    with resource.yield_for_execution(dg.build_init_resource_context()) as ready:
        yield ready


def count_requests(app: FastAPI) -> list[str]:
    """Records the path of every request the app receives."""
    seen: list[str] = []

    @app.middleware("http")
    async def _record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seen.append(request.url.path)
        return await call_next(request)

    return seen


def test_generate_reports_the_trees_size(base_url: str, project: Path) -> None:
    response = httpx.post(f"{base_url}/generate", json={"project_root": str(project)})
    data = response.json()["data"]
    assert response.status_code == 200
    assert (data["success"], data["total_files"], data["total_directories"]) == (True, 4, 2)
    assert data["generation_time_ms"] >= 0


def test_query_after_generate_returns_matching_nodes(base_url: str, project: Path) -> None:
    httpx.post(f"{base_url}/generate", json={"project_root": str(project)})
    response = httpx.post(f"{base_url}/query", json={"query": ".py", "limit": 1})
    data = response.json()["data"]
    assert (data["count"], data["total_matches"], data["query_type"]) == (1, 2, "extension")
    assert set(data["results"][0]) == {"path", "name", "type", "size", "extension"}


def test_stats_describe_the_generated_tree(base_url: str, project: Path) -> None:
    httpx.post(f"{base_url}/generate", json={"project_root": str(project)})
    data = httpx.get(f"{base_url}/stats").json()["data"]
    assert (data["total_files"], data["extensions"]) == (4, {"toml": 1, "py": 2, "md": 1})


def test_query_before_generate_says_to_generate_a_tree_first(base_url: str) -> None:
    response = httpx.post(f"{base_url}/query", json={"query": "py"})
    assert response.status_code == 409
    assert "generate a tree first" in response.json()["message"]


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_limit_out_of_bounds_is_a_client_error(base_url: str, limit: int) -> None:
    response = httpx.post(f"{base_url}/query", json={"query": "py", "limit": limit})
    assert response.status_code == 422
    assert response.json()["status"] == "error"


def test_a_root_outside_the_allowed_roots_is_forbidden(base_url: str, tmp_path: Path) -> None:
    response = httpx.post(f"{base_url}/generate", json={"project_root": str(tmp_path)})
    assert response.status_code == 403
    assert "BRIDGE_ALLOWED_ROOTS" in response.json()["message"]


def test_health_answers_before_any_tree_exists(base_url: str) -> None:
    data = httpx.get(f"{base_url}/health").json()["data"]
    assert (data["status"], data["tree_loaded"]) == ("healthy", False)


def test_the_resource_gets_intelligence_from_the_service(base_url: str, project: Path) -> None:
    with tree_resource(service_url=base_url) as tree:
        answer = tree.intelligence(str(project / "src" / "builder.py"), "build the tree")
    assert (answer["degraded"], answer["purpose"], answer["in_tree"]) == (False, "source", True)
    assert {"path": "tests/test_builder.py", "relation": "test"} in answer["related_files"]


def test_a_forbidden_root_degrades_the_resource_without_retrying(
    allowed: Path, tmp_path: Path
) -> None:
    app = create_onextree_app(allowed_roots=[allowed])
    seen = count_requests(app)
    with serve(app) as url, tree_resource(service_url=url, max_retries=3) as tree:
        answer = tree.intelligence(None, "", project_root=str(tmp_path))
    assert answer["degraded"] is True
    assert "403" in answer["reason"]
    assert seen == ["/intelligence"]


def test_the_resource_retries_a_5xx_and_then_succeeds(allowed: Path, project: Path) -> None:
    app = create_onextree_app(allowed_roots=[allowed])
    failures_left = [2]

    @app.middleware("http")
    async def _fail_twice(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if failures_left[0]:
            failures_left[0] -= 1
            return JSONResponse(status_code=503, content={"message": "warming up"})
        return await call_next(request)

    seen = count_requests(app)
    with serve(app) as url, tree_resource(service_url=url, max_retries=2) as tree:
        answer = tree.intelligence(None, "", project_root=str(project))
    assert answer["degraded"] is False
    assert len(seen) == 3


def test_a_stopped_service_runs_out_of_retries_and_degrades(allowed: Path) -> None:
    with serve(create_onextree_app(allowed_roots=[allowed])) as url:
        pass
    with tree_resource(service_url=url, max_retries=2, timeout_s=1.0) as tree:
        answer = tree.intelligence("src/builder.py", "context")
    assert answer["degraded"] is True
    assert "after 3 attempts" in answer["reason"]


def test_with_an_api_key_requests_without_it_are_unauthorized(allowed: Path) -> None:
    with serve(create_onextree_app(allowed_roots=[allowed], api_key=API_KEY)) as url:
        response = httpx.get(f"{url}/stats")
    assert response.status_code == 401


def test_with_an_api_key_health_stays_open(allowed: Path) -> None:
    with serve(create_onextree_app(allowed_roots=[allowed], api_key=API_KEY)) as url:
        response = httpx.get(f"{url}/health")
    assert response.status_code == 200


def test_the_resource_sends_its_api_key(allowed: Path, project: Path) -> None:
    with (
        serve(create_onextree_app(allowed_roots=[allowed], api_key=API_KEY)) as url,
        tree_resource(service_url=url, api_key=API_KEY) as tree,
    ):
        answer = tree.intelligence(None, "", project_root=str(project))
    assert (answer["degraded"], answer["statistics"]["total_files"]) == (False, 4)


def test_a_wrong_api_key_degrades_the_resource(allowed: Path, project: Path) -> None:
    with (
        serve(create_onextree_app(allowed_roots=[allowed], api_key=API_KEY)) as url,
        tree_resource(service_url=url, api_key="wrong", max_retries=2) as tree,
    ):
        answer = tree.intelligence(None, "", project_root=str(project))
    assert answer["degraded"] is True
    assert "401" in answer["reason"]
