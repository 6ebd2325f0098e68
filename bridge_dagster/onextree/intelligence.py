"""What a file is for, what it relates to, and what a free-text context is about."""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge_dagster.onextree.index import TreeIndex
from bridge_dagster.onextree.model import TreeNode

MAX_RELATED_PER_RELATION = 10

TEST_DIRECTORIES = frozenset({"tests", "test", "__tests__", "spec", "specs"})
MIGRATION_DIRECTORIES = frozenset({"migrations", "migration", "alembic"})
DOC_DIRECTORIES = frozenset({"docs", "doc", "documentation"})
DOC_EXTENSIONS = frozenset({"md", "rst", "adoc", "txt"})
DOC_STEMS = frozenset({"readme", "changelog", "license", "contributing", "authors", "notice"})
CONFIG_NAMES = frozenset(
    {
        "pyproject.toml", "setup.cfg", "tox.ini", "requirements.txt", "dockerfile",
        "makefile", ".gitignore", ".dockerignore", ".editorconfig", ".env", "package.json",
        "tsconfig.json", "alembic.ini", "uv.lock", "poetry.lock", "package-lock.json",
    }
)  # fmt: skip
CONFIG_EXTENSIONS = frozenset({"yaml", "yml", "toml", "ini", "cfg", "conf", "env", "json", "lock"})
SCRIPT_DIRECTORIES = frozenset({"scripts", "script", "bin", "tools"})
SCRIPT_EXTENSIONS = frozenset({"sh", "bash", "zsh", "ps1", "bat", "cmd"})
CLI_WORDS = frozenset({"cli", "main", "__main__", "cmd", "command", "commands"})
MODEL_WORDS = frozenset(
    {"model", "models", "schema", "schemas", "entity", "entities", "tables", "dto", "types"}
)
SERVICE_WORDS = frozenset(
    {
        "service", "services", "server", "api", "app", "routes", "router", "handler",
        "handlers", "endpoint", "endpoints", "client", "views",
    }
)  # fmt: skip
DATA_EXTENSIONS = frozenset({"csv", "tsv", "parquet", "jsonl", "sql", "db", "sqlite", "xml"})
SOURCE_EXTENSIONS = frozenset(
    {
        "py", "pyi", "js", "jsx", "ts", "tsx", "go", "rs", "java", "kt", "c", "h", "cc",
        "cpp", "hpp", "rb", "php", "cs", "swift", "scala", "sh",
    }
)  # fmt: skip
ASSET_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "css", "scss", "html", "woff", "woff2"}
)

# Keyword domains for a workflow's free-text context.
CONTEXT_DOMAINS: dict[str, frozenset[str]] = {
    "testing": frozenset(
        {"test", "tests", "testing", "pytest", "unittest", "spec", "assert", "fixture",
         "mock", "coverage", "hypothesis"}
    ),
    "api": frozenset(
        {"api", "endpoint", "route", "http", "https", "rest", "request", "response",
         "fastapi", "server", "client", "service"}
    ),
    "database": frozenset(
        {"database", "db", "sql", "postgres", "postgresql", "table", "tables", "migration",
         "schema", "alembic", "query", "index", "transaction"}
    ),
    "documentation": frozenset(
        {"doc", "docs", "documentation", "readme", "guide", "markdown", "tutorial", "changelog"}
    ),
    "configuration": frozenset(
        {"config", "configuration", "settings", "env", "environment", "yaml", "toml", "ini",
         "option", "options"}
    ),
    "security": frozenset(
        {"auth", "authentication", "authorization", "token", "password", "secret", "key",
         "permission", "encryption", "signature", "signing", "credential"}
    ),
    "messaging": frozenset(
        {"kafka", "event", "events", "topic", "stream", "queue", "consumer", "producer",
         "message", "broker", "publish", "subscribe"}
    ),
    "metadata": frozenset(
        {"stamp", "stamping", "metadata", "hash", "blake3", "onex", "uid", "integrity",
         "checksum", "provenance"}
    ),
    "deployment": frozenset(
        {"deploy", "deployment", "docker", "compose", "kubernetes", "k8s", "helm", "ci",
         "build", "release", "container"}
    ),
}  # fmt: skip

_WORD = re.compile(r"[a-z0-9]+")
_STEM_SEPARATORS = re.compile(r"[_\-.]+")


@dataclass(frozen=True, slots=True)
class RelatedFile:
    path: str
    relation: str  # test | code_under_test | same_stem | sibling


@dataclass(frozen=True, slots=True)
class ContextAnalysis:
    """Keyword matches of a context against `CONTEXT_DOMAINS`.

    `confidence` grows with the number of matched keywords (saturating at three) and shrinks
    when the matches spread across several domains.
    """

    keywords: list[str] = field(default_factory=list)
    domains: dict[str, int] = field(default_factory=dict)
    primary_domain: str | None = None
    confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class Intelligence:
    """What the tree knows about one file (or only about the context when no file is given).

    `file_path` is relative to the tree root when the file is in the tree.
    """

    file_path: str | None
    in_tree: bool
    purpose: str | None
    file: dict[str, Any] | None
    related_files: list[RelatedFile]
    statistics: dict[str, Any]
    context_analysis: ContextAnalysis
    project_root: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_intelligence(
    tree_index: TreeIndex | None, file_path: str | None, context: str = ""
) -> Intelligence:
    """Intelligence for `file_path` (absolute inside the tree's root, or relative to it)."""
    analysis = analyze_context(context)
    statistics = tree_index.tree.statistics.to_dict() if tree_index is not None else {}
    project_root = tree_index.root if tree_index is not None else None
    if not file_path:
        return Intelligence(None, False, None, None, [], statistics, analysis, project_root)
    relative = tree_index.relative_path(file_path) if tree_index is not None else file_path
    node = tree_index.by_path.get(relative) if tree_index is not None else None
    in_tree = node is not None and node.is_file
    return Intelligence(
        file_path=relative,
        in_tree=in_tree,
        purpose=infer_purpose(relative),
        file=node.summary() if node is not None and in_tree else None,
        related_files=related_files(tree_index, relative) if tree_index and in_tree else [],
        statistics=statistics,
        context_analysis=analysis,
        project_root=project_root,
    )


def infer_purpose(path: str) -> str:
    """test, migration, package, config, docs, script, cli, model, service, data, source,
    asset or other, judged from the path alone (first rule that fits wins)."""
    parts = path.replace("\\", "/").lower().split("/")
    name = parts[-1]
    directories = set(parts[:-1])
    stem, extension = _split_name(name)
    words = set(_STEM_SEPARATORS.split(stem)) - {""}
    rules = (
        ("test", _is_test(name, stem, directories)),
        ("migration", bool(directories & MIGRATION_DIRECTORIES) or "migration" in stem),
        ("package", name == "__init__.py"),
        ("config", name in CONFIG_NAMES or extension in CONFIG_EXTENSIONS),
        ("docs", extension in DOC_EXTENSIONS or stem in DOC_STEMS
         or bool(directories & DOC_DIRECTORIES)),
        ("script", extension in SCRIPT_EXTENSIONS or bool(directories & SCRIPT_DIRECTORIES)),
        ("cli", bool(words & CLI_WORDS) or "cli" in directories),
        ("model", bool(words & MODEL_WORDS) or bool(directories & MODEL_WORDS)),
        ("service", bool(words & SERVICE_WORDS) or bool(directories & SERVICE_WORDS)),
        ("data", extension in DATA_EXTENSIONS),
        ("source", extension in SOURCE_EXTENSIONS),
        ("asset", extension in ASSET_EXTENSIONS),
    )  # fmt: skip
    return next((purpose for purpose, fits in rules if fits), "other")


def related_files(tree_index: TreeIndex, relative_path: str) -> list[RelatedFile]:
    """Its tests (or the code a test covers), files sharing its stem, then its siblings."""
    stem = _split_name(posixpath.basename(relative_path).lower())[0]
    found: dict[str, RelatedFile] = {}
    groups = (
        ("test", _files_with_stems(tree_index, _test_stems(stem))),
        ("code_under_test", _files_with_stems(tree_index, [_stem_under_test(stem)])),
        ("same_stem", _files_with_stems(tree_index, [stem])),
        ("sibling", tree_index.by_directory.get(posixpath.dirname(relative_path), [])),
    )
    for relation, candidates in groups:
        added = 0
        for node in candidates:
            if added == MAX_RELATED_PER_RELATION:
                break
            if node.is_file and node.path != relative_path and node.path not in found:
                found[node.path] = RelatedFile(node.path, relation)
                added += 1
    return list(found.values())


def analyze_context(context: str) -> ContextAnalysis:
    words = _WORD.findall(context.lower())
    domains: dict[str, int] = {}
    keywords: list[str] = []
    for word in dict.fromkeys(words):
        for domain, vocabulary in CONTEXT_DOMAINS.items():
            if word in vocabulary:
                domains[domain] = domains.get(domain, 0) + 1
                keywords.append(word)
    if not domains:
        return ContextAnalysis()
    primary = max(domains, key=lambda domain: domains[domain])
    hits = sum(domains.values())
    confidence = domains[primary] / hits * min(1.0, hits / 3)
    return ContextAnalysis(
        keywords=list(dict.fromkeys(keywords)),
        domains=domains,
        primary_domain=primary,
        confidence=round(confidence, 3),
    )


def _split_name(name: str) -> tuple[str, str]:
    stem, dotted_extension = posixpath.splitext(name)
    return stem, dotted_extension[1:]


def _is_test(name: str, stem: str, directories: set[str]) -> bool:
    return (
        stem.startswith("test_")
        or stem.endswith(("_test", ".test", ".spec"))
        or name == "conftest.py"
        or bool(directories & TEST_DIRECTORIES)
    )


def _test_stems(stem: str) -> list[str]:
    return [f"test_{stem}", f"{stem}_test", f"{stem}.test", f"{stem}.spec"]


def _stem_under_test(stem: str) -> str:
    """The stem of the code a test file covers, or "" for a file that is not a test."""
    if stem.startswith("test_"):
        return stem.removeprefix("test_")
    for suffix in ("_test", ".test", ".spec"):
        if stem.endswith(suffix):
            return stem.removesuffix(suffix)
    return ""


def _files_with_stems(tree_index: TreeIndex, stems: list[str]) -> list[TreeNode]:
    return [node for stem in stems if stem for node in tree_index.by_stem.get(stem, [])]
