"""The tree survives a round trip through a .onextree YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_dagster.onextree import TreeFileError, build_tree, read_onextree, write_onextree


def test_a_tree_written_and_read_back_is_equal(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for relative in ("a.py", "b/c.md", "b/d/Makefile", "e/f/g/h.yaml"):
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(relative)
    tree = build_tree(project)
    target = tmp_path / "tree.onextree"
    write_onextree(tree, target)
    assert read_onextree(target) == tree


def test_a_file_that_is_not_a_tree_is_refused_with_the_fix(tmp_path: Path) -> None:
    target = tmp_path / "broken.onextree"
    target.write_text("- just\n- a list\n")
    with pytest.raises(TreeFileError, match="regenerate"):
        read_onextree(target)


def test_a_missing_tree_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TreeFileError, match=r"missing\.onextree"):
        read_onextree(tmp_path / "missing.onextree")
