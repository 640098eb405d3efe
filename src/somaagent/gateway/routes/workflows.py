"""``/v1/workflows`` and ``/v1/workflow-runs``: durable runs, their steps, events and results.

HTTP only: the engine (:mod:`somaagent.workflows`) does the work and raises SomaAgent errors,
which the gateway renders as problem+json. Events are Server-Sent Events whose ``id`` is the
event's sequence number; a reconnect with ``Last-Event-ID`` (or ``?after=``) continues after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Header, Path, Query, Request, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from somaagent import types
from somaagent.errors import ConflictError, NotFoundError, ServiceUnavailableError
from somaagent.gateway.auth import CurrentPrincipal, get_state
from somaagent.gateway.settings import Settings
from somaagent.gateway.state import GatewayState
from somaagent.gateway.streaming import SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from somaagent.types.workflows import (
    FINISHED,
    RUN_ID_PATTERN,
    UPLOAD_ID_PATTERN,
    RunStatus,
    WorkflowFork,
    WorkflowRun,
    WorkflowRunCreate,
    WorkflowStep,
    WorkflowType,
    WorkflowUpload,
)
from somaagent.workflows.options import WorkflowOptions
from somaagent.workflows.ports import CHAT, MEMORY, UPLOADS, RoutedChat
from somaagent.workflows.uploads import UploadStore

if TYPE_CHECKING:
    from somaagent.workflows.dbos import DBOSEngine

router = APIRouter(prefix="/v1", tags=["workflows"])

RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="the run's id")]
UploadId = Annotated[str, Path(pattern=UPLOAD_ID_PATTERN, description="the upload's id")]
TypeName = Annotated[str, Path(max_length=100, description="a registered workflow type")]
JSONL = "application/x-ndjson"


async def open_workflows(state: GatewayState) -> DBOSEngine | None:
    """The app factory's wiring: the engine on the gateway's database, with its services."""
    # Imported here: DBOS takes about a second to import, paid only by a starting gateway.
    from somaagent.workflows.service import open_engine

    chat = RoutedChat(
        state.turns.decide,
        state.pool.adapter,
        health=state.router.health,
        fallback=state.turns.fallback,
        prompts=state.prompts,
    )
    return await open_engine(
        state.settings.resolved_database_url,
        state.settings.data_dir,
        # memory is looked up per call: the app (and tests) may swap the service
        services={
            MEMORY: lambda: state.memory,
            CHAT: chat,
            UPLOADS: UploadStore(
                state.sessions, ttl_hours=state.settings.workflow_upload_ttl_hours
            ),
        },
        metrics_registry=state.metrics.registry,
        options=workflow_options(state.settings),
    )


def workflow_options(settings: Settings) -> WorkflowOptions:
    """The engine's options from the gateway's ``SOMA_WORKFLOW_*`` settings."""
    return WorkflowOptions(
        enabled=settings.workflow_enabled,
        concurrency=settings.workflow_concurrency,
        executor_id=settings.workflow_executor_id,
        polling_interval_s=settings.workflow_polling_interval_s,
        maintenance_interval_s=settings.workflow_maintenance_interval_s,
        max_recovery_attempts=settings.workflow_max_recovery_attempts,
        ingest_root=settings.workflow_ingest_root,
    )


def engine_of(request: Request) -> DBOSEngine:
    engine: DBOSEngine | None = getattr(get_state(request), "workflows", None)
    if engine is None:
        raise ServiceUnavailableError("durable workflows are turned off on this gateway")
    return engine


def _run_id(body: WorkflowRunCreate, idempotency_key: str | None) -> str | None:
    if body.id is not None or not idempotency_key:
        return body.id
    # The key may hold any characters; the run id it stands for is a digest of it.
    return "wr_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]


@router.get("/workflows", summary="The registered workflow types and their input schemas")
async def list_types(request: Request, who: CurrentPrincipal) -> dict[str, list[WorkflowType]]:
    return {"data": engine_of(request).registry.infos()}


@router.post(
    "/workflows/document_ingest/uploads",
    status_code=status.HTTP_201_CREATED,
    summary="Store files for a later document_ingest run (input.uploads: [id])",
)
async def upload_documents(
    request: Request,
    who: CurrentPrincipal,
    files: Annotated[list[UploadFile], File(description="one or more UTF-8 text files")],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> WorkflowUpload:
    # The whole body is already bounded by the gateway's request size limit.
    store: UploadStore = engine_of(request).services[UPLOADS]
    contents = [(file.filename, await file.read()) for file in files]
    return await store.save(who.tenant, contents, key=idempotency_key)


@router.get(
    "/workflows/document_ingest/uploads/{upload_id}",
    summary="One stored upload: its files and when it expires",
)
async def get_upload(
    request: Request, who: CurrentPrincipal, upload_id: UploadId
) -> WorkflowUpload:
    store: UploadStore = engine_of(request).services[UPLOADS]
    found = await store.get(who.tenant, upload_id)
    if found is None:
        raise NotFoundError(f"no upload {upload_id!r}")
    return found


@router.delete(
    "/workflows/document_ingest/uploads/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an upload now (409 while a queued or running run names it)",
)
async def delete_upload(request: Request, who: CurrentPrincipal, upload_id: UploadId) -> Response:
    retention = engine_of(request).upload_retention
    if retention is None:
        raise ServiceUnavailableError("uploads are not served by this gateway's workflow engine")
    await retention.delete(who.tenant, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/workflows/{type}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a run (an Idempotency-Key or a repeated id returns the same run)",
)
async def start_run(
    request: Request,
    who: CurrentPrincipal,
    type: TypeName,
    body: WorkflowRunCreate,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> WorkflowRun:
    return await engine_of(request).start(
        who.tenant,
        type,
        body.input,
        id=_run_id(body, idempotency_key),
        started_by=who.key_id,
    )


@router.get("/workflow-runs", summary="The tenant's runs, newest first")
async def list_runs(
    request: Request,
    who: CurrentPrincipal,
    type: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
) -> types.Page[WorkflowRun]:
    return await engine_of(request).list(
        who.tenant,
        type=type,
        status=status,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
    )


@router.get("/workflow-runs/{run_id}", summary="One run")
async def get_run(request: Request, who: CurrentPrincipal, run_id: RunId) -> WorkflowRun:
    return await engine_of(request).get(who.tenant, run_id)


@router.get("/workflow-runs/{run_id}/steps", summary="A run's finished steps")
async def get_steps(
    request: Request, who: CurrentPrincipal, run_id: RunId
) -> dict[str, list[WorkflowStep]]:
    return {"data": await engine_of(request).steps(who.tenant, run_id)}


@router.post("/workflow-runs/{run_id}/cancel", summary="Cancel a queued or running run")
async def cancel_run(request: Request, who: CurrentPrincipal, run_id: RunId) -> WorkflowRun:
    return await engine_of(request).cancel(who.tenant, run_id)


@router.post("/workflow-runs/{run_id}/resume", summary="Resume a cancelled run")
async def resume_run(request: Request, who: CurrentPrincipal, run_id: RunId) -> WorkflowRun:
    return await engine_of(request).resume(who.tenant, run_id)


@router.post(
    "/workflow-runs/{run_id}/fork",
    status_code=status.HTTP_202_ACCEPTED,
    summary="A new run that reuses the steps before from_step",
)
async def fork_run(
    request: Request, who: CurrentPrincipal, run_id: RunId, body: WorkflowFork
) -> WorkflowRun:
    return await engine_of(request).fork(who.tenant, run_id, body.from_step)


@router.get(
    "/workflow-runs/{run_id}/events",
    summary="The run's events as Server-Sent Events (resumable with Last-Event-ID)",
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request,
    who: CurrentPrincipal,
    run_id: RunId,
    after: Annotated[int | None, Query(ge=-1, description="the last seq already seen")] = None,
    follow: bool = True,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    engine = engine_of(request)
    await engine.get(who.tenant, run_id)  # a 404 before the stream starts
    after_seq = after if after is not None else -1
    if last_event_id and last_event_id.strip().lstrip("-").isdigit():
        after_seq = max(after_seq, int(last_event_id))

    async def body() -> AsyncIterator[bytes]:
        async for event in engine.events(who.tenant, run_id, after_seq=after_seq, follow=follow):
            yield sse_event(event.type, event.model_dump(mode="json"), event.seq)

    return StreamingResponse(body(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)


@router.get(
    "/workflow-runs/{run_id}/result",
    summary="A finished run's result file (JSONL, one line per item)",
    response_class=Response,
)
async def get_result(request: Request, who: CurrentPrincipal, run_id: RunId) -> Response:
    engine = engine_of(request)
    run = await engine.get(who.tenant, run_id)
    spec = engine.registry.types.get(run.type)
    if spec is None or spec.result_steps is None:
        raise NotFoundError(f"{run.type} runs have no result file")
    if run.status not in FINISHED:
        raise ConflictError(f"run {run_id!r} is {run.status}; its result file comes when it ends")
    lines: list[Any] = await engine.step_values(who.tenant, run_id, spec.result_steps)
    content = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    return Response(
        content,
        media_type=JSONL,
        headers={"Content-Disposition": f'attachment; filename="{run_id}.jsonl"'},
    )
