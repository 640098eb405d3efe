"""Bad input is a 4xx problem+json naming the field, never a 500."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio


async def test_unknown_field_is_422_naming_it(gateway: Gateway) -> None:
    r = await gateway.client.post("/v1/conversations", json={"titel": "typo"})
    assert r.status_code == 422
    body = r.json()
    assert body["errors"][0]["loc"] == ["body", "titel"]
    assert "titel" in body["detail"]


async def test_wrong_type_and_empty_message(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    wrong = await gateway.client.post(url, json={"content": 42})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["loc"] == ["body", "content"]
    empty = await gateway.client.post(url, json={"content": ""})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["loc"] == ["body", "content"]


async def test_oversized_message_is_422(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    r = await gateway.client.post(
        f"/v1/conversations/{conv['id']}/messages", json={"content": "x" * 100_001}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "content"]


async def test_malformed_json_is_422(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/v1/conversations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["type"] == "json_invalid"


async def test_body_over_limit_is_413(gateway: Gateway) -> None:
    limit = gateway.settings.max_request_bytes
    r = await gateway.client.post("/v1/conversations", json={"title": "x" * (limit + 10)})
    assert r.status_code == 413
    assert r.json()["type"] == "urn:somaagent:problem:payload-too-large"


async def test_chunked_body_over_limit_is_413(gateway: Gateway) -> None:
    limit = gateway.settings.max_request_bytes

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(limit // 1000 + 5):
            yield b" " * 1000

    r = await gateway.client.post(
        "/v1/conversations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_unknown_route_is_404_problem(gateway: Gateway) -> None:
    r = await gateway.client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_every_response_has_request_id(gateway: Gateway) -> None:
    r = await gateway.client.get("/v1/conversations/conv_missing")
    assert r.headers["x-request-id"]
    assert r.json()["request_id"] == r.headers["x-request-id"]


async def test_lone_surrogate_is_422_not_500(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    body = b'{"content": "bad \\ud800 text"}'
    r = await gateway.client.post(
        f"/v1/conversations/{conv['id']}/messages",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "content"]
    chat = await gateway.client.post(
        "/v1/chat/completions",
        content=b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x\\udc00"}]}',
        headers={"content-type": "application/json"},
    )
    assert chat.status_code == 422
    assert chat.json()["errors"][0]["loc"] == ["body", "messages", 0, "content"]
