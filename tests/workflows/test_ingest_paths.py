"""``document_ingest`` over listed server-side paths: files and folders under the operator's
ingest root (``SOMA_WORKFLOW_INGEST_ROOT``), through the real gateway on SQLite; paths outside
the root, missing, through a link out, or with no root set are 422s naming ``input.paths.N``
and start nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from somaagent.errors import ValidationError
from somaagent.workflows.builtin import _files
from tests.workflows.conftest import wait_finished

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'soma.db'}"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "notes" / "deep").mkdir(parents=True)
    (root / "notes" / "a.md").write_text("# Alpha\n\nThe alpha fact.")
    (root / "notes" / "deep" / "b.txt").write_text("The beta fact.")
    (root / "notes" / ".hidden.md").write_text("hidden")
    (root / "notes" / "image.png").write_bytes(b"\x89PNG\x00")
    (root / "top.md").write_text("# Top\n\nThe top fact.")
    outside = tmp_path / "secret.md"
    outside.write_text("a secret outside the root")
    os.symlink(outside, root / "notes" / "leak.md")  # a link out, inside a listed folder
    os.symlink(outside, root / "escape.md")  # a link out, listed by name
    return root


@pytest.fixture
def settings_overrides(corpus: Path) -> dict[str, Any]:
    return {"workflow_ingest_root": corpus}


async def start(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/workflows/document_ingest/runs", json={"input": body})


async def test_listed_files_and_folders_are_indexed_in_batches(
    client: httpx.AsyncClient, corpus: Path
) -> None:
    inline = {"id": "inline-0", "text": "An inline fact."}
    body = {"collection": "kb", "paths": ["notes", "top.md", "./notes/a.md"], "batch_size": 2}
    response = await start(client, {**body, "documents": [inline]})
    assert response.status_code == 202, response.text
    done = await wait_finished(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["output"]["documents"] == 4 and done["output"]["indexed"] == 4
    steps = (await client.get(f"/v1/workflow-runs/{done['id']}/steps")).json()["data"]
    assert [s["name"] for s in steps] == ["prepare", "list", "batch-1/2", "batch-2/2"]
    assert steps[1]["output_summary"] == "3 files"  # a.md once, though listed twice
    listed = (await client.get("/v1/memory/collections/kb/documents")).json()["data"]
    # ids are paths under the root; the hidden file, the PNG and the link out are left out
    assert {d["id"] for d in listed} == {"inline-0", "notes/a.md", "notes/deep/b.txt", "top.md"}
    hits = await client.post("/v1/memory/collections/kb/search", json={"query": "secret"})
    assert hits.status_code == 200 and "outside the root" not in str(hits.json()["data"])


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("../secret.md", "outside_root"),
        ("escape.md", "outside_root"),  # a symbolic link leading out of the root
        ("/etc/hostname", "outside_root"),
        ("notes/missing.md", "not_found"),
    ],
)
async def test_a_path_outside_the_root_or_missing_is_a_422_naming_it(
    client: httpx.AsyncClient, path: str, kind: str
) -> None:
    response = await start(client, {"collection": "kb", "paths": ["top.md", path]})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "input", "paths", 1] and error["type"] == kind
    assert (await client.get("/v1/workflow-runs")).json()["data"] == []


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_no_root_set_refuses_every_path(client: httpx.AsyncClient) -> None:
    response = await start(client, {"collection": "kb", "paths": ["top.md"]})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "input", "paths", 0]
    assert "SOMA_WORKFLOW_INGEST_ROOT" in response.json()["detail"]


def test_a_file_turned_into_a_link_out_after_listing_is_not_read(
    corpus: Path, tmp_path: Path
) -> None:
    assert _files.list_files(corpus, ["top.md"], limit=10) == ["top.md"]
    (corpus / "top.md").unlink()
    os.symlink(tmp_path / "secret.md", corpus / "top.md")
    with pytest.raises(ValidationError, match="outside the ingest root"):
        _files.read(corpus, "top.md")


def test_more_files_than_the_limit_are_refused(corpus: Path) -> None:
    with pytest.raises(ValidationError, match="more than 1 files"):
        _files.list_files(corpus, ["notes"], limit=1)
