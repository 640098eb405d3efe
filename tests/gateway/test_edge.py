"""The gateway's edge (its middleware): authentication before a body is read, text no
database can store refused as a 422 naming the field, one label value for unknown methods,
and an unhandled error answered without dropping a keep-alive connection (real uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from somaagent.gateway.app import create_app
from tests.fakes._server import run_asgi
from tests.gateway.conftest import Gateway, make_settings

pytestmark = pytest.mark.anyio

LONE = '{"title": "\\ud800"}'  # the JSON escape of a lone surrogate


def series(text: str, name: str) -> list[dict[str, str]]:
    return [
        dict(s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/conversations", b"{not json", {"content-type": "application/json"}),
        ("/v1/chat/completions", b"[1,", {"content-type": "application/json"}),
        ("/v1/memory/collections", b'{"name": 5}', {"content-type": "application/json"}),
        ("/v1/prompts", b"x" * 2_000_000, {"content-type": "application/json"}),
    ],
)
async def test_authentication_comes_before_the_body(
    gateway: Gateway, path: str, body: bytes, headers: dict[str, str]
) -> None:
    for auth in ({}, {"Authorization": "Bearer soma_sk_wrong"}):
        anonymous = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway.app), base_url="http://gateway"
        )
        async with anonymous:
            response = await anonymous.post(path, content=body, headers={**headers, **auth})
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/conversations", LONE, ["body", "title"]),
        (
            "/v1/conversations",
            '{"metadata": {"k": ["ok", "\\udfff"]}}',
            ["body", "metadata", "k", 1],
        ),
        ("/v1/conversations", '{"metadata": {"\\ud83d": 1}}', ["body", "metadata", "\\ud83d"]),
        ("/v1/conversations", '{"title": "a\\u0000b"}', ["body", "title"]),
        (
            "/v1/memory/collections",
            '{"name": "kb", "description": "\\udc00"}',
            ["body", "description"],
        ),
        (
            "/v1/chat/completions",
            '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
            ["body", "messages", 0, "content"],
        ),
        ("/v1/embeddings", '{"model": "x", "input": ["fine", "\\ud800x"]}', ["body", "input", 1]),
    ],
)
async def test_unstorable_text_is_a_422_naming_the_field(
    gateway: Gateway, path: str, body: str, loc: list[Any]
) -> None:
    response = await gateway.client.post(
        path, content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["loc"] == loc
    assert problem["request_id"] == response.headers["x-request-id"]
    # nothing was stored: the tenant's lists still answer
    listed = await gateway.client.get("/v1/conversations")
    assert listed.status_code == 200 and listed.json()["data"] == []


async def test_valid_text_that_looks_suspicious_still_passes(gateway: Gateway) -> None:
    # a surrogate pair (one emoji), an escaped backslash before "ud800", RTL and combining marks
    title = '"\\ud83d\\ude00 \\\\ud800 \\u05e9\\u05dc\\u05d5\\u05dd e\\u0301"'
    response = await gateway.client.post(
        "/v1/conversations",
        content=('{"title": ' + title + "}").encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "\U0001f600 \\ud800 שלום e\u0301"
    listed = await gateway.client.get("/v1/conversations")
    assert listed.json()["data"][0]["title"] == response.json()["title"]


async def test_unknown_methods_share_one_label_value(gateway: Gateway) -> None:
    for method in ("PROPFIND", "LOCK", "MKCOL", "BREW", "X-ANYTHING"):
        for path in ("/v1/conversations", "/nowhere"):
            await gateway.client.request(method, path)
    text = (await gateway.client.get("/metrics")).text
    methods = {
        s["http_request_method"] for s in series(text, "http_server_request_duration_seconds_count")
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "_OTHER"}
    assert "_OTHER" in methods


def _boom_app(tmp_path: Path, fake_openai: Any, keys: list[str]) -> FastAPI:
    url = f"sqlite+aiosqlite:///{tmp_path / 'edge.db'}"
    app = create_app(make_settings(tmp_path, url, fake_openai), on_admin_key=keys.append)

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    return app


def test_an_unhandled_error_keeps_the_connection(tmp_path: Path, fake_openai: Any) -> None:
    """uvicorn closes a connection whose app raised after answering; the middleware answers
    the problem itself so the next request on the same keep-alive connection is served."""
    keys: list[str] = []
    app = _boom_app(tmp_path, fake_openai, keys)
    with run_asgi(app, lifespan="on") as url:
        peers: list[Any] = []

        def remember(response: httpx.Response) -> None:
            stream = response.extensions["network_stream"]
            peers.append(stream.get_extra_info("socket").getsockname())

        with httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {keys[0]}"},
            event_hooks={"response": [remember]},
        ) as client:
            for _ in range(5):
                failed = client.get("/v1/boom")
                assert failed.status_code == 500
                assert failed.headers["content-type"] == "application/problem+json"
                assert "a bug" not in failed.text  # no internals in the body
                assert failed.json()["request_id"] == failed.headers["x-request-id"]
                assert "connection" not in failed.headers
                assert client.get("/v1/conversations").status_code == 200
        assert len(set(peers)) == 1, peers  # one connection served all ten


async def test_a_failed_stream_is_counted_with_its_error_status(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    ok = await gateway.client.post(url, json={"content": "fine", "stream": True})
    cut = await gateway.client.post(url, json={"content": "x [[stream_error]]", "stream": True})
    assert ok.status_code == cut.status_code == 200  # the headers went out before the failure
    assert "event: error" in cut.text
    text = (await gateway.client.get("/metrics")).text
    counted = {
        s["http_response_status_code"]: value
        for s, value in (
            (dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "http_server_request_duration_seconds_count"
        )
        if s["http_route"] == "/v1/conversations/{conversation_id}/messages"
        and s["http_request_method"] == "POST"
        and value
    }
    assert counted == {"200": 1.0, "502": 1.0}, counted
