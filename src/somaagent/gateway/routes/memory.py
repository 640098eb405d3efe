"""``/v1/memory``: collections, their documents, search and retrieval, and conversation search.

Documents come as JSON (``{"documents": [{"text": ..., "source": ...}]}``) or as a multipart
upload of text and Markdown files (field ``files``; optional ``metadata``, a JSON object put on
every file, and ``force``). A binary file is a 422 naming it; one over the size limit a 413.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from somaagent import types
from somaagent.errors import (
    ConfigurationError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from somaagent.gateway.auth import CurrentPrincipal, State, get_state
from somaagent.gateway.middleware import unstorable_text
from somaagent.llm import tokens
from somaagent.llm.registry import UnknownModelError
from somaagent.memory.schemas import (
    COLLECTION_NAME_PATTERN,
    Collection,
    CollectionCreate,
    DocumentIn,
    DocumentInfo,
    DocumentsCreate,
    IndexResult,
    MessageHit,
    RAGContext,
    RetrieveRequest,
    SearchRequest,
    SearchResults,
)
from somaagent.memory.service import MemoryService

router = APIRouter(prefix="/v1/memory", tags=["memory"])

MAX_FILES = 1000
_MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")


async def get_memory(request: Request) -> MemoryService:
    """The gateway's :class:`MemoryService` (made at start; see ``create_app``)."""
    return get_state(request).memory


Memory = Annotated[MemoryService, Depends(get_memory)]
Name = Annotated[str, Path(pattern=COLLECTION_NAME_PATTERN, description="the collection's name")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


class ConversationSearch(BaseModel):
    """A search of the caller's stored conversation messages."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(default=5, ge=1, le=100)
    conversation_id: str | None = Field(default=None, max_length=64)


# -- collections --------------------------------------------------------------------------------


@router.post("/collections", status_code=status.HTTP_201_CREATED)
async def create_collection(
    body: CollectionCreate, who: CurrentPrincipal, memory: Memory
) -> Collection:
    """Create a collection (409 if you have one by that name)."""
    return await memory.create_collection(who.tenant, body)


@router.get("/collections")
async def list_collections(
    who: CurrentPrincipal, memory: Memory, limit: Limit = 20, cursor: Cursor = None
) -> types.Page[Collection]:
    """Your collections, by name."""
    return await memory.list_collections(who.tenant, limit=limit, cursor=cursor)


@router.get("/collections/{name}")
async def get_collection(name: Name, who: CurrentPrincipal, memory: Memory) -> Collection:
    """One collection, with its document and chunk counts."""
    return await memory.get_collection(who.tenant, name)


@router.delete("/collections/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_collection(name: Name, who: CurrentPrincipal, memory: Memory) -> Response:
    """Delete a collection with its documents and vectors."""
    await memory.delete_collection(who.tenant, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- documents ----------------------------------------------------------------------------------


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``#/$defs/...`` references replaced by the definitions: inside an
    OpenAPI document such a reference would point at the document's root, where no ``$defs``
    is, and schema-driven clients could not resolve it."""
    definitions = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(definitions[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


_DOCUMENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inlined(DocumentsCreate.model_json_schema())},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "metadata": {"type": "string", "description": "a JSON object"},
                        "force": {"type": "boolean"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/collections/{name}/documents",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_DOCUMENTS_BODY,
    responses={200: {"model": IndexResult, "description": "every document was unchanged"}},
)
async def index_documents(
    name: Name, request: Request, response: Response, who: CurrentPrincipal, memory: Memory
) -> IndexResult:
    """Index text and Markdown documents (JSON or multipart files); re-indexing replaces.

    An unchanged document (same text, source and metadata) is skipped unless ``force``; when
    every one is, the answer is 200 instead of 201.
    """
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        documents, force = await _read_upload(request, memory.max_document_chars)
    elif content_type and not _is_json(content_type):
        raise UnsupportedMediaTypeError(
            f"documents come as application/json or multipart/form-data, not {content_type!r}"
        )
    else:
        body = _parse(DocumentsCreate, await _json(request))
        documents, force = body.documents, body.force
    result = await memory.index(who.tenant, name, documents, force=force)
    if not result.indexed and not result.failed:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/collections/{name}/documents")
async def list_documents(
    name: Name, who: CurrentPrincipal, memory: Memory, limit: Limit = 50, cursor: Cursor = None
) -> types.Page[DocumentInfo]:
    """A collection's documents, by id, with content hash and chunk count."""
    return await memory.list_documents(who.tenant, name, limit=limit, cursor=cursor)


@router.delete(
    "/collections/{name}/documents/{document_id:path}", status_code=status.HTTP_204_NO_CONTENT
)
async def delete_document(
    name: Name, document_id: str, who: CurrentPrincipal, memory: Memory
) -> Response:
    """Delete one document and its chunks."""
    await memory.delete_document(who.tenant, name, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip()
    return media == "application/json" or media.endswith("+json")


# -- search and retrieval -----------------------------------------------------------------------


@router.post("/collections/{name}/search")
async def search(
    name: Name, body: SearchRequest, who: CurrentPrincipal, memory: Memory
) -> SearchResults:
    """Search a collection: ``hybrid`` (default), ``vector`` or ``keyword``, with filters."""
    return await memory.search(who.tenant, name, body)


@router.post("/collections/{name}/retrieve")
async def retrieve(
    name: Name, body: RetrieveRequest, who: CurrentPrincipal, memory: Memory, state: State
) -> RAGContext:
    """Retrieve context for a prompt within a token budget, with its sources."""
    registry = state.pool.registry
    try:
        spec = registry.get(body.model or state.pool.default_model)
    except UnknownModelError as exc:
        if body.model is not None:
            raise ValidationError(
                f"unknown model {body.model!r}",
                errors=[{"loc": ["body", "model"], "msg": "unknown model", "type": "value_error"}],
            ) from exc
        spec = None  # a default outside the registry: count with the pipeline's counter

    def count(text: str) -> int:
        assert spec is not None
        return tokens.count_text(text, spec)

    return await memory.retrieve(
        who.tenant, name, body, count_tokens=count if spec is not None else None
    )


@router.post("/conversations/search")
async def search_conversations(
    body: ConversationSearch, who: CurrentPrincipal, memory: Memory
) -> list[MessageHit]:
    """Search your stored conversation messages."""
    return await memory.search_conversations(
        who.tenant, body.query, body.k, conversation_id=body.conversation_id
    )


# -- request bodies -----------------------------------------------------------------------------


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise ValidationError(
            'the body must be JSON ({"documents": [...]}) or a multipart upload of files',
            errors=[{"loc": ["body"], "msg": "invalid JSON", "type": "json_invalid"}],
        ) from exc


def _parse(model: type[DocumentsCreate], raw: Any) -> DocumentsCreate:
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        details = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in d["loc"]) for d in details)
        raise ValidationError(f"invalid request: {fields}", errors=details) from None


async def _read_upload(request: Request, max_chars: int) -> tuple[list[DocumentIn], bool]:
    """The uploaded files as documents (Markdown by suffix, plain text otherwise)."""
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=20)
    except AssertionError as exc:  # Starlette's way of saying python-multipart is missing
        raise ConfigurationError(
            "multipart uploads need python-multipart: install the `server` extra: "
            "pip install 'somaagent[server]'"
        ) from exc
    try:
        metadata = _form_metadata(form.get("metadata"))
        force = str(form.get("force", "false")).lower() in {"1", "true", "yes", "on"}
        files = [f for key in ("files", "file") for f in form.getlist(key)]
        if not files or not all(isinstance(f, UploadFile) for f in files):
            raise ValidationError(
                "upload the documents as multipart files in the `files` field",
                errors=[{"loc": ["body", "files"], "msg": "no files", "type": "missing"}],
            )
        documents = [
            await _document(f, i, metadata, max_chars)
            for i, f in enumerate(files)
            if isinstance(f, UploadFile)
        ]
    finally:
        await form.close()
    return documents, force


def _form_metadata(raw: object) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(str(raw))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValidationError(
            "`metadata` must be a JSON object",
            errors=[
                {"loc": ["body", "metadata"], "msg": "not a JSON object", "type": "value_error"}
            ],
        )
    refused = unstorable_text(value, ["body", "metadata"])  # a lone surrogate, NUL
    if refused is not None:
        raise refused
    return value


async def _document(
    upload: UploadFile, index: int, metadata: dict[str, Any], max_chars: int
) -> DocumentIn:
    name = upload.filename or f"upload-{index}"
    loc: list[str | int] = ["body", "files", index]
    data = await upload.read(max_chars * 4 + 1)  # a UTF-8 character is at most 4 bytes
    if len(data) > max_chars * 4:
        raise PayloadTooLargeError(
            f"file {name!r} is over the limit of {max_chars:,} characters",
            errors=[{"loc": loc, "msg": "too large", "type": "too_large"}],
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise ValidationError(
            f"file {name!r} is binary, not UTF-8 text: upload text or Markdown files",
            errors=[{"loc": loc, "msg": "binary file", "type": "binary_file"}],
        )
    if len(text) > max_chars:
        raise PayloadTooLargeError(
            f"file {name!r} is {len(text):,} characters; the limit is {max_chars:,}",
            errors=[{"loc": loc, "msg": "too large", "type": "too_large"}],
        )
    fmt = "markdown" if name.lower().endswith(_MARKDOWN_SUFFIXES) else "text"
    try:
        return DocumentIn(id=name[:256], text=text, source=name, metadata=metadata, format=fmt)
    except pydantic.ValidationError as exc:
        raise ValidationError(
            f"file {name!r}: {exc.errors()[0]['msg']}",
            errors=[{"loc": loc, "msg": e["msg"], "type": e["type"]} for e in exc.errors()],
        ) from None
