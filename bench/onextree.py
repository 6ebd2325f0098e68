"""Benchmark of the project tree engine: build a 10,000-file tree, then time lookups and queries.

Run: `uv run python bench/onextree.py [--quick]`. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bridge_dagster.onextree import (
    ProjectTree,
    TreeIndex,
    build_tree,
    query_tree,
    read_onextree,
    write_onextree,
)

FILE_COUNT = 10_000
FILES_PER_DIRECTORY = 25
EXTENSIONS = ("py", "md", "yaml", "json", "txt", "ts", "sql", "toml")


def make_tree(root: Path) -> list[str]:
    """Writes FILE_COUNT small files in nested directories; returns their relative paths."""
    paths: list[str] = []
    for number in range(FILE_COUNT):
        directory_number = number // FILES_PER_DIRECTORY
        relative = (
            f"pkg{directory_number % 8}/module{directory_number % 50}/part{directory_number}/"
            f"file{number}.{EXTENSIONS[number % len(EXTENSIONS)]}"
        )
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (number % 512))
        paths.append(relative)
    # Excluded directories must not slow the build down: they are never entered.
    for excluded in (".git/objects", "node_modules/lib", "__pycache__"):
        (root / excluded).mkdir(parents=True, exist_ok=True)
        for number in range(200):
            (root / excluded / f"blob{number}").write_bytes(b"y")
    return paths


def time_builds(root: Path, repeats: int) -> list[float]:
    build_tree(root)  # warm the OS directory cache the way a second request would find it
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        build_tree(root)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def time_lookups(index: TreeIndex, paths: list[str], samples: int) -> list[float]:
    chosen = random.Random(7).choices(paths, k=samples)
    timings = []
    lookup = index.lookup
    clock = time.perf_counter_ns
    for path in chosen:
        start = clock()
        lookup(path)
        timings.append((clock() - start) / 1000)
    return timings


def time_queries(index: TreeIndex, repeats: int) -> dict[str, float]:
    queries = {"extension": ".py", "name": "file42", "path": "pkg1/module9"}
    medians = {}
    for kind, text in queries.items():
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            query_tree(index, text, limit=100)
            timings.append((time.perf_counter() - start) * 1_000_000)
        medians[f"query_{kind}_median_us"] = round(statistics.median(timings), 1)
    return medians


def time_yaml_round_trip(tree: ProjectTree, directory: Path) -> dict[str, float]:
    target = directory / "bench.onextree"
    start = time.perf_counter()
    write_onextree(tree, target)
    written = time.perf_counter()
    read_onextree(target)
    read = time.perf_counter()
    return {
        "yaml_write_10k_ms": round((written - start) * 1000, 1),
        "yaml_read_10k_ms": round((read - written) * 1000, 1),
        "yaml_bytes": target.stat().st_size,
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute)")
    quick = parser.parse_args().quick
    build_repeats, lookup_samples, query_repeats = (5, 20_000, 20) if quick else (15, 200_000, 100)

    with (
        tempfile.TemporaryDirectory(prefix="onextree-bench-") as directory,
        tempfile.TemporaryDirectory(prefix="onextree-bench-out-") as output,
    ):
        root = Path(directory)
        paths = make_tree(root)
        builds = time_builds(root, build_repeats)
        index_start = time.perf_counter()
        index = TreeIndex(build_tree(root))
        index_ms = (time.perf_counter() - index_start) * 1000
        assert index.tree.statistics.total_files == FILE_COUNT, "exclusions leaked into the tree"
        lookups = time_lookups(index, paths, lookup_samples)
        result = {
            "build_10k_ms": round(statistics.median(builds), 2),
            "build_10k_min_ms": round(min(builds), 2),
            "build_and_index_10k_ms": round(index_ms, 2),
            "lookup_p50_us": round(percentile(lookups, 0.50), 3),
            "lookup_p99_us": round(percentile(lookups, 0.99), 3),
            **time_queries(index, query_repeats),
            **time_yaml_round_trip(index.tree, Path(output)),
            "files": FILE_COUNT,
            "build_repeats": build_repeats,
            "lookup_samples": lookup_samples,
            "quick": quick,
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
