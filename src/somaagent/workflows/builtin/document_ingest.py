"""``document_ingest``: index documents into a memory collection in checkpointed batches.

Each batch is one step calling the memory service's public ``index``. A crash resumes at the
first batch without a checkpoint: finished batches are not indexed (nor embedded) again. The
batch that was cut short runs again; that is safe because indexing replaces a document by id
and skips a document whose stored content hash matches, so the collection ends as an
uninterrupted run leaves it.

Documents come inline (``documents``, durable with the run's input) or listed (``paths``: files
or folders under the operator's ingest root, ``SOMA_WORKFLOW_INGEST_ROOT``). Listed paths are
checked when the run is started (a path outside the root or missing is a 422 naming
``input.paths.N``); the first step lists their files (checkpointed, so a resumed run indexes the
same files in the same batches), and each batch reads its files when it runs. Uploaded files
(``uploads``: ids from ``POST /v1/workflows/document_ingest/uploads``, stored in the database)
work the same way: checked to be the tenant's when the run is started (a 422 naming
``input.uploads.N``), listed in an ``uploads`` step, read batch by batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from somaagent.errors import ConflictError, NotFoundError, ValidationError
from somaagent.types.memory import COLLECTION_NAME_PATTERN, CollectionCreate, DocumentIn
from somaagent.types.workflows import UPLOAD_ID_PATTERN
from somaagent.workflows.builtin import _files
from somaagent.workflows.engine import RunContext, StepPolicy, WorkflowTypeSpec
from somaagent.workflows.ports import INGEST_ROOT, MEMORY, UPLOADS, MemoryIndex, transient
from somaagent.workflows.uploads import UploadRef, UploadStore

MAX_DOCUMENTS = 10_000
MAX_PATHS = 1_000
POLICY = StepPolicy(max_attempts=4, interval_s=0.5, backoff=2.0, retry_on=transient)


class DocumentIngestInput(BaseModel):
    """Documents to index (inline, listed by path, or both), the collection, and the batch
    size (documents per checkpoint)."""

    model_config = ConfigDict(extra="forbid")

    collection: str = Field(pattern=COLLECTION_NAME_PATTERN)
    # paths before documents: the check that there is something to index sees them
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list,
        max_length=MAX_PATHS,
        description="files or folders under the gateway's ingest root (SOMA_WORKFLOW_INGEST_ROOT), "
        "relative to it; a folder adds its .md, .markdown, .mdx and .txt files",
    )
    uploads: list[Annotated[str, Field(pattern=UPLOAD_ID_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_PATHS,
        description="ids of uploads (POST /v1/workflows/document_ingest/uploads) to index",
    )
    documents: list[DocumentIn] = Field(
        default_factory=list, max_length=MAX_DOCUMENTS, validate_default=True
    )
    batch_size: int = Field(default=16, ge=1, le=512)
    create_collection: bool = Field(default=True, description="create it when missing")
    force: bool = Field(default=False, description="re-index documents whose text is unchanged")

    @field_validator("documents")
    @classmethod
    def _something_to_index(
        cls, documents: list[DocumentIn], info: ValidationInfo
    ) -> list[DocumentIn]:
        if not documents and not info.data.get("paths", [0]) and not info.data.get("uploads", [0]):
            raise ValueError("give at least one document, uploads, or paths under the ingest root")
        return documents


async def accept(body: DocumentIngestInput, services: Mapping[str, Any], tenant: str) -> None:
    """Refuse listed paths that are missing or outside the ingest root, and uploads that are
    not the tenant's, before the run exists."""
    _files.check_paths(services.get(INGEST_ROOT), body.paths)
    if body.uploads:
        files = await _uploads(services).check(tenant, body.uploads)
        if files + len(body.documents) > MAX_DOCUMENTS:
            message = f"the uploads and documents hold more than {MAX_DOCUMENTS} files"
            raise ValidationError(
                message,
                errors=[{"loc": ["body", "input", "uploads"], "msg": message, "type": "too_many"}],
            )


def _uploads(services: Mapping[str, Any]) -> UploadStore:
    store: UploadStore | None = services.get(UPLOADS)
    if store is None:
        raise RuntimeError("this engine was opened without an upload store")
    return store


def _memory(ctx: RunContext) -> MemoryIndex:
    provider = ctx.services[MEMORY]
    memory: MemoryIndex = provider() if callable(provider) else provider
    return memory


async def run(ctx: RunContext, body: DocumentIngestInput) -> dict[str, Any]:
    tenant, name = ctx.tenant, body.collection

    async def prepare() -> dict[str, Any]:
        memory = _memory(ctx)
        try:
            await memory.get_collection(tenant, name)
            return {"created": False}
        except NotFoundError:
            if not body.create_collection:
                raise
        try:
            await memory.create_collection(tenant, CollectionCreate(name=name))
        except ConflictError:
            return {"created": False}  # made meanwhile by someone else: use it
        return {"created": True}

    prepared = await ctx.step(
        "prepare", prepare, policy=POLICY, summary=lambda r: f"collection {name}: {r}"
    )
    root: Path | None = ctx.services.get(INGEST_ROOT)
    listed: list[str] = []
    if body.paths:

        async def list_paths() -> list[str]:
            return _files.list_files(root, body.paths, MAX_DOCUMENTS - len(body.documents))

        listed = await ctx.step(
            "list", list_paths, policy=POLICY, summary=lambda files: f"{len(files)} files"
        )
    uploaded: list[UploadRef] = []
    if body.uploads:  # a step of its own: runs without uploads replay their old steps

        async def list_uploads() -> list[UploadRef]:
            return await _uploads(ctx.services).list_files(tenant, body.uploads)

        uploaded = await ctx.step(
            "uploads", list_uploads, policy=POLICY, summary=lambda refs: f"{len(refs)} files"
        )
    # An inline document is itself; a listed one is its path and an uploaded one its
    # [upload id, position], both read when their batch runs.
    docs: list[DocumentIn | str | UploadRef] = [*body.documents, *listed, *uploaded]
    batches = [docs[i : i + body.batch_size] for i in range(0, len(docs), body.batch_size)]
    totals = {"indexed": 0, "unchanged": 0, "failed": 0, "chunks": 0}
    for number, batch in enumerate(batches, start=1):

        async def index(batch: list[DocumentIn | str | UploadRef] = batch) -> dict[str, int]:
            refs = [d for d in batch if isinstance(d, list)]
            from_uploads = iter(await _uploads(ctx.services).read(tenant, refs) if refs else [])
            documents = [
                d
                if isinstance(d, DocumentIn)
                else _files.read(root, d)
                if isinstance(d, str)
                else next(from_uploads)
                for d in batch
            ]
            result = await _memory(ctx).index(tenant, name, documents, force=body.force)
            return {
                "indexed": len(result.indexed),
                "unchanged": len(result.unchanged),
                "failed": len(result.failed),
                "chunks": result.chunk_count,
            }

        counts = await ctx.step(
            f"batch-{number}/{len(batches)}",
            index,
            policy=POLICY,
            summary=lambda c: (
                f"{c['indexed']} indexed, {c['unchanged']} unchanged, {c['chunks']} chunks"
            ),
        )
        for key in totals:
            totals[key] += counts[key]
        await ctx.emit("run.progress", done=number, total=len(batches), unit="batches", **totals)
    return {
        "collection": name,
        "created": prepared["created"],
        "documents": len(docs),
        "batches": len(batches),
        **totals,
    }


SPEC = WorkflowTypeSpec(
    name="document_ingest",
    input_model=DocumentIngestInput,
    run=run,
    description="Index documents (inline, uploaded, or files listed under the gateway's ingest "
    "root) "
    "into a memory collection in checkpointed batches.",
    accept=accept,
)
