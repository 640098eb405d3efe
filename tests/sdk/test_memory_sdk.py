"""``client.memory`` and ``client.embeddings`` (both twins) against the real gateway on
loopback: create a collection, index a folder of Markdown, search and retrieve with sources."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from somaagent import AsyncClient, Client
from somaagent.errors import ConflictError, NotFoundError, ValidationError
from somaagent.sdk._memory import AsyncEmbeddings, AsyncMemory, Embeddings, Memory
from somaagent.sdk._memory_calls import Progress, read_documents
from tests.fakes.fixtures import FakeVendor
from tests.memory.served import Running, serve_gateway

HANDBOOK = {
    "refunds.md": "# Refunds\n\nRefunds take five business days.\n\n## Exceptions\n\n"
    "Gift cards are never refunded.",
    "shipping/international.md": "# International shipping\n\nParcels abroad take two weeks.",
    "notes.txt": "Plain notes: the office closes at six.",
    ".hidden/secret.md": "# Secret\n\nnot indexed",
    "image.png": "not a document suffix",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Running]:
    with serve_gateway(tmp_path_factory.mktemp("gateway"), fake_openai) as running:
        yield running


@pytest.fixture
def client(served: Running) -> Iterator[Client]:
    with Client(api_key=served.admin_key, base_url=served.base_url, max_retries=0) as client:
        yield client


@pytest.fixture
async def async_client(served: Running) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        api_key=served.admin_key, base_url=served.base_url, max_retries=0
    ) as client:
        yield client


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    root = tmp_path / "handbook"
    for name, text in HANDBOOK.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def memory_of(client: Client) -> Memory:
    """``client.memory``, or the resource built by hand until the client carries it."""
    resource = getattr(client, "memory", None)
    return resource if isinstance(resource, Memory) else Memory(client)


def async_memory_of(client: AsyncClient) -> AsyncMemory:
    resource = getattr(client, "memory", None)
    return resource if isinstance(resource, AsyncMemory) else AsyncMemory(client)


def test_read_documents(handbook: Path, tmp_path: Path) -> None:
    docs = read_documents(handbook, metadata={"team": "support"})
    assert [(d.id, d.format) for d in docs] == [
        ("notes.txt", "text"),
        ("refunds.md", "markdown"),
        ("shipping/international.md", "markdown"),
    ]
    assert all(d.source == d.id and d.metadata == {"team": "support"} for d in docs)
    assert [d.id for d in read_documents(handbook / "refunds.md")] == ["refunds.md"]
    (tmp_path / "bin.md").write_bytes(b"\x89PNG\x00\x01")
    with pytest.raises(ValueError, match="binary"):
        read_documents(tmp_path / "bin.md")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no documents"):
        read_documents(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        read_documents(tmp_path / "missing")


def test_collection_folder_search_and_retrieve(client: Client, handbook: Path) -> None:
    memory = memory_of(client)
    created = memory.create("handbook", description="Support handbook")
    assert created.name == "handbook" and created.document_count == 0
    with pytest.raises(ConflictError):
        memory.create("handbook")

    progress: list[Progress] = []
    result = memory.index_path("handbook", handbook, batch_size=2, on_progress=progress.append)
    assert [d.id for d in result.indexed] == [
        "notes.txt",
        "refunds.md",
        "shipping/international.md",
    ]
    assert [p.documents_done for p in progress] == [2, 3]
    again = memory.index_path("handbook", handbook)
    assert again.indexed == [] and len(again.unchanged) == 3
    assert memory.get("handbook").document_count == 3

    hits = memory.search("handbook", "are gift cards refunded", k=3).data
    assert hits[0].document_id == "refunds.md"
    assert hits[0].headings == ["Refunds", "Exceptions"] and hits[0].source == "refunds.md"
    abroad = memory.search("handbook", "parcels", filter={"document_id": {"ne": "refunds.md"}})
    assert all(h.document_id != "refunds.md" for h in abroad.data)
    context = memory.retrieve("handbook", "how long do refunds take", k=2)
    assert context.sources[0].source == "refunds.md"
    assert "[1] refunds.md" in context.context and context.token_count > 0

    page = memory.documents("handbook", limit=2)
    assert [d.id for d in page.data] == ["notes.txt", "refunds.md"] and page.has_more
    memory.delete_document("handbook", "shipping/international.md")
    assert memory.get("handbook").document_count == 2
    with pytest.raises(ValidationError, match="invalid filter"):
        memory.search("handbook", "x", filter={"a": {"between": [1, 2]}})
    memory.delete("handbook")
    with pytest.raises(NotFoundError):
        memory.get("handbook")


def test_index_plain_strings_and_dicts(client: Client) -> None:
    memory = memory_of(client)
    memory.create("notes")
    result = memory.index(
        "notes",
        [
            "The cafeteria opens at eight.",
            {"id": "n2", "text": "Parking is free.", "metadata": {"k": 1}},
        ],
    )
    assert len(result.indexed) == 2 and result.indexed[1].id == "n2"
    assert memory.search("notes", "parking", filter={"k": 1}).data[0].document_id == "n2"
    with pytest.raises(ValidationError, match="is empty") as caught:
        memory.index("notes", ["   "])
    assert caught.value.status_code == 422
    listed = [c.name for c in memory.list().data]
    assert "notes" in listed
    memory.delete("notes")


def test_embeddings_create(client: Client) -> None:
    embeddings = Embeddings(client)
    result = embeddings.create(["a cat", "a dog"])
    assert [d.index for d in result.data] == [0, 1]
    first = result.data[0].embedding
    assert isinstance(first, list) and len(first) == 256
    assert sum(x * x for x in first) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValidationError, match="dimensions"):
        embeddings.create("x", dimensions=8)


@pytest.mark.anyio
async def test_async_twin(async_client: AsyncClient, handbook: Path) -> None:
    memory = async_memory_of(async_client)
    await memory.create("async-handbook")
    result = await memory.index_path("async-handbook", handbook / "refunds.md")
    assert [d.id for d in result.indexed] == ["refunds.md"]
    hits = await memory.search("async-handbook", "gift cards", mode="keyword")
    assert hits.data[0].document_id == "refunds.md"
    context = await memory.retrieve("async-handbook", "refunds", token_budget=32)
    assert context.token_count <= 32
    vectors = await AsyncEmbeddings(async_client).create("hello")
    assert len(vectors.data) == 1
    assert await memory.search_conversations("anything") == []
    await memory.delete("async-handbook")


TWINS: list[tuple[type[Any], type[Any]]] = [(Memory, AsyncMemory), (Embeddings, AsyncEmbeddings)]


@pytest.mark.parametrize(("sync", "async_"), TWINS, ids=lambda c: c.__name__)
def test_twins_match(sync: type[Any], async_: type[Any]) -> None:
    names = {n for n in dir(sync) if not n.startswith("_")}
    assert names == {n for n in dir(async_) if not n.startswith("_")}
    for name in names:
        sync_params = inspect.signature(getattr(sync, name)).parameters
        async_params = inspect.signature(getattr(async_, name)).parameters
        assert list(sync_params) == list(async_params), name
        assert inspect.iscoroutinefunction(getattr(async_, name)), name
