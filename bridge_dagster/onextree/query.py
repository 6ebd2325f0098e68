"""Queries over a tree index by extension, name or path, with auto-detection and a limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from bridge_dagster.onextree.errors import InvalidQuery
from bridge_dagster.onextree.index import TreeIndex, normalize_path
from bridge_dagster.onextree.model import TreeNode

QueryType = Literal["auto", "extension", "name", "path"]
QUERY_TYPES: tuple[str, ...] = get_args(QueryType)
DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The first `limit` matches; `total_matches` says how many there were in all.

    `query_type` is the type actually used, so "auto" is never reported.
    """

    results: list[TreeNode]
    count: int
    total_matches: int
    limit: int
    truncated: bool
    query_type: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [node.summary() for node in self.results],
            "count": self.count,
            "total_matches": self.total_matches,
            "limit": self.limit,
            "truncated": self.truncated,
            "query_type": self.query_type,
        }


def query_tree(
    index: TreeIndex, query: str, query_type: str = "auto", limit: int = DEFAULT_LIMIT
) -> QueryResult:
    """Nodes matching `query`: name matches sorted by path, the others in tree order.

    - extension: ".py", "py" or "*.py", case-insensitive.
    - name: an exact file or directory name, or a file's name without its extension,
      case-insensitive ("builder" finds builder.py).
    - path: the node at that relative path and, for a directory, everything under it; when no
      node has that exact path, nodes whose path ends with it ("onextree/query.py").
    """
    if query_type not in QUERY_TYPES:
        raise InvalidQuery(
            f"query_type {query_type!r} is not one of {', '.join(QUERY_TYPES)}; "
            "use auto to let the query decide"
        )
    if limit < 1:
        raise InvalidQuery(f"limit {limit} must be at least 1")
    resolved = detect_query_type(index, query) if query_type == "auto" else query_type
    matches = _MATCHERS[resolved](index, query)
    results = matches[:limit]
    return QueryResult(
        results=results,
        count=len(results),
        total_matches=len(matches),
        limit=limit,
        truncated=len(matches) > limit,
        query_type=resolved,
    )


def detect_query_type(index: TreeIndex, query: str) -> str:
    """A slash means a path; ".py", "*.py" or a bare known extension ("py") means an extension;
    anything else, including ".gitignore"-like names present in the tree, is a name."""
    text = query.strip()
    if "/" in text or "\\" in text:
        return "path"
    lowered = text.lower()
    if lowered.startswith("*."):
        return "extension"
    if lowered.startswith("."):
        return "name" if lowered in index.by_name else "extension"
    if lowered and "." not in lowered and lowered in index.by_extension:
        return "extension"
    return "name"


def normalize_extension(text: str) -> str:
    return text.strip().lower().lstrip("*").lstrip(".")


def _by_extension(index: TreeIndex, query: str) -> list[TreeNode]:
    extension = normalize_extension(query)
    # An empty extension (from "." or "*.") matches nothing rather than every extensionless file.
    return list(index.by_extension.get(extension, ())) if extension else []


def _by_name(index: TreeIndex, query: str) -> list[TreeNode]:
    key = query.strip().lower()
    named = index.by_name.get(key, [])
    stemmed = index.by_stem.get(key, [])
    unique = {node.path: node for node in (*named, *stemmed)}
    return sorted(unique.values(), key=_path_of)


def _path_of(node: TreeNode) -> str:
    return node.path


def _by_path(index: TreeIndex, query: str) -> list[TreeNode]:
    path = normalize_path(query)
    node = index.by_path.get(path)
    if node is not None:
        return _subtree(node)
    suffix = f"/{path}"
    return [candidate for candidate in index.by_path.values() if candidate.path.endswith(suffix)]


def _subtree(node: TreeNode) -> list[TreeNode]:
    collected: list[TreeNode] = []
    pending = [node]
    while pending:
        current = pending.pop()
        collected.append(current)
        pending.extend(reversed(current.children))
    return collected


_MATCHERS = {"extension": _by_extension, "name": _by_name, "path": _by_path}
