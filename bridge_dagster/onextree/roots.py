"""Checks that tree roots and files lie under the allowed roots (BRIDGE_ALLOWED_ROOTS)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bridge_dagster.onextree.errors import (
    InvalidPath,
    NotADirectory,
    NotAFile,
    RootNotAllowed,
    RootNotFound,
)

# The stack checks every path again where it reads it, so the setting must reach the stack.
ALLOWED_ROOTS_HINT = (
    "set BRIDGE_ALLOWED_ROOTS in the environment of the running stack (the workflow checks"
    " the path again where it reads it), for example `BRIDGE_ALLOWED_ROOTS=/srv/project make"
    f" run`, to directories separated by {os.pathsep!r} that include it"
)

# `bridge-dagster dev` keeps this lock file in its data directory (database, broker segments,
# generated password) for as long as that directory exists: nothing under it is ever read.
DATA_DIR_MARKER = "dev.lock"

# A directory holding one of these is taken as the top of a project.
PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py", "package.json", "Cargo.toml", "go.mod")


def resolve_allowed_root(root: str | os.PathLike[str], allowed_roots: Sequence[Path]) -> Path:
    """The real path of `root` if it is an existing directory under an allowed root."""
    resolved, _ = _locate(root, allowed_roots)
    if not resolved.exists():
        raise RootNotFound(f"project root {str(root)!r} does not exist; pass an existing directory")
    if not resolved.is_dir():
        raise NotADirectory(
            f"project root {str(root)!r} is not a directory; pass the directory that holds it"
        )
    return resolved


def resolve_allowed_file(path: str | os.PathLike[str], allowed_roots: Sequence[Path]) -> Path:
    """The real path of `path` (symlinks followed) if it is a regular file under an allowed root."""
    resolved, _ = _locate(path, allowed_roots)
    if not resolved.exists():
        raise RootNotFound(f"file {str(path)!r} does not exist; pass an existing file")
    if not resolved.is_file():
        raise NotAFile(f"file {str(path)!r} is not a regular file; pass a file, not a directory")
    return resolved


def find_project_root(file_path: str | os.PathLike[str], allowed_roots: Sequence[Path]) -> Path:
    """The nearest directory above `file_path` holding a project marker, else its allowed root."""
    resolved, boundary = _locate(file_path, allowed_roots)
    for directory in resolved.parents:
        if not directory.is_relative_to(boundary):
            break
        if any((directory / marker).exists() for marker in PROJECT_MARKERS):
            return directory
    return boundary


def _locate(path: str | os.PathLike[str], allowed_roots: Sequence[Path]) -> tuple[Path, Path]:
    """The real path of `path` and the allowed root it lies under."""
    roots = [Path(root).resolve() for root in allowed_roots]
    if not roots:
        raise RootNotAllowed(
            f"no allowed roots are configured, so {str(path)!r} is refused; {ALLOWED_ROOTS_HINT}"
        )
    # Resolving first means a symlink inside an allowed root cannot point the check elsewhere.
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError) as exc:
        raise InvalidPath(f"{str(path)!r} is not a usable path ({exc}); pass a plain path") from exc
    for root in roots:
        if resolved.is_relative_to(root):
            _refuse_data_dir(path, resolved, root)
            return resolved, root
    shown = ", ".join(str(root) for root in roots)
    raise RootNotAllowed(
        f"{str(path)!r} (real path {str(resolved)!r}) is outside the allowed roots [{shown}]; "
        f"{ALLOWED_ROOTS_HINT}"
    )


def data_dir_holding(path: Path, root: Path) -> Path | None:
    """The bridge's data directory that `path` (a real path under `root`) lies in, if any."""
    for directory in (path, *path.parents):
        if (directory / DATA_DIR_MARKER).is_file():
            return directory
        if directory == root:
            return None
    return None


def _refuse_data_dir(path: str | os.PathLike[str], resolved: Path, root: Path) -> None:
    data_dir = data_dir_holding(resolved, root)
    if data_dir is not None:
        raise RootNotAllowed(
            f"{str(path)!r} lies in the bridge's data directory {str(data_dir)!r} (its database,"
            " broker and generated secrets), which is never read, whatever the allowed roots"
        )
