"""``document_ingest`` over uploaded files: ``POST /v1/workflows/document_ingest/uploads``
stores them in the database before answering, ``input.uploads`` names them; the run lists
them in a checkpointed step and reads them batch by batch. Another tenant's or an unknown
upload id is a 422 naming ``input.uploads.N`` and starts nothing. Real gateway, SQLite and
PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import Gateway
from tests.workflows.conftest import wait_finished

pytestmark = pytest.mark.anyio
UPLOADS = "/v1/workflows/document_ingest/uploads"
RUNS = "/v1/workflows/document_ingest/runs"


async def upload(
    client: httpx.AsyncClient, *files: tuple[str, bytes], key: str = ""
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    parts = [("files", (name, data, "text/plain")) for name, data in files]
    return await client.post(UPLOADS, files=parts, headers=headers)


async def test_uploaded_files_are_indexed_batch_by_batch(client: httpx.AsyncClient) -> None:
    first = await upload(
        client, ("dir/alpha.md", b"# Alpha\n\nThe alpha fact."), ("beta.txt", b"The beta fact.")
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["id"].startswith("up_") and body["bytes"] == 24 + 14
    assert [f["name"] for f in body["files"]] == ["alpha.md", "beta.txt"]  # folders dropped
    second = (await upload(client, ("gamma.md", b"The gamma fact."))).json()

    inline = {"id": "inline-0", "text": "An inline fact."}
    response = await client.post(
        RUNS,
        json={
            "input": {
                "collection": "kb",
                "uploads": [body["id"], second["id"]],
                "documents": [inline],
                "batch_size": 2,
            }
        },
    )
    assert response.status_code == 202, response.text
    done = await wait_finished(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["output"]["documents"] == 4 and done["output"]["indexed"] == 4
    steps = (await client.get(f"/v1/workflow-runs/{done['id']}/steps")).json()["data"]
    assert [s["name"] for s in steps] == ["prepare", "uploads", "batch-1/2", "batch-2/2"]
    assert steps[1]["output_summary"] == "3 files"
    listed = (await client.get("/v1/memory/collections/kb/documents")).json()["data"]
    # an uploaded file's document id is <upload id>/<position>/<name>; its source the name
    assert {d["id"] for d in listed} == {
        "inline-0",
        f"{body['id']}/0/alpha.md",
        f"{body['id']}/1/beta.txt",
        f"{second['id']}/0/gamma.md",
    }
    assert {d["source"] for d in listed} == {None, "alpha.md", "beta.txt", "gamma.md"}
    hits = await client.post("/v1/memory/collections/kb/search", json={"query": "gamma fact"})
    assert "gamma" in str(hits.json()["data"])


async def test_a_retried_upload_answers_the_stored_one(client: httpx.AsyncClient) -> None:
    one = await upload(client, ("a.md", b"text"), key="k-1")
    two = await upload(client, ("a.md", b"text"), key="k-1")
    assert one.status_code == two.status_code == 201
    assert one.json() == two.json()


async def test_another_tenants_or_unknown_upload_is_a_422_naming_it(gateway: Gateway) -> None:
    client = gateway.client
    own = (await upload(client, ("a.md", b"mine"))).json()["id"]
    other = await gateway.client_for(await gateway.new_key(tenant="acme"))
    theirs = (await upload(other, ("b.md", b"theirs"))).json()["id"]
    for ids, index in (([own, theirs], 1), (["up_" + "0" * 20], 0)):
        response = await client.post(RUNS, json={"input": {"collection": "kb", "uploads": ids}})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        (error,) = response.json()["errors"]
        assert error["loc"] == ["body", "input", "uploads", index]
        assert error["type"] == "not_found"
    bad_id = await client.post(RUNS, json={"input": {"collection": "kb", "uploads": ["x"]}})
    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["loc"] == ["body", "input", "uploads", 0]
    assert (await client.get("/v1/workflow-runs")).json()["data"] == []
    # the other tenant may use its own upload
    ok = await other.post(RUNS, json={"input": {"collection": "kb", "uploads": [theirs]}})
    assert ok.status_code == 202, ok.text


async def test_an_upload_of_nothing_or_of_binary_is_refused(client: httpx.AsyncClient) -> None:
    binary = await upload(client, ("ok.md", b"fine"), ("img.png", b"\x89PNG\x00\x01"))
    assert binary.status_code == 422
    assert binary.json()["errors"][0]["loc"] == ["body", "files", 1]
    empty = await client.post(UPLOADS, data={"x": "1"})
    assert empty.status_code == 422
    assert "files" in str(empty.json()["errors"][0]["loc"])
    anonymous = await httpx.AsyncClient(
        transport=client._transport, base_url=str(client.base_url)
    ).post(UPLOADS, files=[("files", ("a.md", b"x", "text/plain"))])
    assert anonymous.status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [{"max_request_bytes": 4096}])
async def test_an_upload_over_the_request_limit_is_a_413_and_stores_nothing(
    gateway: Gateway,
) -> None:
    client = gateway.client
    response = await upload(client, ("a.md", b"x" * 3000), ("b.md", b"y" * 3000))
    assert response.status_code == 413, response.text
    from somaagent.workflows.uploads import UploadStore

    store = UploadStore(gateway.state.sessions)
    assert await store.count("default") == 0
    assert (await upload(client, ("a.md", b"x" * 3000))).status_code == 201
    assert await store.count("default") == 1  # the tenant counted is the one uploading


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_more_uploaded_files_than_a_run_may_index_is_a_422(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from somaagent.workflows.builtin import document_ingest

    monkeypatch.setattr(document_ingest, "MAX_DOCUMENTS", 2)
    up = (await upload(client, ("a.md", b"a"), ("b.md", b"b"))).json()["id"]
    ok = await client.post(RUNS, json={"input": {"collection": "kb", "uploads": [up, up]}})
    assert ok.status_code == 202, ok.text  # an upload named twice counts once
    inline = {"collection": "kb", "uploads": [up], "documents": [{"text": "c"}]}
    response = await client.post(RUNS, json={"input": inline})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "input", "uploads"]
