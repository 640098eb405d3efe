"""Client mistakes are 4xx naming the field, never an outage: filters the stores cannot run
(through the default Chroma store), documents sent under another content type, and an
OpenAPI document whose every ``$ref`` resolves (schema-driven clients depend on it)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio

SEARCH = "/v1/memory/collections/{name}/search"


def count(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
async def collection(gateway: Gateway) -> str:
    client = gateway.client
    assert (await client.post("/v1/memory/collections", json={"name": "kb"})).status_code == 201
    documents = [{"text": "cells divide by mitosis", "metadata": {"topic": "bio", "n": 5}}]
    response = await client.post(
        "/v1/memory/collections/kb/documents", json={"documents": documents}
    )
    assert response.status_code == 201, response.text
    return "kb"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("where", "loc"),
    [
        ({"$where": "this.n > 1"}, ["filter", "$where"]),
        ({"$and": [{"n": 1}, {"n": 2}]}, ["filter", "$and"]),
        ({"n": 2**63}, ["filter", "n"]),
        ({"n": {"in": [1, -(2**64)]}}, ["filter", "n", "in", 1]),
    ],
)
async def test_filter_mistakes_are_422_not_vector_store_outages(
    gateway: Gateway, collection: str, where: dict[str, Any], loc: list[Any]
) -> None:
    for mode in ("vector", "hybrid", "keyword"):
        body = {"query": "cells", "filter": where, "mode": mode}
        response = await gateway.client.post(
            f"/v1/memory/collections/{collection}/search", json=body
        )
        assert response.status_code == 422, (mode, response.text)
        assert response.json()["errors"][0]["loc"] == loc
    metrics = (await gateway.client.get("/metrics")).text
    # the memory SLO counts a memory route's 5xx: a client's mistake must not reach it
    name = "http_server_request_duration_seconds_count"
    assert count(metrics, name, http_route=SEARCH, http_response_status_code="503") == 0
    assert count(metrics, name, http_route=SEARCH, http_response_status_code="422") == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png"]
)
async def test_documents_check_the_content_type(
    gateway: Gateway, collection: str, content_type: str
) -> None:
    body = b'{"documents": [{"text": "sent as something else"}]}'
    response = await gateway.client.post(
        f"/v1/memory/collections/{collection}/documents",
        content=body,
        headers={"content-type": content_type},
    )
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    listed = await gateway.client.get(f"/v1/memory/collections/{collection}")
    assert listed.json()["document_count"] == 1


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_openapi_ref_resolves(gateway: Gateway) -> None:
    document = (await gateway.client.get("/openapi.json")).json()
    refs = set(_refs(document))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
            node = node[part]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_unstorable_text_in_an_upload_form_is_a_422(
    gateway: Gateway, collection: str
) -> None:
    files = {"files": ("note.md", b"# Note\n\nplain text", "text/markdown")}
    for raw, loc in (
        ('{"k": "\\ud800"}', ["body", "metadata", "k"]),
        ('{"k": ["a\\u0000"]}', ["body", "metadata", "k", 0]),
    ):
        response = await gateway.client.post(
            f"/v1/memory/collections/{collection}/documents", files=files, data={"metadata": raw}
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == loc
    listed = await gateway.client.get(f"/v1/memory/collections/{collection}/documents")
    assert listed.status_code == 200 and len(listed.json()["data"]) == 1
