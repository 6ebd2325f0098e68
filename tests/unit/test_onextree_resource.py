"""TreeResource with the in-process engine: answers, caching, and degraded fallbacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bridge_dagster.resources.tree import TreeResource


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "src" / "user_service.py").write_text("x")
    return root


@pytest.fixture
def resource(project: Path) -> Iterator[TreeResource]:
    tree = TreeResource(allowed_roots=[str(project.parent)])
    with tree.yield_for_execution(dg.build_init_resource_context()) as ready:
        yield ready


def test_intelligence_for_a_file_is_not_degraded(resource: TreeResource, project: Path) -> None:
    answer = resource.intelligence(str(project / "src" / "user_service.py"), "http api")
    assert (answer["degraded"], answer["purpose"], answer["in_tree"]) == (False, "service", True)
    assert answer["context_analysis"]["primary_domain"] == "api"


def test_a_relative_file_path_is_read_against_the_given_project_root(
    resource: TreeResource, project: Path
) -> None:
    answer = resource.intelligence("src/user_service.py", "", project_root=str(project))
    assert (answer["project_root"], answer["in_tree"]) == (str(project.resolve()), True)


def test_a_batch_over_one_project_reuses_the_built_tree(
    resource: TreeResource, project: Path
) -> None:
    resource.intelligence(None, "", project_root=str(project))
    (project / "src" / "added_later.py").write_text("x")
    answer = resource.intelligence(None, "", project_root=str(project))
    assert answer["statistics"]["total_files"] == 2


def test_a_root_outside_the_allowed_roots_degrades_instead_of_raising(
    resource: TreeResource, tmp_path: Path
) -> None:
    elsewhere = tmp_path.parent
    answer = resource.intelligence(None, "", project_root=str(elsewhere))
    assert answer["degraded"] is True
    assert "RootNotAllowed" in answer["reason"]
    assert "BRIDGE_ALLOWED_ROOTS" in answer["reason"]


def test_a_degraded_answer_has_the_keys_of_a_real_one(
    resource: TreeResource, project: Path, tmp_path: Path
) -> None:
    real = resource.intelligence(str(project / "src" / "user_service.py"), "")
    degraded = resource.intelligence(None, "", project_root=str(tmp_path.parent))
    assert set(degraded) == set(real) | {"reason"}


def test_a_resource_used_outside_a_run_degrades_with_a_clear_reason(project: Path) -> None:
    answer = TreeResource(allowed_roots=[str(project)]).intelligence(None, "")
    assert answer["degraded"] is True
    assert "not set up" in answer["reason"]


def test_the_resource_serves_an_op_inside_a_dagster_run(project: Path) -> None:
    seen: dict[str, Any] = {}

    @dg.op
    def ask(tree: TreeResource) -> None:
        seen.update(tree.intelligence(str(project / "pyproject.toml"), "settings"))

    @dg.job
    def tree_job() -> None:
        ask()

    result = tree_job.execute_in_process(
        resources={"tree": TreeResource(allowed_roots=[str(project)])}
    )
    assert result.success
    assert (seen["degraded"], seen["purpose"]) == (False, "config")
