"""File purpose, related files and context analysis."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_dagster.onextree import (
    TreeIndex,
    analyze_context,
    build_tree,
    file_intelligence,
    infer_purpose,
)
from bridge_dagster.onextree.intelligence import MAX_RELATED_PER_RELATION


def write(root: Path, *relative_paths: str) -> None:
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


@pytest.mark.parametrize(
    ("path", "purpose"),
    [
        ("tests/unit/test_builder.py", "test"),
        ("src/builder_test.go", "test"),
        ("web/button.spec.ts", "test"),
        ("conftest.py", "test"),
        ("db/migrations/0001_initial.py", "migration"),
        ("alembic/versions/abc_add_table.py", "migration"),
        ("pkg/__init__.py", "package"),
        ("pyproject.toml", "config"),
        ("deploy/values.yaml", "config"),
        ("Dockerfile", "config"),
        ("README.md", "docs"),
        ("docs/guide.rst", "docs"),
        ("LICENSE", "docs"),
        ("scripts/release.py", "script"),
        ("run.sh", "script"),
        ("pkg/cli.py", "cli"),
        ("pkg/models/user.py", "model"),
        ("pkg/schema.py", "model"),
        ("pkg/user_service.py", "service"),
        ("pkg/api/routes.py", "service"),
        ("data/rows.csv", "data"),
        ("pkg/hashing.py", "source"),
        ("web/logo.png", "asset"),
        ("blob.bin", "other"),
    ],
)
def test_purpose_is_inferred_from_the_path(path: str, purpose: str) -> None:
    assert infer_purpose(path) == purpose


@pytest.fixture
def index(tmp_path: Path) -> TreeIndex:
    write(
        tmp_path,
        "src/pkg/builder.py",
        "src/pkg/query.py",
        "src/pkg/model.py",
        "docs/builder.md",
        "tests/test_builder.py",
        "tests/test_query.py",
    )
    return TreeIndex(build_tree(tmp_path))


def relations(index: TreeIndex, path: str) -> dict[str, str]:
    related = file_intelligence(index, path).related_files
    return {item.path: item.relation for item in related}


def test_a_module_is_related_to_its_test(index: TreeIndex) -> None:
    assert relations(index, "src/pkg/builder.py")["tests/test_builder.py"] == "test"


def test_a_test_is_related_to_the_code_under_test(index: TreeIndex) -> None:
    assert relations(index, "tests/test_builder.py")["src/pkg/builder.py"] == "code_under_test"


def test_files_sharing_a_stem_are_related(index: TreeIndex) -> None:
    assert relations(index, "src/pkg/builder.py")["docs/builder.md"] == "same_stem"


def test_siblings_are_related_but_the_file_itself_is_not(index: TreeIndex) -> None:
    related = relations(index, "src/pkg/builder.py")
    assert related["src/pkg/query.py"] == "sibling"
    assert "src/pkg/builder.py" not in related


def test_siblings_are_bounded(tmp_path: Path) -> None:
    write(tmp_path, *(f"many/file{number}.py" for number in range(3 * MAX_RELATED_PER_RELATION)))
    intelligence = file_intelligence(TreeIndex(build_tree(tmp_path)), "many/file0.py")
    assert len(intelligence.related_files) == MAX_RELATED_PER_RELATION


def test_intelligence_reports_the_file_and_the_project_statistics(index: TreeIndex) -> None:
    intelligence = file_intelligence(index, "src/pkg/model.py").to_dict()
    assert intelligence["in_tree"] is True
    assert intelligence["purpose"] == "model"
    assert intelligence["file"]["extension"] == "py"
    assert intelligence["statistics"]["total_files"] == 6
    assert intelligence["project_root"] == index.root


def test_an_absolute_file_path_inside_the_root_is_reported_relative(index: TreeIndex) -> None:
    absolute = str(Path(index.root) / "src" / "pkg" / "query.py")
    intelligence = file_intelligence(index, absolute)
    assert (intelligence.file_path, intelligence.in_tree) == ("src/pkg/query.py", True)


def test_a_file_missing_from_the_tree_still_gets_a_purpose_but_no_related_files(
    index: TreeIndex,
) -> None:
    intelligence = file_intelligence(index, "tests/test_new.py")
    assert (intelligence.in_tree, intelligence.purpose, intelligence.related_files) == (
        False,
        "test",
        [],
    )


def test_without_a_file_only_the_context_and_statistics_are_reported(index: TreeIndex) -> None:
    intelligence = file_intelligence(index, None, "kafka topic")
    assert (intelligence.file_path, intelligence.purpose) == (None, None)
    assert intelligence.context_analysis.primary_domain == "messaging"


def test_without_a_tree_intelligence_still_infers_purpose() -> None:
    intelligence = file_intelligence(None, "docs/guide.md", "")
    assert (intelligence.purpose, intelligence.statistics, intelligence.project_root) == (
        "docs",
        {},
        None,
    )


def test_context_keywords_pick_the_primary_domain() -> None:
    analysis = analyze_context("Stamp the file: compute the BLAKE3 hash and write metadata")
    assert analysis.primary_domain == "metadata"
    assert {"stamp", "blake3", "hash", "metadata"} <= set(analysis.keywords)


def test_context_without_known_keywords_has_zero_confidence() -> None:
    analysis = analyze_context("lorem ipsum dolor")
    assert (analysis.primary_domain, analysis.confidence, analysis.keywords) == (None, 0.0, [])


def test_more_matching_keywords_give_more_confidence() -> None:
    assert analyze_context("kafka").confidence < analyze_context("kafka topic consumer").confidence


def test_a_context_spread_over_domains_is_less_confident_than_a_focused_one() -> None:
    focused = analyze_context("kafka topic consumer producer")
    spread = analyze_context("kafka postgres docker readme")
    assert spread.confidence < focused.confidence


def test_confidence_stays_between_zero_and_one() -> None:
    many = " ".join(["kafka", "topic", "event", "postgres"] * 50)
    assert 0.0 <= analyze_context(many).confidence <= 1.0
