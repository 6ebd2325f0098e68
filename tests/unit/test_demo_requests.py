import ast
import base64
import json
from collections import Counter

import pytest
import yaml

from bridge_dagster.events import RequestRejected, build_request, parse_request
from bridge_dagster.events.demo import NAMESPACES, DemoRequest, demo_requests, flawed_requests

COUNT = 500


@pytest.fixture(scope="module")
def requests() -> list[DemoRequest]:
    return list(demo_requests(COUNT, seed=7))


def text_of(request: DemoRequest) -> str:
    if request.content is not None:
        return request.content
    assert request.content_b64 is not None
    return base64.b64decode(request.content_b64).decode()


def test_the_same_seed_gives_the_same_requests() -> None:
    assert list(demo_requests(50, seed=3)) == list(demo_requests(50, seed=3))


def test_different_seeds_give_different_requests() -> None:
    first = [r.workflow_id for r in demo_requests(20, seed=1)]
    second = [r.workflow_id for r in demo_requests(20, seed=2)]
    assert not set(first) & set(second)


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    assert list(demo_requests(10, seed=5)) == list(demo_requests(30, seed=5))[:10]


def test_yields_exactly_the_count_asked_for() -> None:
    assert sum(1 for _ in demo_requests(17)) == 17


def test_workflow_ids_are_unique_version_4_uuids(requests: list[DemoRequest]) -> None:
    assert len({r.workflow_id for r in requests}) == COUNT
    assert {r.workflow_id.version for r in requests} == {4}


def test_every_namespace_appears(requests: list[DemoRequest]) -> None:
    assert {r.namespace for r in requests} == set(NAMESPACES)


def test_every_content_type_appears(requests: list[DemoRequest]) -> None:
    assert {r.content_type for r in requests} == {
        "text/plain",
        "text/markdown",
        "text/x-python",
        "application/json",
        "application/yaml",
    }


def test_sizes_span_100_bytes_to_256_kb_and_are_mostly_small(
    requests: list[DemoRequest],
) -> None:
    sizes = [len(text_of(r).encode()) for r in requests]
    assert min(sizes) >= 100
    assert max(sizes) > 64 * 1024
    assert max(sizes) < 270 * 1024
    assert sum(size < 8 * 1024 for size in sizes) > COUNT * 0.7


def test_both_stamp_types_appear_mostly_lightweight(requests: list[DemoRequest]) -> None:
    counts = Counter(r.stamp_type for r in requests)
    assert counts["lightweight"] > counts["rich"] > 0


def test_some_requests_ask_for_intelligence(requests: list[DemoRequest]) -> None:
    asking = [r for r in requests if r.enable_intelligence]
    assert 0 < len(asking) < COUNT
    assert any(r.intelligence_context for r in asking)


def test_some_requests_send_bytes_as_base64_and_the_rest_text(
    requests: list[DemoRequest],
) -> None:
    as_bytes = [r for r in requests if r.content_b64 is not None]
    assert 0 < len(as_bytes) < COUNT
    assert all((r.content is None) != (r.content_b64 is None) for r in requests)


def test_content_is_well_formed_for_its_type(requests: list[DemoRequest]) -> None:
    parsers = {
        "text/x-python": ast.parse,
        "application/json": json.loads,
        "application/yaml": yaml.safe_load,
    }
    for request in requests:
        parse = parsers.get(request.content_type)
        if parse is not None:
            parse(text_of(request))


def test_file_names_carry_the_extension_of_their_content_type(
    requests: list[DemoRequest],
) -> None:
    extensions = {
        "text/plain": ".txt",
        "text/markdown": ".md",
        "text/x-python": ".py",
        "application/json": ".json",
        "application/yaml": ".yaml",
    }
    assert all(r.file_path.endswith(extensions[r.content_type]) for r in requests)


def test_every_request_is_accepted_by_parse_request(requests: list[DemoRequest]) -> None:
    for request in requests:
        raw = build_request(request.workflow_id, environment="test", **request.build_kwargs())
        parsed = parse_request(raw, default_namespace="fallback", max_content_bytes=1024 * 1024)
        assert parsed.workflow_id == request.workflow_id
        assert parsed.namespace == request.namespace
        assert parsed.content_bytes() == text_of(request).encode()


def _parse(raw: bytes) -> object:
    return parse_request(raw, default_namespace="fallback", max_content_bytes=1024 * 1024)


def test_of_the_flawed_requests_only_the_file_outside_the_roots_passes_parse_request() -> None:
    for item in flawed_requests(8, seed=3, environment="test"):
        if item.flaw == "a file outside the allowed roots":
            assert _parse(item.value).workflow_id == item.workflow_id
        else:
            with pytest.raises(RequestRejected):
                _parse(item.value)


def test_two_flawed_requests_already_show_an_unreadable_one_and_a_failing_one() -> None:
    flawed = flawed_requests(2, seed=9, environment="test")
    assert sorted(f.fails_workflow for f in flawed) == [False, True]
