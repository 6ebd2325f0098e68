"""Builds the tree of a project root with one os.scandir pass per directory."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from operator import attrgetter

from bridge_dagster.onextree.errors import NotADirectory, RootNotFound
from bridge_dagster.onextree.model import ProjectTree, TreeNode, TreeStatistics

EXCLUDED_DIRECTORY_NAMES = frozenset(
    {
        # version control
        ".git", ".hg", ".svn",
        # dependencies and virtualenvs
        "node_modules", ".venv", "venv", "__pypackages__",
        # caches
        "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
        ".tox", ".nox", ".cache", ".eggs",
        # build outputs
        "build", "dist", "target", ".next", "htmlcov",
    }
)  # fmt: skip
EXCLUDED_DIRECTORY_SUFFIXES = (".egg-info",)
# Any directory holding this file is a virtualenv, whatever its name ("env", ".env311", …).
VIRTUALENV_MARKER = "pyvenv.cfg"

_by_name = attrgetter("name")


def build_tree(root: str | os.PathLike[str]) -> ProjectTree:
    """The tree of `root`, without the default exclusions.

    Symlinks are followed only when their real target lies inside the root, and a symlinked
    directory is expanded at most once and never when it points at one of its ancestors, so
    the walk always ends. Callers check the root against the allowed roots first.
    """
    root_real = os.path.realpath(root)
    if not os.path.exists(root_real):
        raise RootNotFound(f"project root {str(root)!r} does not exist; pass an existing directory")
    if not os.path.isdir(root_real):
        raise NotADirectory(f"project root {str(root)!r} is not a directory")

    walk = _Walk(root_real)
    walk.run()
    return ProjectTree(
        root=root_real,
        root_node=walk.root_node,
        statistics=walk.statistics,
        generated_at=datetime.now(UTC).isoformat(),
    )


def is_excluded_directory(name: str, path: str) -> bool:
    return (
        name in EXCLUDED_DIRECTORY_NAMES
        or name.endswith(EXCLUDED_DIRECTORY_SUFFIXES)
        or os.path.exists(os.path.join(path, VIRTUALENV_MARKER))
    )


def extension_of(name: str) -> str:
    return os.path.splitext(name)[1][1:].lower()


class _Walk:
    """One iterative depth-first walk; holds the state the loop shares."""

    def __init__(self, root_real: str) -> None:
        self.root_real = root_real
        self.root_node = TreeNode(
            path="", name=os.path.basename(root_real), type="directory", size=0
        )
        self.statistics = TreeStatistics()
        self.expanded_links: set[str] = set()

    def run(self) -> None:
        # (directory path on disk, its node, its real path) still to scan.
        pending: list[tuple[str, TreeNode, str]] = [
            (self.root_real, self.root_node, self.root_real)
        ]
        # Directories with their parents in discovery order: every descendant comes later.
        discovered: list[tuple[TreeNode, TreeNode]] = []
        while pending:
            disk_path, node, real_path = pending.pop()
            for child, child_disk_path, child_real_path in self._scan(disk_path, node, real_path):
                discovered.append((child, node))
                pending.append((child_disk_path, child, child_real_path))
        for directory, parent in reversed(discovered):
            parent.size += directory.size
        self.statistics.total_size_bytes = self.root_node.size

    def _scan(
        self, disk_path: str, node: TreeNode, real_path: str
    ) -> list[tuple[TreeNode, str, str]]:
        """Adds the files of one directory to `node`; returns its subdirectories to scan."""
        try:
            with os.scandir(disk_path) as entries:
                ordered = sorted(entries, key=_by_name)
        except OSError:
            return []  # unreadable: the directory stays, empty
        prefix = f"{node.path}/" if node.path else ""
        statistics = self.statistics
        extensions = statistics.extensions
        subdirectories: list[tuple[TreeNode, str, str]] = []
        for entry in ordered:
            name = entry.name
            try:
                if entry.is_symlink():
                    target = self._followable_target(entry.path, real_path)
                    if target is None:
                        continue
                    is_directory = os.path.isdir(target)
                    if not is_directory and not os.path.isfile(target):
                        continue
                    entry_real_path = target
                elif entry.is_dir(follow_symlinks=False):
                    is_directory = True
                    entry_real_path = f"{real_path}{os.sep}{name}"
                elif entry.is_file(follow_symlinks=False):
                    is_directory = False
                else:
                    continue  # sockets, fifos, devices
                if is_directory:
                    if is_excluded_directory(name, entry.path):
                        continue
                    child = TreeNode(path=prefix + name, name=name, type="directory", size=0)
                    node.children.append(child)
                    statistics.total_directories += 1
                    subdirectories.append((child, entry.path, entry_real_path))
                    continue
                size = entry.stat().st_size
            except OSError:
                continue  # vanished or unreadable while walking
            extension = extension_of(name)
            node.children.append(
                TreeNode(path=prefix + name, name=name, type="file", size=size, extension=extension)
            )
            node.size += size
            statistics.total_files += 1
            extensions[extension] = extensions.get(extension, 0) + 1
        return subdirectories

    def _followable_target(self, link_path: str, link_parent_real: str) -> str | None:
        """The real target of a symlink if it may be followed, else None."""
        target = os.path.realpath(link_path)
        if not _is_inside(target, self.root_real):
            return None
        if os.path.isdir(target):
            if target in self.expanded_links or _is_inside(link_parent_real, target):
                return None
            self.expanded_links.add(target)
        return target


def _is_inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)
