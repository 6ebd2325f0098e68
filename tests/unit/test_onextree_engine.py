"""The in-process engine caches trees per root and picks the tree a request is about."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_dagster.onextree import RootNotAllowed, TreeEngine


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "src" / "service.py").write_text("x")
    return root


def test_the_same_root_is_built_once_within_the_ttl(project: Path) -> None:
    engine = TreeEngine([project.parent])
    assert engine.index_for(project) is engine.index_for(project / "src" / "..")


def test_an_expired_tree_is_rebuilt_and_sees_new_files(project: Path) -> None:
    engine = TreeEngine([project.parent], ttl_s=0)
    engine.index_for(project)
    (project / "src" / "new.py").write_text("x")
    assert engine.index_for(project).lookup("src/new.py") is not None


def test_the_least_recently_used_tree_is_dropped_beyond_the_bound(tmp_path: Path) -> None:
    roots = [tmp_path / name for name in ("a", "b", "c")]
    for root in roots:
        root.mkdir()
    engine = TreeEngine([tmp_path], max_trees=2)
    first = engine.index_for(roots[0])
    engine.index_for(roots[1])
    engine.index_for(roots[2])
    assert engine.index_for(roots[0]) is not first


def test_generate_always_builds_a_fresh_tree(project: Path) -> None:
    engine = TreeEngine([project.parent])
    assert engine.generate(project) is not engine.generate(project)


def test_intelligence_finds_the_project_of_an_absolute_file_path(project: Path) -> None:
    engine = TreeEngine([project.parent])
    intelligence = engine.intelligence(str(project / "src" / "service.py"), "")
    assert (intelligence.project_root, intelligence.file_path, intelligence.purpose) == (
        str(project.resolve()),
        "src/service.py",
        "service",
    )


def test_intelligence_for_a_root_outside_the_allowed_roots_is_refused(project: Path) -> None:
    engine = TreeEngine([project / "src"])
    with pytest.raises(RootNotAllowed):
        engine.intelligence(None, "", project_root=str(project))
