"""The in-process tree engine: builds trees of allowed roots, caches them, answers requests."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from bridge_dagster.onextree.builder import build_tree
from bridge_dagster.onextree.index import TreeIndex
from bridge_dagster.onextree.intelligence import Intelligence, file_intelligence
from bridge_dagster.onextree.roots import find_project_root, resolve_allowed_root

DEFAULT_TTL_S = 60.0
DEFAULT_MAX_TREES = 8


class TreeEngine:
    """Keeps the indexes of the few most recently used roots for `ttl_s` seconds.

    A batch of workflows over one project then builds its tree once, while a tree never
    stays staler than the TTL. Safe to share between threads.
    """

    def __init__(
        self,
        allowed_roots: Sequence[Path],
        ttl_s: float = DEFAULT_TTL_S,
        max_trees: int = DEFAULT_MAX_TREES,
    ) -> None:
        self.allowed_roots = [Path(root) for root in allowed_roots]
        self.ttl_s = ttl_s
        self.max_trees = max_trees
        self._cache: OrderedDict[Path, tuple[float, TreeIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def generate(self, project_root: str | os.PathLike[str]) -> TreeIndex:
        """A freshly built index of `project_root`, which replaces any cached one."""
        root = resolve_allowed_root(project_root, self.allowed_roots)
        with self._lock:
            return self._build(root)

    def index_for(self, project_root: str | os.PathLike[str]) -> TreeIndex:
        """The cached index of `project_root`, built when missing or older than the TTL."""
        root = resolve_allowed_root(project_root, self.allowed_roots)
        with self._lock:
            cached = self._cache.get(root)
            if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
                self._cache.move_to_end(root)
                return cached[1]
            return self._build(root)

    def intelligence(
        self,
        file_path: str | None,
        context: str,
        project_root: str | None = None,
        current: TreeIndex | None = None,
    ) -> Intelligence:
        """Intelligence over the tree of `project_root`; without one, over the project that
        holds an absolute `file_path`; otherwise over `current` (which may be None)."""
        if project_root:
            index: TreeIndex | None = self.index_for(project_root)
        elif file_path and os.path.isabs(file_path):
            index = self.index_for(find_project_root(file_path, self.allowed_roots))
        else:
            index = current
        return file_intelligence(index, file_path, context)

    def _build(self, root: Path) -> TreeIndex:
        index = TreeIndex(build_tree(root))
        self._cache[root] = (time.monotonic(), index)
        self._cache.move_to_end(root)
        while len(self._cache) > self.max_trees:
            self._cache.popitem(last=False)
        return index
