"""Dictionary indexes over a built tree: O(1) lookups by path, extension, name and directory."""

from __future__ import annotations

import os
import posixpath

from bridge_dagster.onextree.model import ProjectTree, TreeNode


def normalize_path(text: str) -> str:
    """A user-supplied relative path in the index's form: posix, no leading "./" or slashes."""
    cleaned = posixpath.normpath(text.strip().replace("\\", "/")).strip("/")
    return "" if cleaned == "." else cleaned


class TreeIndex:
    """Indexes over one `ProjectTree`.

    Name and stem keys are lowercase, so name lookups ignore case; paths are exact.
    `by_directory` maps a directory's path ("" for the root) to its children.
    """

    def __init__(self, tree: ProjectTree) -> None:
        self.tree = tree
        self.by_path: dict[str, TreeNode] = {}
        self.by_extension: dict[str, list[TreeNode]] = {}
        self.by_name: dict[str, list[TreeNode]] = {}
        self.by_stem: dict[str, list[TreeNode]] = {}
        self.by_directory: dict[str, list[TreeNode]] = {}
        self._add_all(tree.root_node)

    @property
    def root(self) -> str:
        return self.tree.root

    def lookup(self, path: str) -> TreeNode | None:
        """The node at a relative path, or None."""
        return self.by_path.get(normalize_path(path))

    def relative_path(self, path: str) -> str:
        """`path` relative to the tree root when it is absolute and inside it; else normalized."""
        if os.path.isabs(path) and "\0" not in path:
            real = os.path.realpath(path)
            if real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep):
                return normalize_path(os.path.relpath(real, self.root).replace(os.sep, "/"))
        return normalize_path(path)

    def _add_all(self, root_node: TreeNode) -> None:
        pending = [root_node]
        while pending:
            node = pending.pop()
            self.by_path[node.path] = node
            self.by_name.setdefault(node.name.lower(), []).append(node)
            if node.is_file:
                self.by_extension.setdefault(node.extension, []).append(node)
                stem = posixpath.splitext(node.name)[0].lower()
                self.by_stem.setdefault(stem, []).append(node)
            else:
                self.by_directory[node.path] = node.children
                pending.extend(reversed(node.children))
