"""Reads and writes a tree as a .onextree YAML file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from bridge_dagster.onextree.errors import TreeFileError
from bridge_dagster.onextree.model import ProjectTree, TreeNode, TreeStatistics

ONEXTREE_FORMAT_VERSION = 1

# The C implementations are an order of magnitude faster on large trees when available.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def write_onextree(tree: ProjectTree, path: str | os.PathLike[str]) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        yaml.dump(tree_to_dict(tree), stream, Dumper=_Dumper, sort_keys=False)


def read_onextree(path: str | os.PathLike[str]) -> ProjectTree:
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=_Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise TreeFileError(f"cannot read tree file {str(path)!r}: {exc}") from exc
    try:
        return tree_from_dict(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TreeFileError(
            f"tree file {str(path)!r} is not a version {ONEXTREE_FORMAT_VERSION} .onextree file "
            f"({exc!r}); regenerate it from the project root"
        ) from exc


def tree_to_dict(tree: ProjectTree) -> dict[str, Any]:
    statistics = tree.statistics
    return {
        "version": ONEXTREE_FORMAT_VERSION,
        "root": tree.root,
        "generated_at": tree.generated_at,
        "statistics": {
            "total_files": statistics.total_files,
            "total_directories": statistics.total_directories,
            "total_size_bytes": statistics.total_size_bytes,
            "extensions": statistics.extensions,
        },
        "tree": _node_to_dict(tree.root_node),
    }


def tree_from_dict(data: dict[str, Any]) -> ProjectTree:
    if data.get("version") != ONEXTREE_FORMAT_VERSION:
        raise ValueError(f"unsupported version {data.get('version')!r}")
    statistics = data["statistics"]
    return ProjectTree(
        root=str(Path(data["root"])),
        root_node=_node_from_dict(data["tree"]),
        statistics=TreeStatistics(
            total_files=int(statistics["total_files"]),
            total_directories=int(statistics["total_directories"]),
            total_size_bytes=int(statistics["total_size_bytes"]),
            extensions={str(key): int(count) for key, count in statistics["extensions"].items()},
        ),
        generated_at=str(data["generated_at"]),
    )


def _node_to_dict(node: TreeNode) -> dict[str, Any]:
    if node.is_file:
        return {
            "name": node.name,
            "path": node.path,
            "type": "file",
            "size": node.size,
            "extension": node.extension,
        }
    return {
        "name": node.name,
        "path": node.path,
        "type": "directory",
        "size": node.size,
        "children": [_node_to_dict(child) for child in node.children],
    }


def _node_from_dict(data: dict[str, Any]) -> TreeNode:
    node_type = data["type"]
    if node_type == "file":
        return TreeNode(
            path=str(data["path"]),
            name=str(data["name"]),
            type="file",
            size=int(data["size"]),
            extension=str(data["extension"]),
        )
    if node_type != "directory":
        raise ValueError(f"node {data.get('path')!r} has unknown type {node_type!r}")
    return TreeNode(
        path=str(data["path"]),
        name=str(data["name"]),
        type="directory",
        size=int(data["size"]),
        children=[_node_from_dict(child) for child in data["children"]],
    )
