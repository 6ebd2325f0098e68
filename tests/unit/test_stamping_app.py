"""The stamping HTTP API in process: answers, limits and bad input (never a 500)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_dagster.services.stamping_app import MAX_BATCH_ITEMS, PREFIX, create_stamping_app
from bridge_dagster.stamping import canonical_hash

CONTENT = "print('hello')\n"


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_stamping_app(max_content_bytes=1000))


def test_a_stamp_answer_carries_the_original_field_names(client: TestClient) -> None:
    response = client.post(f"{PREFIX}/stamp", json={"content": CONTENT, "namespace": "ns"})

    data = response.json()["data"]
    assert {"success", "stamp_id", "file_hash", "stamped_content", "stamp", "stamp_type",
            "created_at", "namespace"} <= data.keys()  # fmt: skip
    assert (data["file_hash"], data["namespace"]) == (canonical_hash(CONTENT), "ns")


def test_content_without_stamps_validates_as_no_stamps(client: TestClient) -> None:
    response = client.post(f"{PREFIX}/validate", json={"content": CONTENT})

    assert response.status_code == 200
    assert response.json()["message"] == "no stamps found"
    assert response.json()["data"]["stamps_found"] == 0


def test_oversize_content_is_answered_413(client: TestClient) -> None:
    response = client.post(f"{PREFIX}/stamp", json={"content": "x" * 1001})

    assert response.status_code == 413
    assert "BRIDGE_MAX_CONTENT_BYTES" in response.json()["message"]


def test_an_oversize_upload_is_answered_413(client: TestClient) -> None:
    response = client.post(f"{PREFIX}/hash", files={"file": ("big.bin", b"x" * 1001)})

    assert response.status_code == 413


def test_a_batch_reports_each_item(client: TestClient) -> None:
    items = [{"id": "ok", "content": CONTENT}, {"id": "big", "content": "x" * 1001}]

    data = client.post(f"{PREFIX}/batch", json={"items": items}).json()["data"]

    assert [(r["id"], r["success"]) for r in data["results"]] == [("ok", True), ("big", False)]
    assert (data["succeeded"], data["failed"]) == (1, 1)


def test_a_batch_over_the_item_cap_is_refused(client: TestClient) -> None:
    items = [{"id": str(n), "content": "x"} for n in range(MAX_BATCH_ITEMS + 1)]

    response = client.post(f"{PREFIX}/batch", json={"items": items})

    assert response.status_code == 422
    assert f"at most {MAX_BATCH_ITEMS} items" in response.json()["message"]


def test_an_unknown_stamp_type_is_refused(client: TestClient) -> None:
    response = client.post(
        f"{PREFIX}/stamp", json={"content": CONTENT, "options": {"stamp_type": "gold"}}
    )

    assert response.status_code == 422


def test_a_lone_surrogate_in_json_is_refused_not_crashed(client: TestClient) -> None:
    response = client.post(
        f"{PREFIX}/stamp",
        content=b'{"content": "a\\ud800b"}',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422


def test_the_openapi_document_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {f"{PREFIX}/stamp", f"{PREFIX}/validate", f"{PREFIX}/hash", f"{PREFIX}/batch"} <= set(
        paths
    )


@settings(max_examples=60, deadline=None)
@given(
    route=st.sampled_from(["/stamp", "/validate", "/batch"]),
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["content", "options", "items", "id", "stamp_type", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=8,
    ),
)
def test_any_json_body_gets_an_answer_below_500(route: str, body: object) -> None:
    client = TestClient(create_stamping_app(max_content_bytes=1000))

    assert client.post(f"{PREFIX}{route}", json=body).status_code < 500
