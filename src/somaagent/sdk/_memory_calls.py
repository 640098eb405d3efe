"""The memory API's calls, built once with no I/O, and reading documents from files.

:func:`read_documents` reads text and Markdown (a file or a folder), every one before anything
is sent, so a binary file stops an upload before it starts.
"""

from __future__ import annotations

import base64
import builtins
import os
import sys
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import drop_none, model_parser, no_content
from somaagent.types import Page
from somaagent.types.memory import (
    Collection,
    DocumentIn,
    DocumentInfo,
    EmbeddingList,
    IndexResult,
    MessageHit,
    RAGContext,
    SearchResults,
)

__all__ = ["DOCUMENT_SUFFIXES", "Progress", "read_documents"]

PathLike = str | os.PathLike[str]
Documents = Sequence[DocumentIn | Mapping[str, Any] | str]
Mode = Literal["vector", "keyword", "hybrid"]
Fusion = Literal["rrf", "weighted"]
DOCUMENT_SUFFIXES = (".md", ".markdown", ".mdx", ".txt")
"""The files :func:`read_documents` picks up in a folder."""
_MARKDOWN = (".md", ".markdown", ".mdx")
_BATCH_BYTES = 512 * 1024  # well under the gateway's default 1 MiB request limit


@dataclass(frozen=True)
class Progress:
    """How far an :meth:`Memory.index` call is, reported after each request."""

    documents_done: int
    documents_total: int
    chunks_done: int


ProgressCallback = Callable[[Progress], None]


def read_documents(
    path: PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    follow_links: bool = False,
) -> list[DocumentIn]:
    """The text and Markdown documents in ``path``: one file, or every such file in a folder.

    A document's id and source are its path relative to the folder (the file name for a single
    file), so indexing the folder again replaces its documents instead of duplicating them.
    A symbolic link in the folder that leads out of it (``notes.txt -> /etc/hostname``) is
    skipped unless ``follow_links``: indexing a folder never uploads files from elsewhere.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a file is binary or not UTF-8, or the folder holds no documents.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    files = [(root, root.name)] if root.is_file() else list(_folder_files(root, follow_links))
    if not files:
        suffixes = ", ".join(DOCUMENT_SUFFIXES)
        raise ValueError(f"{root} holds no documents ({suffixes})")
    documents = []
    for file, name in files:
        data = file.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = "\x00"
        if "\x00" in text:
            raise ValueError(f"{file}: binary, not UTF-8 text")
        fmt = "markdown" if file.suffix.lower() in _MARKDOWN else "text"
        documents.append(
            DocumentIn(id=name, text=text, source=name, metadata=dict(metadata or {}), format=fmt)
        )
    return documents


def _folder_files(root: Path, follow_links: bool = False) -> Iterator[tuple[Path, str]]:
    inside = root.resolve()
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not follow_links and not file.resolve().is_relative_to(inside):
            continue  # a link out of the folder
        if file.is_file() and file.suffix.lower() in DOCUMENT_SUFFIXES:
            yield file, relative.as_posix()


def as_document(item: DocumentIn | Mapping[str, Any] | str) -> DocumentIn:
    if isinstance(item, DocumentIn):
        return item
    if isinstance(item, str):
        return DocumentIn(text=item)
    return DocumentIn.model_validate(item)


def batches(documents: Sequence[DocumentIn], size: int) -> Iterator[list[DocumentIn]]:
    batch: list[DocumentIn] = []
    used = 0
    for document in documents:
        cost = len(document.text.encode()) + 256
        if batch and (len(batch) >= size or used + cost > _BATCH_BYTES):
            yield batch
            batch, used = [], 0
        batch.append(document)
        used += cost
    if batch:
        yield batch


def merge_results(total: IndexResult, part: IndexResult) -> None:
    total.indexed.extend(part.indexed)
    total.unchanged.extend(part.unchanged)
    total.failed.extend(part.failed)
    total.chunk_count += part.chunk_count


def _path(name: str, suffix: str = "") -> str:
    if not name:
        raise ValueError("a collection name must be a non-empty string")
    return f"/v1/memory/collections/{quote(name, safe='')}{suffix}"


def _decode(response: httpx.Response) -> EmbeddingList:
    result = EmbeddingList.model_validate(response.json())
    for item in result.data:
        if isinstance(item.embedding, str):
            values = array("f", base64.b64decode(item.embedding))
            if sys.byteorder == "big":
                values.byteswap()
            item.embedding = values.tolist()
    return result


_hits = TypeAdapter(list[MessageHit])


# The builders of every call; no I/O.


def create_call(
    name: str, *, description: str, metadata: Mapping[str, Any] | None
) -> APICall[Collection]:
    body = {"name": name, "description": description, "metadata": dict(metadata or {})}
    return APICall("POST", "/v1/memory/collections", model_parser(Collection), json=body)


def list_call(*, limit: int, cursor: str | None) -> APICall[Page[Collection]]:
    params = {"limit": limit, "cursor": cursor}
    return APICall("GET", "/v1/memory/collections", model_parser(Page[Collection]), params=params)


def get_call(name: str) -> APICall[Collection]:
    return APICall("GET", _path(name), model_parser(Collection))


def delete_call(name: str) -> APICall[None]:
    return APICall("DELETE", _path(name), no_content)


def index_call(name: str, documents: Sequence[DocumentIn], *, force: bool) -> APICall[IndexResult]:
    body: dict[str, Any] = {
        "documents": [d.model_dump(mode="json", exclude_none=True) for d in documents]
    }
    if force:
        body["force"] = True
    return APICall("POST", _path(name, "/documents"), model_parser(IndexResult), json=body)


def documents_call(name: str, *, limit: int, cursor: str | None) -> APICall[Page[DocumentInfo]]:
    params = {"limit": limit, "cursor": cursor}
    return APICall(
        "GET", _path(name, "/documents"), model_parser(Page[DocumentInfo]), params=params
    )


def delete_document_call(name: str, document_id: str) -> APICall[None]:
    if not document_id:
        raise ValueError("a document id must be a non-empty string")
    path = _path(name, f"/documents/{quote(document_id, safe='/')}")
    return APICall("DELETE", path, no_content)


def query_body(query: str, **fields: Any) -> dict[str, Any]:
    return drop_none(query=query, **fields)


def search_call(name: str, body: dict[str, Any]) -> APICall[SearchResults]:
    return APICall("POST", _path(name, "/search"), model_parser(SearchResults), json=body)


def retrieve_call(name: str, body: dict[str, Any]) -> APICall[RAGContext]:
    return APICall("POST", _path(name, "/retrieve"), model_parser(RAGContext), json=body)


def conversations_call(
    query: str, *, k: int, conversation_id: str | None
) -> APICall[builtins.list[MessageHit]]:
    body = drop_none(query=query, k=k, conversation_id=conversation_id)
    return APICall(
        "POST",
        "/v1/memory/conversations/search",
        lambda r: _hits.validate_python(r.json()),
        json=body,
    )


def embeddings_call(
    input: str | Sequence[str], *, model: str, dimensions: int | None
) -> APICall[EmbeddingList]:
    texts: str | list[str] = input if isinstance(input, str) else list(input)
    body = drop_none(input=texts, model=model, dimensions=dimensions, encoding_format="base64")
    return APICall("POST", "/v1/embeddings", _decode, json=body)
