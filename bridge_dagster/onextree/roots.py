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

ALLOWED_ROOTS_HINT = (
    "set BRIDGE_ALLOWED_ROOTS to an os.pathsep-separated list of directories "
    f"(separator {os.pathsep!r}) that includes it"
)

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
            return resolved, root
    shown = ", ".join(str(root) for root in roots)
    raise RootNotAllowed(
        f"{str(path)!r} (real path {str(resolved)!r}) is outside the allowed roots [{shown}]; "
        f"{ALLOWED_ROOTS_HINT}"
    )
