"""Synthetic stamp requests for demos and load tests: the same seed gives the same requests.

The mix looks like real traffic: several namespaces and content types, sizes from about
100 B to 256 KB (mostly small), both stamp types, some with tree intelligence and some
sent as base64 bytes. Every request carries its content inline with a file name beside
it, so it needs no files on disk and works wherever the workflow runs.

`flawed_requests` adds the requests a real producer gets wrong: one that is not JSON, and
some that fail their workflow (a file outside the allowed roots, an invalid namespace).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from bridge_dagster.events.requests import StampType, build_request

NAMESPACES = ("omninode.bridge", "omninode.docs", "omninode.tests", "team.alpha")
NAMESPACE_WEIGHTS = (40, 25, 20, 15)

# (smallest, largest) content size in bytes; most requests are small, a few are large.
SIZE_BUCKETS = ((100, 1_024), (1_024, 8_192), (8_192, 65_536), (65_536, 262_144))
SIZE_WEIGHTS = (60, 25, 12, 3)

RICH_SHARE = 0.2
INTELLIGENCE_SHARE = 0.25
BASE64_SHARE = 0.15

_NOUNS = (
    "workflow", "stamp", "broker", "partition", "namespace", "request", "sensor", "reducer",
    "offset", "schema", "hash", "tree", "index", "snapshot", "pipeline", "report",
)  # fmt: skip
_VERBS = (
    "records", "validates", "publishes", "hashes", "indexes", "replays", "aggregates",
    "stamps", "routes", "retries", "compacts", "loads",
)  # fmt: skip
_ADVERBS = ("quickly", "once", "in order", "again", "per namespace", "naïvely", "at 3 °C")
_ACTIONS = ("load", "save", "count", "check", "merge", "split")
_QUESTIONS = (
    "Which tests cover {stem}?",
    "What depends on {stem}?",
    "Is {stem} documented?",
    "Where is {stem} configured?",
)


@dataclass(frozen=True)
class DemoRequest:
    """One synthetic request: its workflow id and the fields `build_request` takes."""

    workflow_id: UUID
    namespace: str
    content_type: str
    file_path: str
    stamp_type: StampType
    enable_intelligence: bool
    content: str | None = None
    content_b64: str | None = None
    intelligence_context: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `build_request` after the workflow id (all but environment)."""
        return {
            "namespace": self.namespace,
            "content": self.content,
            "content_b64": self.content_b64,
            "file_path": self.file_path,
            "content_type": self.content_type,
            "stamp_type": self.stamp_type,
            "enable_intelligence": self.enable_intelligence,
            "intelligence_context": self.intelligence_context,
            "metadata": self.metadata,
        }


def demo_requests(count: int, *, seed: int = 0) -> Iterator[DemoRequest]:
    """`count` varied requests, generated lazily and reproducibly from `seed`."""
    rng = random.Random(seed)
    for index in range(count):
        yield _demo_request(rng, index, seed)


def _demo_request(rng: random.Random, index: int, seed: int) -> DemoRequest:
    workflow_id = UUID(int=rng.getrandbits(128), version=4)
    namespace = rng.choices(NAMESPACES, NAMESPACE_WEIGHTS)[0]
    content_type = rng.choice(tuple(_GENERATORS))
    directory, extension, generate = _GENERATORS[content_type]
    stem = f"{rng.choice(_NOUNS)}_{index:06d}"
    low, high = rng.choices(SIZE_BUCKETS, SIZE_WEIGHTS)[0]
    text = generate(rng, rng.randint(low, high))
    as_bytes = rng.random() < BASE64_SHARE
    intelligence = rng.random() < INTELLIGENCE_SHARE
    context = None
    if intelligence and rng.random() < 0.5:
        context = rng.choice(_QUESTIONS).format(stem=stem)
    return DemoRequest(
        workflow_id=workflow_id,
        namespace=namespace,
        content_type=content_type,
        file_path=f"{directory}/{stem}.{extension}",
        stamp_type="rich" if rng.random() < RICH_SHARE else "lightweight",
        enable_intelligence=intelligence,
        content=None if as_bytes else text,
        content_b64=base64.b64encode(text.encode()).decode("ascii") if as_bytes else None,
        intelligence_context=context,
        metadata={"source": "demo", "demo_seed": str(seed), "demo_index": str(index)},
    )


@dataclass(frozen=True)
class FlawedRequest:
    """A request message made to go wrong.

    The bridge dead-letters every one; those whose workflow id it can read (fails_workflow)
    also end as failed workflows.
    """

    workflow_id: UUID
    value: bytes
    flaw: str
    fails_workflow: bool


def flawed_requests(count: int, *, seed: int, environment: str) -> list[FlawedRequest]:
    """`count` broken requests, cycling through the flaws; two already show both kinds."""
    rng = random.Random(seed ^ 0x5EED)
    flawed = []
    for index in range(count):
        flaw, fails_workflow, build = _FLAWS[index % len(_FLAWS)]
        workflow_id = UUID(int=rng.getrandbits(128), version=4)
        value = build(workflow_id, environment, index)
        flawed.append(FlawedRequest(workflow_id, value, flaw, fails_workflow))
    return flawed


def _not_json(workflow_id: UUID, environment: str, _index: int) -> bytes:
    return build_request(workflow_id, environment=environment, content="cut short")[:40]


def _missing_file(workflow_id: UUID, environment: str, index: int) -> bytes:
    # A path-only request parses; the workflow finds no such file under the allowed roots.
    path = f"/nonexistent-demo-root/missing_{index:04d}.py"
    return build_request(workflow_id, environment=environment, file_path=path)


def _bad_namespace(workflow_id: UUID, environment: str, _index: int) -> bytes:
    return build_request(
        workflow_id, environment=environment, namespace="not a namespace!", content="x"
    )


def _two_contents(workflow_id: UUID, environment: str, _index: int) -> bytes:
    return build_request(workflow_id, environment=environment, content="a", content_b64="YQ==")


# (what is wrong, whether the bridge can read the workflow id, message builder); the order
# puts one of each kind first.
_FLAWS: tuple[tuple[str, bool, Callable[[UUID, str, int], bytes]], ...] = (
    ("not JSON", False, _not_json),
    ("a file outside the allowed roots", True, _missing_file),
    ("an invalid namespace", True, _bad_namespace),
    ("both content and content_b64", True, _two_contents),
)


# --- content, one generator per type: whole blocks until the target size is reached ------


def _fill(target: int, head: str, block: Callable[[], str], tail: str = "") -> str:
    parts = [head]
    size = len(head) + len(tail)
    while size < target:
        part = block()
        parts.append(part)
        size += len(part)
    parts.append(tail)
    return "".join(parts)


def _sentence(rng: random.Random) -> str:
    noun, other = rng.sample(_NOUNS, 2)
    return f"The {noun} {rng.choice(_VERBS)} the {other} {rng.choice(_ADVERBS)}."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 5)))


def _plain_text(rng: random.Random, target: int) -> str:
    return _fill(target, "", lambda: _paragraph(rng) + "\n\n")


def _markdown(rng: random.Random, target: int) -> str:
    def section() -> str:
        bullets = "".join(f"- {_sentence(rng)}\n" for _ in range(rng.randint(1, 4)))
        title = f"{rng.choice(_NOUNS).capitalize()} {rng.choice(_VERBS)}"
        return f"## {title}\n\n{_paragraph(rng)}\n\n{bullets}\n"

    return _fill(target, f"# The {rng.choice(_NOUNS)} guide\n\n", section)


def _python(rng: random.Random, target: int) -> str:
    def function() -> str:
        name = f"{rng.choice(_ACTIONS)}_{rng.choice(_NOUNS)}"
        return (
            f"\n\ndef {name}(items: list[str], limit: int = {rng.randint(1, 500)}) -> dict:\n"
            f'    """{_sentence(rng)}"""\n'
            "    counts: dict[str, int] = {}\n"
            "    for item in items[:limit]:\n"
            f"        counts[item] = counts.get(item, 0) + {rng.randint(1, 9)}\n"
            "    return counts\n"
        )

    return _fill(
        target, f'"""{_sentence(rng)}"""\n\nfrom __future__ import annotations\n', function
    )


def _json(rng: random.Random, target: int) -> str:
    ids = iter(range(1, 1 << 30))

    def record() -> str:
        item = {
            "id": next(ids),
            "name": rng.choice(_NOUNS),
            "namespace": rng.choice(NAMESPACES),
            "size": rng.randint(0, 1 << 20),
            "tags": rng.sample(_VERBS, 2),
            "active": rng.random() < 0.8,
        }
        return json.dumps(item, ensure_ascii=False) + ",\n  "

    body = _fill(target, "[\n  ", record)
    return body.removesuffix(",\n  ") + "\n]\n"


def _yaml(rng: random.Random, target: int) -> str:
    def endpoint() -> str:
        name = rng.choice(_NOUNS)
        return (
            f"  - name: {name}\n"
            f"    path: /api/v1/{name}\n"
            f"    timeout_ms: {rng.randint(100, 30_000)}\n"
            f"    retries: {rng.randint(0, 5)}\n"
        )

    head = (
        f"service: {rng.choice(_NOUNS)}\n"
        f'version: "1.{rng.randint(0, 30)}.{rng.randint(0, 9)}"\n'
        f"replicas: {rng.randint(1, 5)}\n"
        "endpoints:\n"
    )
    return _fill(target, head, endpoint)


# content type → (directory, file extension, generator)
_GENERATORS: dict[str, tuple[str, str, Callable[[random.Random, int], str]]] = {
    "text/plain": ("notes", "txt", _plain_text),
    "text/markdown": ("docs", "md", _markdown),
    "text/x-python": ("src", "py", _python),
    "application/json": ("data", "json", _json),
    "application/yaml": ("config", "yaml", _yaml),
}
