"""Stamping benchmark: latency at 1 KB / 64 KB / 1 MB and throughput at 100 MB.

Content is bytes of source-like text (indented lines, single blank lines and, like PEP 8
code, a run of three newlines now and then), as a workflow reads files. Small sizes time
`stamp_content(data).stamped_content`, so the spliced result is included. At 100 MB,
`stamp_100mb_mb_s` times `stamp_content(data)` (hash + stamp, splice deferred until the
content is read) and `stamp_100mb_with_content_mb_s` includes building the stamped text.
Raw blake3 is timed on the same bytes in the same run; both hash single-threaded.

    uv run python bench/stamping.py [--quick]

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from blake3 import blake3

from bridge_dagster.stamping import stamp_content

MB = 1024 * 1024
WORDS = [
    "self", "return", "value", "items", "result", "config", "data", "index", "count",
    "def", "class", "import", "for", "in", "if", "else", "None", "True", "path", "name",
]  # fmt: skip


def source_like(size: int, seed: int = 7) -> bytes:
    """Deterministic source-like text of exactly `size` bytes."""
    rng = random.Random(seed)
    lines = []
    length = 0
    while length < min(size, MB):
        indent = "    " * rng.randint(0, 3)
        line = indent + " ".join(rng.choices(WORDS, k=rng.randint(2, 9))) + "(x, y=1)"
        if rng.random() < 0.08:
            line += "\n"
        if rng.random() < 0.02:
            line += "\n\n"
        lines.append(line)
        length += len(line) + 1
    block = ("\n".join(lines) + "\n").encode()
    return (block * (size // len(block) + 1))[:size]


def latencies_us(call: Callable[[], object], repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        call()
        timings.append((time.perf_counter_ns() - start) / 1000)
    return timings


def p99(timings: list[float]) -> float:
    return statistics.quantiles(timings, n=100)[98]


def best_mb_s(call: Callable[[], object], size: int, repeats: int) -> float:
    best = min(latencies_us(call, repeats))
    return size / MB / (best / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, same sizes")
    quick = parser.parse_args().quick
    scale = 1 if quick else 4

    small = {size: source_like(size) for size in (1024, 64 * 1024, MB)}
    repeats = {1024: 5000 * scale, 64 * 1024: 500 * scale, MB: 50 * scale}
    stamp_us = {
        size: latencies_us(lambda data=data: stamp_content(data).stamped_content, repeats[size])
        for size, data in small.items()
    }
    raw_1k_us = latencies_us(lambda: blake3(small[1024]).hexdigest(), repeats[1024])

    big = source_like(100 * MB)
    big_repeats = 3 if quick else 7
    raw_mb_s = best_mb_s(lambda: blake3(big).hexdigest(), len(big), big_repeats)
    stamp_mb_s = best_mb_s(lambda: stamp_content(big), len(big), big_repeats)
    with_content_mb_s = best_mb_s(
        lambda: stamp_content(big).stamped_content, len(big), max(2, big_repeats // 2)
    )

    print(
        json.dumps(
            {
                "stamp_1k_p50_us": round(statistics.median(stamp_us[1024]), 2),
                "stamp_1k_p99_us": round(p99(stamp_us[1024]), 2),
                "raw_1k_p99_us": round(p99(raw_1k_us), 2),
                "stamp_64k_p99_us": round(p99(stamp_us[64 * 1024]), 2),
                "stamp_1m_p99_us": round(p99(stamp_us[MB]), 2),
                "stamp_100mb_mb_s": round(stamp_mb_s, 1),
                "raw_100mb_mb_s": round(raw_mb_s, 1),
                "ratio_100mb": round(stamp_mb_s / raw_mb_s, 3),
                "stamp_100mb_with_content_mb_s": round(with_content_mb_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
