"""Upload retention and document ids on the real gateway (SQLite and PostgreSQL): ``GET`` and
``DELETE /v1/workflows/document_ingest/uploads/{id}`` (tenant-scoped: another tenant's is a
404; a 409 naming the run while a queued or running run names the upload), the time to live
(new runs refuse an expired upload; the sweep removes it a grace period later, never while a
live run needs it; at engine start too), and document ids unique per uploaded file (two files
of the same name are two documents; running the same ingest again embeds nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from somaagent.db import make_engine, make_sessionmaker, migrate, utcnow
from somaagent.db.base import Tenant
from somaagent.memory.embeddings.base import InputType, Vectors
from somaagent.workflows.retention import GRACE, UploadRetention
from tests.gateway.conftest import Gateway
from tests.memory.rag_fakes import HashEmbedder
from tests.workflows.conftest import wait_finished

pytestmark = pytest.mark.anyio
UPLOADS = "/v1/workflows/document_ingest/uploads"
RUNS = "/v1/workflows/document_ingest/runs"


class GatedEmbedder(HashEmbedder):
    """Embeds only while its gate is open (a run waits in its batch step meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> Vectors:
        await self.gate.wait()
        return await super().embed(texts, input_type=input_type)


@pytest.fixture
def embedder() -> HashEmbedder:
    return GatedEmbedder()


async def upload(client: httpx.AsyncClient, *files: tuple[str, bytes], key: str = "") -> str:
    headers = {"Idempotency-Key": key} if key else {}
    parts = [("files", (name, data, "text/plain")) for name, data in files]
    response = await client.post(UPLOADS, files=parts, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def retention(gateway: Gateway) -> UploadRetention:
    engine = gateway.state.workflows
    assert engine is not None and engine.upload_retention is not None
    return engine.upload_retention


async def test_two_files_of_one_name_are_two_documents_and_a_rerun_embeds_nothing(
    client: httpx.AsyncClient, embedder: HashEmbedder
) -> None:
    first = await upload(client, ("notes.md", b"The first note."), ("x/notes.md", b"The second."))
    second = await upload(client, ("notes.md", b"The third note, uploaded later."))
    body = {"input": {"collection": "kb", "uploads": [first, second], "batch_size": 2}}
    done = await wait_finished(client, (await client.post(RUNS, json=body)).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["output"]["documents"] == 3 and done["output"]["indexed"] == 3
    listed = (await client.get("/v1/memory/collections/kb/documents")).json()["data"]
    assert {d["id"] for d in listed} == {
        f"{first}/0/notes.md",
        f"{first}/1/notes.md",
        f"{second}/0/notes.md",
    }
    assert {d["source"] for d in listed} == {"notes.md"}
    calls = embedder.calls
    again = await wait_finished(client, (await client.post(RUNS, json=body)).json()["id"])
    assert again["status"] == "succeeded"
    assert again["output"]["indexed"] == 0 and again["output"]["unchanged"] == 3
    assert embedder.calls == calls  # nothing embedded twice
    assert len((await client.get("/v1/memory/collections/kb/documents")).json()["data"]) == 3


async def test_delete_is_tenant_scoped_and_waits_for_the_runs_that_need_the_upload(
    gateway: Gateway, embedder: GatedEmbedder
) -> None:
    client = gateway.client
    other = await gateway.client_for(await gateway.new_key(tenant="acme"))
    up = await upload(client, ("a.md", b"The alpha fact."))
    shown = (await client.get(f"{UPLOADS}/{up}")).json()
    assert shown["id"] == up and [f["name"] for f in shown["files"]] == ["a.md"]
    assert shown["expires_at"] is not None  # the default time to live: 168 hours
    assert (await other.get(f"{UPLOADS}/{up}")).status_code == 404
    assert (await other.delete(f"{UPLOADS}/{up}")).status_code == 404

    embedder.gate.clear()  # the run waits in its batch step: queued or running, it is live
    run = (await client.post(RUNS, json={"input": {"collection": "kb", "uploads": [up]}})).json()
    refused = await client.delete(f"{UPLOADS}/{up}")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert run["id"] in refused.json()["detail"]
    later = utcnow() + timedelta(hours=169) + GRACE
    assert await retention(gateway).sweep(now=later) == []  # expired, but still needed
    embedder.gate.set()
    assert (await wait_finished(client, run["id"]))["status"] == "succeeded"

    assert await retention(gateway).sweep(now=later) == [("default", up)]
    assert (await client.get(f"{UPLOADS}/{up}")).status_code == 404
    assert (await client.delete(f"{UPLOADS}/{up}")).status_code == 404
    gone = await client.post(RUNS, json={"input": {"collection": "kb", "uploads": [up]}})
    assert gone.status_code == 422 and gone.json()["errors"][0]["type"] == "not_found"

    theirs = await upload(other, ("b.md", b"theirs"))
    mine = await upload(client, ("c.md", b"mine"))
    assert (await client.delete(f"{UPLOADS}/{mine}")).status_code == 204
    assert (await client.get(f"{UPLOADS}/{mine}")).status_code == 404
    assert (await other.get(f"{UPLOADS}/{theirs}")).status_code == 200  # untouched
    bad = await client.delete(f"{UPLOADS}/nope")
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["path", "upload_id"]


@pytest.mark.parametrize("settings_overrides", [{"workflow_upload_ttl_hours": 0.0002}])
async def test_an_expired_upload_is_refused_then_swept_after_the_grace_period(
    gateway: Gateway,
) -> None:
    client = gateway.client
    up = await upload(client, ("a.md", b"soon gone"), key="k-1")
    await asyncio.sleep(0.8)  # the time to live is 0.72 s
    refused = await client.post(RUNS, json={"input": {"collection": "kb", "uploads": [up]}})
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["errors"]
    assert error["loc"] == ["body", "input", "uploads", 0] and error["type"] == "expired"
    assert "SOMA_WORKFLOW_UPLOAD_TTL_HOURS" in error["msg"]
    retry = await client.post(
        UPLOADS, files=[("files", ("a.md", b"soon gone"))], headers={"Idempotency-Key": "k-1"}
    )
    assert retry.status_code == 409 and "new key" in retry.json()["detail"]

    sweeper = retention(gateway)
    assert await sweeper.sweep() == []  # within the grace period: still there
    assert await sweeper.sweep(now=utcnow() + GRACE) == [("default", up)]
    assert (await client.get(f"{UPLOADS}/{up}")).status_code == 404
    assert await sweeper.store.count("default") == 0


async def test_the_engine_sweeps_expired_uploads_when_it_starts(tmp_path: Path) -> None:
    from somaagent.workflows.ports import UPLOADS as UPLOAD_STORE
    from somaagent.workflows.service import open_engine
    from somaagent.workflows.tables import WorkflowUploadFile
    from somaagent.workflows.uploads import UploadStore

    url = f"sqlite+aiosqlite:///{tmp_path / 'soma.db'}"
    database = make_engine(url)
    await migrate(database)
    sessions = make_sessionmaker(database)
    old = utcnow() - timedelta(hours=2) - GRACE
    async with sessions.begin() as session:
        session.add(Tenant(id="t"))
    async with sessions.begin() as session:
        for upload_id, created in (("up_" + "1" * 20, old), ("up_" + "2" * 20, utcnow())):
            session.add(
                WorkflowUploadFile(
                    tenant_id="t",
                    upload_id=upload_id,
                    position=0,
                    name="a.md",
                    size=1,
                    sha256="0" * 64,
                    content=b"a",
                    created_at=created,
                )
            )
    store = UploadStore(sessions, ttl_hours=1)
    engine = await open_engine(url, tmp_path / "data", services={UPLOAD_STORE: store})
    assert engine is not None
    try:
        for _ in range(200):
            if await store.count("t") == 1:
                break
            await asyncio.sleep(0.02)
        assert await store.get("t", "up_" + "1" * 20) is None
        assert await store.get("t", "up_" + "2" * 20) is not None
    finally:
        await engine.aclose()
        await database.dispose()
