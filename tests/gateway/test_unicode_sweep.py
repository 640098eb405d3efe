"""The Unicode and size sweep (issue 14): every string field of every JSON request body gets a
lone surrogate, NUL, a 1 MB string, right-to-left text and stacked combining marks. Each answer
is a 4xx or a success, never a 5xx; what was stored stays readable (every list and get of the
tenant answers 200), and text that was accepted comes back as sent.

The seeds below hold one valid body per operation; a test checks that every operation of the
OpenAPI document with a JSON body has one, so a new endpoint cannot slip past the sweep.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from somaagent.memory.service import MemoryService
from tests.gateway.conftest import FAKE_MODEL, Gateway, swapped_memory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# The escaped forms go into the raw JSON text: a client sending "\ud800" sends these bytes.
NASTY: dict[str, str] = {
    "lone_surrogate": "\\ud800",
    "lone_low_surrogate": "x\\udfffy",
    "nul": "a\\u0000b",
    "one_mb": "x" * 1_048_576,
    "rtl": "\\u202eabc \\u05e9\\u05dc\\u05d5\\u05dd \\u0645\\u0631\\u062d\\u0628\\u0627",
    "combining": "e" + "\\u0301" * 40 + "\\u0489",
}
DECODED_OK = {
    "rtl": "\u202eabc שלום مرحبا",
    "combining": "e" + "\u0301" * 40 + "\u0489",
}

# (method, OpenAPI path, concrete path, a valid body)
SEEDS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "POST",
        "/v1/conversations",
        "/v1/conversations",
        {"title": "t", "system_prompt": "be brief", "metadata": {"k": "v"}},
    ),
    (
        "POST",
        "/v1/conversations/{conversation_id}/messages",
        "/v1/conversations/{conv}/messages",
        {"content": "hello", "model": FAKE_MODEL},
    ),
    (
        "POST",
        "/v1/chat/completions",
        "/v1/chat/completions",
        {
            "model": FAKE_MODEL,
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
            "user": "u",
        },
    ),
    ("POST", "/v1/embeddings", "/v1/embeddings", {"model": "hash", "input": ["a", "b"]}),
    ("POST", "/v1/route", "/v1/route", {"prompt": "what is 2+2?"}),
    (
        "POST",
        "/v1/prompts",
        "/v1/prompts",
        {
            "name": "greet",
            "role": "user",
            "body": "Hi {{ who }}",
            "description": "d",
            "variables": [{"name": "who", "default": "you", "description": "d"}],
            "metadata": {"k": "v"},
        },
    ),
    (
        "POST",
        "/v1/prompts/render",
        "/v1/prompts/render",
        {"prompts": [{"name": "greet", "variables": {"who": "x"}}]},
    ),
    ("POST", "/v1/prompts/{ref}/render", "/v1/prompts/greet/render", {"variables": {"who": "x"}}),
    ("PUT", "/v1/prompts/{name}/labels/{label}", "/v1/prompts/greet/labels/prod", {"version": 1}),
    (
        "POST",
        "/v1/memory/collections",
        "/v1/memory/collections",
        {"name": "kb2", "description": "d", "metadata": {"k": "v"}},
    ),
    (
        "POST",
        "/v1/memory/collections/{name}/documents",
        "/v1/memory/collections/kb/documents",
        {
            "documents": [
                {"id": "d1", "text": "cells divide", "source": "s.md", "metadata": {"k": "v"}}
            ]
        },
    ),
    (
        "POST",
        "/v1/memory/collections/{name}/search",
        "/v1/memory/collections/kb/search",
        {"query": "cells", "filter": {"k": "v"}},
    ),
    (
        "POST",
        "/v1/memory/collections/{name}/retrieve",
        "/v1/memory/collections/kb/retrieve",
        {"query": "cells", "model": FAKE_MODEL},
    ),
    (
        "POST",
        "/v1/memory/conversations/search",
        "/v1/memory/conversations/search",
        {"query": "hello"},
    ),
    (
        "PUT",
        "/v1/admin/faults/{point}",
        "/v1/admin/faults/vector_store",
        {"latency_ms": 1, "ttl_s": 1, "experiment": "e"},
    ),
    ("POST", "/v1/feedback", "/v1/feedback", {"id": "out_nope", "comment": "c"}),
    ("POST", "/v1/capsules", "/v1/capsules", {"id": "cap", "archive_base64": "AAAA"}),
    (
        "POST",
        "/v1/capsules/{ref}/execute",
        "/v1/capsules/no-such-capsule/execute",
        {"tool": "t", "arguments": {"a": "b"}},
    ),
    (
        "POST",
        "/v1/workflows/{type}/runs",
        "/v1/workflows/no-such-type/runs",
        {"input": {"text": "x"}, "id": "run-1"},
    ),
    (
        "POST",
        "/v1/workflow-runs/{run_id}/fork",
        "/v1/workflow-runs/no-such-run/fork",
        {"from_step": 1},
    ),
]

READS = [
    "/v1/conversations",
    "/v1/memory/collections",
    "/v1/memory/collections/kb",
    "/v1/memory/collections/kb/documents",
    "/v1/prompts",
    "/v1/prompts/greet",
]


def string_paths(node: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every string in a JSON value: leaves, and the keys of objects."""
    if isinstance(node, str):
        yield here
    elif isinstance(node, dict):
        for key, value in node.items():
            yield (*here, ("key", key))
            yield from string_paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from string_paths(value, (*here, index))


MARK = "\x00MARK\x00"


def mutated(body: dict[str, Any], path: tuple[Any, ...], escaped: str) -> bytes:
    """``body`` as JSON text with the string at ``path`` replaced by the raw ``escaped`` text."""
    copied = copy.deepcopy(body)
    *parents, last = path
    node: Any = copied
    for part in parents:
        node = node[part]
    if isinstance(last, tuple):
        node[MARK] = node.pop(last[1])
    else:
        node[last] = MARK
    return json.dumps(copied).replace(json.dumps(MARK)[1:-1], escaped).encode()


def test_every_json_operation_has_a_seed(gateway_openapi: dict[str, Any]) -> None:
    seeded = {(method, path) for method, path, _, _ in SEEDS}
    for path, operations in gateway_openapi["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                assert (method.upper(), path) in seeded, f"no sweep seed for {method} {path}"


@pytest.fixture
def gateway_openapi() -> dict[str, Any]:
    from somaagent.gateway.app import create_app
    from somaagent.gateway.settings import Settings

    openapi: dict[str, Any] = create_app(Settings(bootstrap_admin_key=False)).openapi()
    return openapi


@pytest.fixture
async def memory(gateway: Gateway) -> AsyncIterator[MemoryService]:
    async with swapped_memory(gateway, chunk_size=200) as service:
        yield service


async def _readable(client: httpx.AsyncClient, conv: str) -> None:
    for path in [*READS, f"/v1/conversations/{conv}", f"/v1/conversations/{conv}/messages"]:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        response.json()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_unicode_and_size_sweep(gateway: Gateway, memory: MemoryService) -> None:
    client = gateway.client
    conv = (await client.post("/v1/conversations", json={})).json()["id"]
    kb = await client.post("/v1/memory/collections", json={"name": "kb"})
    assert kb.status_code == 201
    prompt = await client.post("/v1/prompts", json=SEEDS[5][3])
    assert prompt.status_code in (200, 201), prompt.text

    failures: list[str] = []
    for method, _, path, body in SEEDS:
        url = path.replace("{conv}", conv)
        for where in string_paths(body):
            for name, escaped in NASTY.items():
                payload = mutated(body, where, escaped)
                response = await client.request(
                    method, url, content=payload, headers={"content-type": "application/json"}
                )
                label = f"{method} {url} {where} {name}: {response.status_code}"
                if response.status_code >= 500:
                    failures.append(f"{label} {response.text[:200]}")
                elif name in ("lone_surrogate", "lone_low_surrogate", "nul"):
                    if response.status_code < 400:
                        failures.append(f"{label}: unstorable text was accepted")
                    elif response.status_code == 422 and "value_error.unicode" in response.text:
                        loc = response.json()["errors"][0]["loc"]
                        if loc[0] != "body":
                            failures.append(f"{label}: loc {loc}")
        await _readable(client, conv)
    assert failures == [], "\n".join(failures[:30])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_accepted_text_round_trips(gateway: Gateway) -> None:
    client = gateway.client
    for name, text in DECODED_OK.items():
        made = await client.post(
            "/v1/conversations",
            json={"title": name, "metadata": {name: text}, "system_prompt": text},
        )
        assert made.status_code == 201, made.text
        got = (await client.get(f"/v1/conversations/{made.json()['id']}")).json()
        assert got["metadata"][name] == text and got["system_prompt"] == text
        sent = await client.post(
            f"/v1/conversations/{made.json()['id']}/messages", json={"content": text}
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["reply"]["content"] == f"Echo: {text}"
