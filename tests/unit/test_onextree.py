"""Building, indexing and querying the project tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_dagster.onextree import (
    InvalidQuery,
    TreeIndex,
    build_tree,
    query_tree,
)


def write(root: Path, *relative_paths: str, content: bytes = b"abc") -> None:
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def paths_in(root: Path) -> set[str]:
    return set(TreeIndex(build_tree(root)).by_path) - {""}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "README.md",
        "pyproject.toml",
        "src/app/builder.py",
        "src/app/query.py",
        "src/app/models/user.py",
        "docs/builder.md",
        "tests/test_builder.py",
        "Makefile",
    )
    return tmp_path


@pytest.fixture
def index(project: Path) -> TreeIndex:
    return TreeIndex(build_tree(project))


# --- building --------------------------------------------------------------------------


def test_tree_nodes_carry_relative_posix_paths_names_types_sizes_and_extensions(
    tmp_path: Path,
) -> None:
    write(tmp_path, "pkg/Module.PY", content=b"12345")
    tree = build_tree(tmp_path)
    package = tree.root_node.children[0]
    module = package.children[0]
    assert (package.path, package.type) == ("pkg", "directory")
    assert (module.path, module.name, module.type, module.size, module.extension) == (
        "pkg/Module.PY",
        "Module.PY",
        "file",
        5,
        "py",
    )


def test_statistics_count_files_directories_extensions_and_bytes(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "b/c.py", "b/d/e.md", "Makefile", content=b"1234")
    statistics = build_tree(tmp_path).statistics
    assert statistics.total_files == 4
    assert statistics.total_directories == 2
    assert statistics.total_size_bytes == 16
    assert statistics.extensions == {"py": 2, "md": 1, "": 1}


def test_directory_size_is_the_total_of_the_files_under_it(tmp_path: Path) -> None:
    write(tmp_path, "b/one.txt", content=b"12")
    write(tmp_path, "b/d/two.txt", content=b"345")
    directory = TreeIndex(build_tree(tmp_path)).lookup("b")
    assert directory is not None
    assert directory.size == 5


@pytest.mark.parametrize(
    "excluded",
    [
        ".git/HEAD",
        "__pycache__/mod.cpython-311.pyc",
        "node_modules/pkg/index.js",
        ".venv/lib/site.py",
        "venv/lib/site.py",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/content",
        ".tox/py311/log",
        ".cache/thing",
        "build/lib/mod.py",
        "dist/pkg.whl",
        "pkg.egg-info/PKG-INFO",
        "target/debug/app",
        "src/__pycache__/deep.pyc",
    ],
)
def test_default_exclusions_keep_generated_directories_out_of_the_tree(
    tmp_path: Path, excluded: str
) -> None:
    write(tmp_path, "src/kept.py", excluded)
    assert paths_in(tmp_path) == {"src", "src/kept.py"}


def test_a_directory_holding_pyvenv_cfg_is_excluded_whatever_its_name(tmp_path: Path) -> None:
    write(tmp_path, "kept.py", "env/pyvenv.cfg", "env/lib/site.py", "my-env/pyvenv.cfg")
    assert paths_in(tmp_path) == {"kept.py"}


def test_a_directory_named_env_without_pyvenv_cfg_is_kept(tmp_path: Path) -> None:
    write(tmp_path, "env/settings.py")
    assert paths_in(tmp_path) == {"env", "env/settings.py"}


def test_a_symlink_leaving_the_root_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(outside, "secret.txt", "nested/more.txt")
    write(root, "kept.py")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "escape_file.txt").symlink_to(outside / "secret.txt")
    assert paths_in(root) == {"kept.py"}


def test_a_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "real/data.txt", content=b"1234567")
    (tmp_path / "alias.txt").symlink_to(tmp_path / "real" / "data.txt")
    alias = TreeIndex(build_tree(tmp_path)).lookup("alias.txt")
    assert alias is not None
    assert (alias.type, alias.size) == ("file", 7)


def test_a_symlink_loop_ends_the_walk_instead_of_recursing(tmp_path: Path) -> None:
    write(tmp_path, "a/file.txt")
    (tmp_path / "a" / "back_to_a").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "a" / "to_root").symlink_to(tmp_path, target_is_directory=True)
    assert paths_in(tmp_path) == {"a", "a/file.txt"}


def test_a_dangling_symlink_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, "kept.py")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    assert paths_in(tmp_path) == {"kept.py"}


def test_children_are_ordered_by_name(tmp_path: Path) -> None:
    write(tmp_path, "c.py", "a.py", "b/x.py")
    names = [child.name for child in build_tree(tmp_path).root_node.children]
    assert names == sorted(names)


def test_the_tree_root_is_the_real_absolute_path(tmp_path: Path) -> None:
    write(tmp_path, "a.py")
    assert build_tree(tmp_path / ".." / tmp_path.name).root == os.path.realpath(tmp_path)


# --- index -----------------------------------------------------------------------------


def test_lookup_by_exact_path_finds_the_node(index: TreeIndex) -> None:
    node = index.lookup("src/app/builder.py")
    assert node is not None
    assert node.name == "builder.py"


def test_lookup_accepts_leading_dot_slash_and_backslashes(index: TreeIndex) -> None:
    assert index.lookup("./src\\app\\query.py") is index.lookup("src/app/query.py") is not None


def test_lookup_of_an_unknown_path_is_none(index: TreeIndex) -> None:
    assert index.lookup("src/app/missing.py") is None


def test_directory_index_lists_a_directorys_children(index: TreeIndex) -> None:
    assert [node.name for node in index.by_directory["src/app"]] == [
        "builder.py",
        "models",
        "query.py",
    ]


def test_an_absolute_path_inside_the_root_is_made_relative(index: TreeIndex, project: Path) -> None:
    assert index.relative_path(str(project / "src" / "app" / "query.py")) == "src/app/query.py"


# --- queries ---------------------------------------------------------------------------


def result_paths(index: TreeIndex, query: str, query_type: str = "auto") -> list[str]:
    return [node.path for node in query_tree(index, query, query_type).results]


@pytest.mark.parametrize("query", [".py", "py", "*.py", ".PY"])
def test_extension_query_finds_every_file_with_that_extension(index: TreeIndex, query: str) -> None:
    assert sorted(result_paths(index, query, "extension")) == [
        "src/app/builder.py",
        "src/app/models/user.py",
        "src/app/query.py",
        "tests/test_builder.py",
    ]


def test_name_query_matches_a_full_name_case_insensitively(index: TreeIndex) -> None:
    assert result_paths(index, "readme.MD", "name") == ["README.md"]


def test_name_query_matches_a_file_stem(index: TreeIndex) -> None:
    assert result_paths(index, "builder", "name") == ["docs/builder.md", "src/app/builder.py"]


def test_name_query_matches_directories_too(index: TreeIndex) -> None:
    assert result_paths(index, "models", "name") == ["src/app/models"]


def test_path_query_returns_a_directory_and_everything_under_it(index: TreeIndex) -> None:
    assert result_paths(index, "src/app/models", "path") == [
        "src/app/models",
        "src/app/models/user.py",
    ]


def test_path_query_without_an_exact_match_matches_path_suffixes(index: TreeIndex) -> None:
    assert result_paths(index, "app/query.py", "path") == ["src/app/query.py"]


@pytest.mark.parametrize(
    ("query", "detected"),
    [
        (".py", "extension"),
        ("*.md", "extension"),
        ("py", "extension"),
        ("src/app", "path"),
        ("src\\app", "path"),
        ("builder", "name"),
        ("builder.py", "name"),
        ("Makefile", "name"),
        ("toml", "extension"),
        ("unknownext", "name"),
    ],
)
def test_auto_detects_the_query_type(index: TreeIndex, query: str, detected: str) -> None:
    assert query_tree(index, query).query_type == detected


def test_auto_treats_a_dotted_name_present_in_the_tree_as_a_name(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "a.gitignore")
    result = query_tree(TreeIndex(build_tree(tmp_path)), ".gitignore")
    assert (result.query_type, [n.path for n in result.results]) == ("name", [".gitignore"])


def test_limit_truncates_results_and_reports_the_total(tmp_path: Path) -> None:
    write(tmp_path, *(f"m{number}.py" for number in range(7)))
    result = query_tree(TreeIndex(build_tree(tmp_path)), "py", limit=3)
    assert (result.count, result.total_matches, result.limit, result.truncated) == (3, 7, 3, True)
    assert len(result.results) == 3


def test_a_query_within_the_limit_is_not_truncated(index: TreeIndex) -> None:
    result = query_tree(index, "md", limit=10)
    assert (result.count, result.total_matches, result.truncated) == (2, 2, False)


def test_a_query_without_matches_returns_an_empty_result(index: TreeIndex) -> None:
    result = query_tree(index, "nothing-like-this")
    assert (result.results, result.count, result.total_matches) == ([], 0, 0)


def test_a_limit_below_one_is_refused(index: TreeIndex) -> None:
    with pytest.raises(InvalidQuery, match="limit 0"):
        query_tree(index, "py", limit=0)


def test_an_unknown_query_type_is_refused_with_the_valid_types(index: TreeIndex) -> None:
    with pytest.raises(InvalidQuery, match="auto, extension, name, path"):
        query_tree(index, "py", "glob")


def test_query_result_dict_carries_node_summaries_without_children(index: TreeIndex) -> None:
    result = query_tree(index, "src/app/models", "path").to_dict()
    assert result["results"][0] == {
        "path": "src/app/models",
        "name": "models",
        "type": "directory",
        "size": 3,
        "extension": "",
    }
    assert result["query_type"] == "path"


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory: pytest.TempPathFactory) -> TreeIndex:
    """Hypothesis reruns a test body many times; one tree per module serves every run."""
    root = tmp_path_factory.mktemp("hypothesis-tree")
    write(root, "a.py", "b/c.md", "b/d/e.py", ".gitignore", "Makefile")
    return TreeIndex(build_tree(root))


@given(
    query=st.text(max_size=200),
    query_type=st.sampled_from(["auto", "extension", "name", "path"]),
    limit=st.integers(min_value=1, max_value=50),
)
def test_arbitrary_query_text_never_crashes_and_respects_the_limit(
    shared_index: TreeIndex, query: str, query_type: str, limit: int
) -> None:
    result = query_tree(shared_index, query, query_type, limit)
    assert result.count == len(result.results) <= limit
    assert result.total_matches >= result.count
    assert result.query_type in ("extension", "name", "path")
