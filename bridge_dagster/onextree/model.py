"""The data a project tree is made of: nodes, statistics and the tree itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

NodeType = Literal["file", "directory"]

# Files without an extension are counted under this key in the per-extension statistics.
NO_EXTENSION = ""


@dataclass(slots=True)
class TreeNode:
    """One file or directory. `path` is relative to the tree root, posix style ("" is the root).

    `extension` is lowercase without the dot ("py"), empty for none. A directory's `size`
    is the total size of the files under it.
    """

    path: str
    name: str
    type: NodeType
    size: int
    extension: str = NO_EXTENSION
    children: list[TreeNode] = field(default_factory=list)

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    def summary(self) -> dict[str, Any]:
        """The node without its children, as the query API returns it."""
        return {
            "path": self.path,
            "name": self.name,
            "type": self.type,
            "size": self.size,
            "extension": self.extension,
        }


@dataclass(slots=True)
class TreeStatistics:
    total_files: int = 0
    total_directories: int = 0
    total_size_bytes: int = 0
    extensions: dict[str, int] = field(default_factory=dict)

    @property
    def total_size_mb(self) -> float:
        return round(self.total_size_bytes / (1024 * 1024), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_files": self.total_files,
            "total_directories": self.total_directories,
            "total_size_bytes": self.total_size_bytes,
            "total_size_mb": self.total_size_mb,
            "extensions": dict(self.extensions),
        }


@dataclass(slots=True)
class ProjectTree:
    """The tree of one project root (`root` is its absolute path) and its statistics.

    `total_directories` does not count the root itself.
    """

    root: str
    root_node: TreeNode
    statistics: TreeStatistics
    generated_at: str
