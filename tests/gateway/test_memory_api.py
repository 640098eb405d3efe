"""``/v1/memory`` and ``/v1/embeddings`` through the real app, on SQLite and PostgreSQL.

The memory service here embeds with the fast hashing test embedder over an exact in-memory
store (wrapped so a test can take it down); the default Chroma + MiniLM set-up is exercised by
part A's tests and the benchmarks.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from somaagent.chat.grounding import ground
from somaagent.errors import NotFoundError
from somaagent.memory.service import MemoryService
from somaagent.prompts.service import PromptService
from somaagent.types import Message
from tests.gateway.conftest import Gateway, swapped_memory
from tests.memory.rag_fakes import ExactStore, FaultyStore

pytestmark = pytest.mark.anyio

DOCS = [
    {
        "id": "cells.md",
        "text": "# Cells\n\nCells divide by mitosis. Dividing cells copy their DNA first.",
        "source": "bio/cells.md",
        "metadata": {"topic": "bio", "year": 2021},
    },
    {
        "text": "# Stars\n\nStars fuse hydrogen into helium in their cores.",
        "source": "space/stars.md",
        "metadata": {"topic": "space", "year": 2019},
    },
]


@pytest.fixture
async def memory(gateway: Gateway) -> AsyncIterator[MemoryService]:
    """The app's memory service, on the test embedder and a store that can fail on demand."""
    async with swapped_memory(gateway, store=FaultyStore(ExactStore())) as service:
        yield service


@pytest.fixture
def client(gateway: Gateway, memory: MemoryService) -> httpx.AsyncClient:
    return gateway.client


def store_of(memory: MemoryService) -> FaultyStore:
    store = memory.pipeline.store
    assert isinstance(store, FaultyStore)
    return store


async def make(client: httpx.AsyncClient, name: str = "kb", **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/memory/collections", json={"name": name, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def index(
    client: httpx.AsyncClient, docs: list[dict[str, Any]], **extra: Any
) -> httpx.Response:
    return await client.post(
        "/v1/memory/collections/kb/documents", json={"documents": docs, **extra}
    )


async def test_collections_lifecycle(client: httpx.AsyncClient) -> None:
    created = await make(client, description="Knowledge base", metadata={"team": "a"})
    assert created["name"] == "kb" and created["dimension"] == 256
    assert (created["document_count"], created["chunk_count"]) == (0, 0)
    again = await client.post("/v1/memory/collections", json={"name": "kb"})
    assert again.status_code == 409
    await make(client, "other")
    page = (await client.get("/v1/memory/collections", params={"limit": 1})).json()
    assert [c["name"] for c in page["data"]] == ["kb"] and page["has_more"]
    rest = await client.get("/v1/memory/collections", params={"cursor": page["next_cursor"]})
    assert [c["name"] for c in rest.json()["data"]] == ["other"]
    assert (await client.delete("/v1/memory/collections/other")).status_code == 204
    assert (await client.get("/v1/memory/collections/other")).status_code == 404
    bad = await client.post("/v1/memory/collections", json={"name": "../x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "name"]


async def test_index_reindex_list_and_delete_documents(client: httpx.AsyncClient) -> None:
    await make(client)
    first = await index(client, DOCS)
    assert first.status_code == 201, first.text
    body = first.json()
    assert [d["id"] for d in body["indexed"]] == ["cells.md", "space/stars.md"]
    assert body["chunk_count"] == sum(d["chunk_count"] for d in body["indexed"]) > 0
    stats = (await client.get("/v1/memory/collections/kb")).json()
    assert (stats["document_count"], stats["chunk_count"]) == (2, body["chunk_count"])

    unchanged = await index(client, DOCS)
    assert unchanged.status_code == 200
    assert [d["id"] for d in unchanged.json()["unchanged"]] == ["cells.md", "space/stars.md"]
    forced = await index(client, DOCS, force=True)
    assert forced.status_code == 201 and len(forced.json()["indexed"]) == 2

    changed = {**DOCS[0], "text": "# Cells\n\nCells use ribosomes to build proteins."}
    replaced = await index(client, [changed])
    assert [d["id"] for d in replaced.json()["indexed"]] == ["cells.md"]
    hits = await search(client, "mitosis")
    assert all("mitosis" not in h["text"] for h in hits)
    listed = (await client.get("/v1/memory/collections/kb/documents")).json()
    assert [(d["id"], d["source"]) for d in listed["data"]] == [
        ("cells.md", "bio/cells.md"),
        ("space/stars.md", "space/stars.md"),
    ]
    gone = await client.delete("/v1/memory/collections/kb/documents/space/stars.md")
    assert gone.status_code == 204
    hits = await search(client, "hydrogen helium")
    assert hits and all(h["document_id"] == "cells.md" for h in hits)
    missing = await client.delete("/v1/memory/collections/kb/documents/space/stars.md")
    assert missing.status_code == 404


async def search(client: httpx.AsyncClient, query: str, **extra: Any) -> list[dict[str, Any]]:
    response = await client.post("/v1/memory/collections/kb/search", json={"query": query, **extra})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_search_and_retrieve_with_filters_and_sources(client: httpx.AsyncClient) -> None:
    await make(client)
    await index(client, DOCS)
    hits = await search(client, "how do cells divide")
    top = hits[0]
    assert (top["document_id"], top["source"], top["headings"]) == (
        "cells.md",
        "bio/cells.md",
        ["Cells"],
    )
    assert top["metadata"] == {"topic": "bio", "year": 2021} and 0 < top["score"] <= 1
    only_space = await search(client, "cells stars", filter={"topic": {"eq": "space"}})
    assert {h["document_id"] for h in only_space} == {"space/stars.md"}
    recent = await search(client, "cells stars", filter={"year": {"gte": 2020}}, mode="keyword")
    assert {h["document_id"] for h in recent} == {"cells.md"}
    weighted = await search(client, "hydrogen", fusion="weighted", alpha=0.2)
    assert weighted[0]["document_id"] == "space/stars.md"

    bad = await client.post(
        "/v1/memory/collections/kb/search", json={"query": "x", "filter": {"year": {"gtx": 1}}}
    )
    assert bad.status_code == 422 and "unknown operator" in bad.json()["detail"]
    assert bad.json()["errors"][0]["loc"] == ["filter", "year", "gtx"]
    unknown = await client.post("/v1/memory/collections/nope/search", json={"query": "x"})
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"]

    context = await client.post(
        "/v1/memory/collections/kb/retrieve", json={"query": "stars hydrogen", "k": 2}
    )
    assert context.status_code == 200, context.text
    body = context.json()
    assert body["collection"] == "kb" and body["chunks"][0]["document_id"] == "space/stars.md"
    assert body["sources"][0] == {
        "number": 1,
        "document_id": "space/stars.md",
        "source": "space/stars.md",
    }
    assert body["context"].startswith("[1] space/stars.md › Stars")
    assert 0 < body["token_count"] <= 4000 and body["truncated"] is False
    tight = await client.post(
        "/v1/memory/collections/kb/retrieve",
        json={"query": "stars hydrogen", "k": 2, "token_budget": 20, "model": "gpt-4o-mini"},
    )
    assert tight.json()["truncated"] and tight.json()["token_count"] <= 20
    unknown_model = await client.post(
        "/v1/memory/collections/kb/retrieve", json={"query": "x", "model": "no-such-model"}
    )
    assert unknown_model.status_code == 422


async def test_uploads_text_and_markdown_files(client: httpx.AsyncClient) -> None:
    await make(client)
    files = [
        ("files", ("guide/intro.md", b"# Intro\n\nSomaAgent grounds answers.", "text/markdown")),
        ("files", ("notes.txt", b"# plain text, not a heading", "text/plain")),
    ]
    response = await client.post(
        "/v1/memory/collections/kb/documents",
        files=files,
        data={"metadata": '{"team": "docs"}'},
    )
    assert response.status_code == 201, response.text
    assert [d["id"] for d in response.json()["indexed"]] == ["guide/intro.md", "notes.txt"]
    hits = await search(client, "grounds answers")
    assert hits[0]["headings"] == ["Intro"] and hits[0]["metadata"] == {"team": "docs"}
    plain = await search(client, "plain heading", filter={"document_id": "notes.txt"})
    assert plain[0]["headings"] == []

    binary = await client.post(
        "/v1/memory/collections/kb/documents",
        files=[("files", ("logo.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"))],
    )
    assert binary.status_code == 422 and "'logo.png' is binary" in binary.json()["detail"]
    empty = await client.post(
        "/v1/memory/collections/kb/documents", files=[("files", ("e.md", b"  \n", "text/plain"))]
    )
    assert empty.status_code == 422 and "is empty" in empty.json()["detail"]
    no_files = await client.post(
        "/v1/memory/collections/kb/documents", files={"other": ("x", b"y")}
    )
    assert no_files.status_code == 422


async def test_oversized_and_invalid_documents(
    client: httpx.AsyncClient, memory: MemoryService
) -> None:
    await make(client)
    memory.max_document_chars = 100
    big = await client.post(
        "/v1/memory/collections/kb/documents",
        files=[("files", ("big.md", b"x " * 300, "text/markdown"))],
    )
    assert big.status_code == 413 and "'big.md'" in big.json()["detail"]
    too_long = await index(client, [{"id": "long", "text": "word " * 100}])
    assert too_long.status_code == 413
    reserved = await index(client, [{"text": "hi", "metadata": {"chunk_index": 1}}])
    assert reserved.status_code == 422 and "set by the index" in reserved.json()["detail"]
    assert (await index(client, [])).status_code == 422
    typo = await index(client, [{"txt": "hi"}])
    assert typo.status_code == 422
    not_json = await client.post(
        "/v1/memory/collections/kb/documents",
        content=b"{oops",
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert (await client.get("/v1/memory/collections/kb")).json()["document_count"] == 0


async def test_a_backend_down_is_a_typed_503_naming_the_documents(
    client: httpx.AsyncClient, memory: MemoryService
) -> None:
    await make(client)
    await index(client, DOCS[:1])
    store_of(memory).failing = {"upsert"}
    failed = await index(client, [DOCS[1]])
    assert failed.status_code == 503, failed.text
    problem = failed.json()
    assert problem["type"] == "urn:somaagent:problem:vector-store-unavailable"
    assert "space/stars.md" in problem["detail"] and "stored: none" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["documents", "space/stars.md"]
    assert problem["errors"][0]["state"] == "removed"
    listed = (await client.get("/v1/memory/collections/kb/documents")).json()
    assert [d["id"] for d in listed["data"]] == ["cells.md"]  # the registry says the truth
    store_of(memory).failing = {"search"}
    down = await client.post("/v1/memory/collections/kb/search", json={"query": "cells"})
    assert down.status_code == 503
    keyword = await search(client, "cells", mode="keyword")
    assert keyword[0]["document_id"] == "cells.md"


async def test_a_poisoned_document_is_named_and_the_rest_are_stored(
    client: httpx.AsyncClient,
) -> None:
    await make(client)
    response = await index(client, [*DOCS, {"id": "bad.md", "text": "POISON pill"}])
    assert response.status_code == 502, response.text
    assert "bad.md" in response.json()["detail"]
    assert "stored: cells.md, space/stars.md" in response.json()["detail"]
    listed = (await client.get("/v1/memory/collections/kb/documents")).json()
    assert [d["id"] for d in listed["data"]] == ["cells.md", "space/stars.md"]


async def test_tenants_never_see_each_others_collections(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await make(client)
    await index(client, DOCS)
    other = await gateway.client_for(await gateway.new_key(tenant="globex"))
    assert (await other.get("/v1/memory/collections/kb")).status_code == 404
    assert (
        await other.post("/v1/memory/collections/kb/search", json={"query": "cells"})
    ).status_code == 404
    assert (await other.get("/v1/memory/collections")).json()["data"] == []
    own = await other.post("/v1/memory/collections", json={"name": "kb"})
    assert own.status_code == 201  # the same name, its own collection
    assert (await other.post("/v1/memory/collections/kb/search", json={"query": "cells"})).json()[
        "data"
    ] == []
    assert (await client.get("/v1/memory/collections/kb")).json()["document_count"] == 2


async def test_embeddings_in_openai_format(client: httpx.AsyncClient) -> None:
    single = await client.post(
        "/v1/embeddings", json={"input": "hello world", "model": "all-MiniLM-L6-v2"}
    )
    assert single.status_code == 200, single.text
    body = single.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    vector = np.array(body["data"][0]["embedding"], dtype=np.float32)
    assert body["data"][0]["index"] == 0 and vector.shape == (256,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    batch = await client.post(
        "/v1/embeddings",
        json={"input": ["hello world", "bye"], "model": "local", "encoding_format": "base64"},
    )
    decoded = np.frombuffer(base64.b64decode(batch.json()["data"][0]["embedding"]), "<f4")
    assert np.allclose(decoded, vector) and len(batch.json()["data"]) == 2

    for bad, field in (
        ({"input": "x", "model": "local", "dimensions": 64}, "dimensions"),
        ({"input": "x", "model": "no-such-model"}, "model"),
        ({"input": [[1, 2, 3]], "model": "local"}, "input"),
        ({"input": "", "model": "local"}, "input"),
        ({"input": [], "model": "local"}, "input"),
        ({"input": "x", "model": "local", "encoding_format": "int8"}, "encoding_format"),
    ):
        response = await client.post("/v1/embeddings", json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["errors"][0]["loc"][:2] == ["body", field]


async def test_the_openai_sdk_embeds_through_the_gateway(
    gateway: Gateway, memory: MemoryService
) -> None:
    openai = pytest.importorskip("openai")
    async with openai.AsyncOpenAI(
        api_key=gateway.admin_key,
        base_url="http://gateway/v1",
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app)),
    ) as sdk:
        result = await sdk.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat", "a dog"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 256  # the SDK asks for base64 and decodes it


async def test_conversation_memory_and_grounding(
    client: httpx.AsyncClient, gateway: Gateway, memory: MemoryService
) -> None:
    conversation = (await client.post("/v1/conversations", json={})).json()
    now = conversation["created_at"]
    for number, text in enumerate(["Our VPN keeps dropping.", "Try resetting the VPN token."]):
        message = Message(
            id=f"msg_{number}",
            conversation_id=conversation["id"],
            role="user" if number == 0 else "assistant",
            content=text,
            created_at=now,
        )
        memory.message_stored("default", message)
    await memory.drain()
    found = await client.post("/v1/memory/conversations/search", json={"query": "vpn token"})
    assert found.status_code == 200
    assert found.json()[0]["message_id"] == "msg_1"
    other = await gateway.client_for(await gateway.new_key(tenant="globex"))
    assert (await other.post("/v1/memory/conversations/search", json={"query": "vpn"})).json() == []

    await make(client)
    await index(client, DOCS)
    grounding = await ground(memory, "default", "kb", "What do stars fuse?")
    assert grounding.sources[0].source == "space/stars.md"
    assert "What do stars fuse?" in grounding.prompt and "[1] space/stars.md" in grounding.prompt
    # Through the tenant's prompt service, counting tokens as the chat model does.
    spec = gateway.state.pool.registry.get("gpt-4o-mini")
    prompts = PromptService(gateway.state.sessions)
    tenant_version = await ground(
        memory, "default", "kb", "stars?", spec=spec, token_budget=50, prompts=prompts
    )
    assert "Question: stars?" in tenant_version.prompt
    assert tenant_version.context.token_budget == 50
    with pytest.raises(NotFoundError):
        await ground(memory, "default", "no-such-collection", "x")
    long = await ground(memory, "default", "kb", "stars " * 5000, token_budget=0)
    assert long.context.token_budget == 16 and long.prompt.endswith("stars")


async def test_a_conversation_message_grounded_in_a_collection_cites_its_sources(
    gateway: Gateway, client: httpx.AsyncClient, memory: MemoryService, fake_openai: Any
) -> None:
    await make(client)
    await index(client, DOCS)
    conversation = (await client.post("/v1/conversations", json={})).json()
    url = f"/v1/conversations/{conversation['id']}/messages"
    fake_openai.clear()
    r = await client.post(url, json={"content": "What do stars fuse?", "collection": "kb"})
    assert r.status_code == 201, r.text
    reply = r.json()["reply"]
    assert reply["sources"][0]["source"] == "space/stars.md"
    sent = fake_openai.requests.snapshot()[-1].json["messages"][-1]["content"]
    assert "[1] space/stars.md" in sent and "What do stars fuse?" in sent
    stored = (await client.get(url)).json()["data"]
    assert stored[0]["content"] == "What do stars fuse?"  # stored as the user wrote it
    assert stored[1]["sources"] == reply["sources"]
    missing = await client.post(url, json={"content": "x", "collection": "nope"})
    assert missing.status_code == 404
    await memory.drain()
    found = await client.post("/v1/memory/conversations/search", json={"query": "stars fuse"})
    assert conversation["id"] in {hit["conversation_id"] for hit in found.json()}
