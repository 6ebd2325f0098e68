"""Tree roots and single files must lie under the allowed roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_dagster.onextree import (
    InvalidPath,
    NotADirectory,
    NotAFile,
    RootNotAllowed,
    RootNotFound,
    TreeError,
    find_project_root,
    resolve_allowed_file,
    resolve_allowed_root,
)


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    directory = tmp_path / "allowed"
    (directory / "project" / "src").mkdir(parents=True)
    (directory / "project" / "src" / "main.py").write_text("print()")
    return directory


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("secret")
    return directory


def test_a_directory_under_an_allowed_root_resolves_to_its_real_path(allowed: Path) -> None:
    assert (
        resolve_allowed_root(allowed / "project" / "src" / "..", [allowed])
        == (allowed / "project").resolve()
    )


def test_the_allowed_root_itself_is_allowed(allowed: Path) -> None:
    assert resolve_allowed_root(allowed, [allowed]) == allowed.resolve()


def test_a_root_outside_the_allowed_roots_is_refused_naming_the_path_and_the_fix(
    allowed: Path, outside: Path
) -> None:
    with pytest.raises(RootNotAllowed) as refusal:
        resolve_allowed_root(outside, [allowed])
    assert str(outside) in str(refusal.value)
    assert "BRIDGE_ALLOWED_ROOTS" in str(refusal.value)


def test_dot_dot_cannot_climb_out_of_an_allowed_root(allowed: Path) -> None:
    with pytest.raises(RootNotAllowed):
        resolve_allowed_root(allowed / ".." / "outside", [allowed])


def test_a_sibling_sharing_the_allowed_roots_prefix_is_refused(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app-secrets").mkdir()
    with pytest.raises(RootNotAllowed):
        resolve_allowed_root(tmp_path / "app-secrets", [tmp_path / "app"])


def test_a_symlink_inside_an_allowed_root_pointing_outside_is_refused(
    allowed: Path, outside: Path
) -> None:
    (allowed / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RootNotAllowed):
        resolve_allowed_root(allowed / "link", [allowed])


def test_a_missing_root_is_refused(allowed: Path) -> None:
    with pytest.raises(RootNotFound, match="does not exist"):
        resolve_allowed_root(allowed / "missing", [allowed])


def test_a_file_given_as_root_is_refused(allowed: Path) -> None:
    with pytest.raises(NotADirectory, match="not a directory"):
        resolve_allowed_root(allowed / "project" / "src" / "main.py", [allowed])


def test_no_allowed_roots_refuses_everything_and_says_what_to_set(allowed: Path) -> None:
    with pytest.raises(RootNotAllowed, match="BRIDGE_ALLOWED_ROOTS"):
        resolve_allowed_root(allowed, [])


def test_every_refusal_is_a_tree_error(allowed: Path) -> None:
    assert all(issubclass(error, TreeError) for error in (RootNotAllowed, RootNotFound, NotAFile))


def test_a_file_under_an_allowed_root_resolves(allowed: Path) -> None:
    main = allowed / "project" / "src" / "main.py"
    assert resolve_allowed_file(main, [allowed]) == main.resolve()


def test_a_missing_file_is_refused(allowed: Path) -> None:
    with pytest.raises(RootNotFound):
        resolve_allowed_file(allowed / "missing.py", [allowed])


def test_a_directory_given_as_file_is_refused(allowed: Path) -> None:
    with pytest.raises(NotAFile, match="not a regular file"):
        resolve_allowed_file(allowed / "project", [allowed])


def test_a_file_outside_the_allowed_roots_is_refused(allowed: Path, outside: Path) -> None:
    with pytest.raises(RootNotAllowed):
        resolve_allowed_file(outside / "secret.txt", [allowed])


def test_a_file_symlink_whose_target_is_outside_is_refused(allowed: Path, outside: Path) -> None:
    (allowed / "innocent.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(RootNotAllowed):
        resolve_allowed_file(allowed / "innocent.txt", [allowed])


def test_the_project_root_of_a_file_is_the_nearest_directory_with_a_marker(
    allowed: Path,
) -> None:
    (allowed / "project" / "pyproject.toml").write_text("")
    found = find_project_root(allowed / "project" / "src" / "main.py", [allowed])
    assert found == (allowed / "project").resolve()


def test_without_a_marker_the_project_root_is_the_allowed_root(allowed: Path) -> None:
    found = find_project_root(allowed / "project" / "src" / "main.py", [allowed])
    assert found == allowed.resolve()


def test_a_path_with_a_nul_byte_is_refused_as_invalid(allowed: Path) -> None:
    with pytest.raises(InvalidPath):
        resolve_allowed_root(f"{allowed}/bad\0name", [allowed])
