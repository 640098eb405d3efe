"""``document_ingest``: index documents into a memory collection in checkpointed batches.

Each batch is one step calling the memory service's public ``index``. A crash resumes at the
first batch without a checkpoint: finished batches are not indexed (nor embedded) again. The
batch that was cut short runs again; that is safe because indexing replaces a document by id
and skips a document whose stored content hash matches, so the collection ends as an
uninterrupted run leaves it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from somaagent.errors import ConflictError, NotFoundError
from somaagent.types.memory import COLLECTION_NAME_PATTERN, CollectionCreate, DocumentIn
from somaagent.workflows.engine import RunContext, StepPolicy, WorkflowTypeSpec
from somaagent.workflows.ports import MEMORY, MemoryIndex, transient

MAX_DOCUMENTS = 10_000
POLICY = StepPolicy(max_attempts=4, interval_s=0.5, backoff=2.0, retry_on=transient)


class DocumentIngestInput(BaseModel):
    """Documents to index, the collection, and the batch size (documents per checkpoint)."""

    model_config = ConfigDict(extra="forbid")

    collection: str = Field(pattern=COLLECTION_NAME_PATTERN)
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    batch_size: int = Field(default=16, ge=1, le=512)
    create_collection: bool = Field(default=True, description="create it when missing")
    force: bool = Field(default=False, description="re-index documents whose text is unchanged")


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
    docs = body.documents
    batches = [docs[i : i + body.batch_size] for i in range(0, len(docs), body.batch_size)]
    totals = {"indexed": 0, "unchanged": 0, "failed": 0, "chunks": 0}
    for number, batch in enumerate(batches, start=1):

        async def index(batch: list[DocumentIn] = batch) -> dict[str, int]:
            result = await _memory(ctx).index(tenant, name, batch, force=body.force)
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
    description="Index documents into a memory collection in checkpointed batches.",
)
