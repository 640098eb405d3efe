"""``client.workflows``: start durable runs, follow them, cancel, resume and fork them.

::

    run = client.workflows.start("document_ingest", {"collection": "kb", "documents": docs})
    for event in client.workflows.stream_events(run.id):   # resumes itself after a cut
        print(event.seq, event.type, event.data)
    print(client.workflows.get(run.id).status)

    upload = client.workflows.upload(["notes/a.md", "notes/b.md"])   # stored before the answer
    client.workflows.start("document_ingest", {"collection": "kb", "uploads": [upload.id]})
    client.workflows.delete_upload(upload.id)   # 409 while a queued or running run names it

The calls are built here once, with no I/O. A ``start`` POST carries an ``Idempotency-Key``
(a fresh one unless ``id`` is given), so a retried start never makes a second run. Event
streams carry sequence ids: when the connection drops, :meth:`Workflows.stream_events`
reconnects with ``Last-Event-ID`` and continues with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from somaagent.errors import APIConnectionError
from somaagent.sdk._base import APICall, SSEDecoder
from somaagent.sdk._calls import drop_none, model_parser, no_content
from somaagent.types import Page
from somaagent.types.workflows import (
    FINISHED,
    WorkflowEvent,
    WorkflowRun,
    WorkflowStep,
    WorkflowType,
    WorkflowUpload,
)

__all__ = ["AsyncWorkflows", "Workflows"]

T = TypeVar("T")
RECONNECTS = 5


class _Sync(Protocol):
    def _call(self, call: APICall[T]) -> T: ...

    def _send(self, call: APICall[Any]) -> httpx.Response: ...


class _Async(Protocol):
    async def _call(self, call: APICall[T]) -> T: ...

    async def _send(self, call: APICall[Any]) -> httpx.Response: ...


def _run(run_id: str, suffix: str = "") -> str:
    return f"/v1/workflow-runs/{quote(run_id, safe='')}{suffix}"


def _list_of(cls: type[T]) -> Any:
    def parse(response: httpx.Response) -> builtins.list[T]:
        return [cls.model_validate(item) for item in response.json()["data"]]  # type: ignore[attr-defined]

    return parse


def _jsonl(response: httpx.Response) -> builtins.list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def types_call() -> APICall[builtins.list[WorkflowType]]:
    return APICall("GET", "/v1/workflows", _list_of(WorkflowType))


def start_call(
    type: str, input: Mapping[str, Any] | None, *, id: str | None
) -> APICall[WorkflowRun]:
    path = f"/v1/workflows/{quote(type, safe='')}/runs"
    body = drop_none(input=dict(input or {}), id=id)
    # With an id the run id is the idempotency; the key then only names this request.
    return APICall("POST", path, model_parser(WorkflowRun), json=body)


def upload_call(paths: Iterable[str | os.PathLike[str]]) -> APICall[WorkflowUpload]:
    """The upload of these files (read now; the request carries their bytes)."""
    files = []
    for path in map(Path, paths):
        kind = mimetypes.guess_type(path.name)[0] or "text/plain"
        files.append(("files", (path.name, path.read_bytes(), kind)))
    if not files:
        raise ValueError("upload at least one file")
    return APICall(
        "POST", "/v1/workflows/document_ingest/uploads", model_parser(WorkflowUpload), files=files
    )


def _upload(upload_id: str) -> str:
    return f"/v1/workflows/document_ingest/uploads/{quote(upload_id, safe='')}"


def get_upload_call(upload_id: str) -> APICall[WorkflowUpload]:
    return APICall("GET", _upload(upload_id), model_parser(WorkflowUpload))


def delete_upload_call(upload_id: str) -> APICall[None]:
    return APICall("DELETE", _upload(upload_id), no_content)


def get_call(run_id: str) -> APICall[WorkflowRun]:
    return APICall("GET", _run(run_id), model_parser(WorkflowRun))


def list_call(
    *,
    type: str | None,
    status: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> APICall[Page[WorkflowRun]]:
    params = {
        "type": type,
        "status": status,
        "created_after": created_after.isoformat() if created_after else None,
        "created_before": created_before.isoformat() if created_before else None,
        "limit": limit,
        "cursor": cursor,
    }
    return APICall("GET", "/v1/workflow-runs", model_parser(Page[WorkflowRun]), params=params)


def steps_call(run_id: str) -> APICall[builtins.list[WorkflowStep]]:
    return APICall("GET", _run(run_id, "/steps"), _list_of(WorkflowStep))


def action_call(run_id: str, action: str, body: Any = None) -> APICall[WorkflowRun]:
    return APICall("POST", _run(run_id, f"/{action}"), model_parser(WorkflowRun), json=body)


def result_call(run_id: str) -> APICall[builtins.list[dict[str, Any]]]:
    return APICall("GET", _run(run_id, "/result"), _jsonl)


def events_call(run_id: str, after: int, follow: bool) -> APICall[httpx.Response]:
    params = {"after": after, "follow": "true" if follow else "false"}
    return APICall("GET", _run(run_id, "/events"), lambda r: r, params=params, stream=True)


def _event(decoded: Any) -> WorkflowEvent:
    return WorkflowEvent.model_validate(decoded.data)


class Workflows:
    """``client.workflows``: durable runs of the gateway's workflow types."""

    def __init__(self, client: _Sync) -> None:
        self._client = client

    def types(self) -> builtins.list[WorkflowType]:
        """The registered workflow types and their input schemas."""
        return self._client._call(types_call())

    def start(
        self,
        type: str,
        input: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        wait: bool = False,
    ) -> WorkflowRun:
        """Start a run (``queued``); the same ``id`` returns the same run.

        With ``wait`` the call follows the run's events and returns it once finished.

        Raises:
            ValidationError: an unknown type or invalid input (``errors`` names the field).
            ConflictError: ``id`` names a run with another type or input.
        """
        run = self._client._call(start_call(type, input, id=id))
        return self.wait(run.id) if wait else run

    def wait(self, run_id: str) -> WorkflowRun:
        """The run once it has finished (follows its events, then reads its status)."""
        for _ in self.stream_events(run_id):
            pass
        run = self.get(run_id)
        while run.status not in FINISHED:  # the outcome is recorded just after the last event
            time.sleep(0.05)
            run = self.get(run_id)
        return run

    def upload(self, paths: Iterable[str | os.PathLike[str]]) -> WorkflowUpload:
        """Store files on the gateway for a later ``document_ingest`` run; pass the answer's
        ``id`` in ``input["uploads"]``. The files are stored durably before this returns.

        Raises:
            ValidationError: a file is not UTF-8 text (``errors`` names ``files.N``).
            APIError: 413 when the files together exceed the gateway's request size limit.
        """
        return self._client._call(upload_call(paths))

    def get_upload(self, upload_id: str) -> WorkflowUpload:
        """A stored upload: its files and ``expires_at`` (``NotFoundError`` once it is gone)."""
        return self._client._call(get_upload_call(upload_id))

    def delete_upload(self, upload_id: str) -> None:
        """Delete an upload now (documents already indexed from it stay).

        Raises:
            NotFoundError: no such upload (or another tenant's).
            ConflictError: a queued or running run names it; the message names the run.
        """
        self._client._call(delete_upload_call(upload_id))

    def get(self, run_id: str) -> WorkflowRun:
        return self._client._call(get_call(run_id))

    def list(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 20,
    ) -> Iterator[WorkflowRun]:
        """Every matching run, newest first, fetched a page at a time."""
        for page in self.pages(
            type=type,
            status=status,
            created_after=created_after,
            created_before=created_before,
            page_size=page_size,
        ):
            yield from page.data

    def pages(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 20,
    ) -> Iterator[Page[WorkflowRun]]:
        """The matching runs, one :class:`Page` at a time."""
        cursor: str | None = None
        while True:
            page = self._client._call(
                list_call(
                    type=type,
                    status=status,
                    created_after=created_after,
                    created_before=created_before,
                    limit=page_size,
                    cursor=cursor,
                )
            )
            yield page
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    def steps(self, run_id: str) -> builtins.list[WorkflowStep]:
        return self._client._call(steps_call(run_id))

    def cancel(self, run_id: str) -> WorkflowRun:
        """Cancel a queued or running run (``ConflictError`` once it has finished)."""
        return self._client._call(action_call(run_id, "cancel"))

    def resume(self, run_id: str) -> WorkflowRun:
        """Resume a cancelled run from its last finished step."""
        return self._client._call(action_call(run_id, "resume"))

    def fork(self, run_id: str, from_step: int) -> WorkflowRun:
        """A new run reusing the steps before ``from_step`` (a ``step_id`` of :meth:`steps`)."""
        return self._client._call(action_call(run_id, "fork", {"from_step": from_step}))

    def result(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """A finished run's result file (``batch_chat``: one dict per item), parsed."""
        return self._client._call(result_call(run_id))

    def stream_events(
        self, run_id: str, *, after: int = -1, follow: bool = True
    ) -> Iterator[WorkflowEvent]:
        """The run's events after ``after``; with ``follow``, until the run ends.

        A dropped connection is reopened after the last event seen (up to 5 times in a row).
        """
        last, failures = after, 0
        while True:
            try:
                response = self._client._send(events_call(run_id, last, follow))
                try:
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
                        decoded = decoder.decode(line)
                        if decoded is not None:
                            event = _event(decoded)
                            last, failures = event.seq, 0
                            yield event
                finally:
                    response.close()
                return
            except (httpx.TransportError, APIConnectionError):
                failures += 1
                if failures > RECONNECTS:
                    raise
                time.sleep(min(2.0, 0.1 * 2**failures))


class AsyncWorkflows:
    """``client.workflows`` of :class:`~somaagent.sdk.AsyncClient`."""

    def __init__(self, client: _Async) -> None:
        self._client = client

    async def types(self) -> builtins.list[WorkflowType]:
        return await self._client._call(types_call())

    async def start(
        self,
        type: str,
        input: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        wait: bool = False,
    ) -> WorkflowRun:
        """Start a run; see :meth:`Workflows.start`."""
        run = await self._client._call(start_call(type, input, id=id))
        return await self.wait(run.id) if wait else run

    async def wait(self, run_id: str) -> WorkflowRun:
        async for _ in self.stream_events(run_id):
            pass
        run = await self.get(run_id)
        while run.status not in FINISHED:
            await asyncio.sleep(0.05)
            run = await self.get(run_id)
        return run

    async def upload(self, paths: Iterable[str | os.PathLike[str]]) -> WorkflowUpload:
        """Store files for a later ``document_ingest`` run; see :meth:`Workflows.upload`."""
        return await self._client._call(upload_call(paths))

    async def get_upload(self, upload_id: str) -> WorkflowUpload:
        """A stored upload; see :meth:`Workflows.get_upload`."""
        return await self._client._call(get_upload_call(upload_id))

    async def delete_upload(self, upload_id: str) -> None:
        """Delete an upload now; see :meth:`Workflows.delete_upload`."""
        await self._client._call(delete_upload_call(upload_id))

    async def get(self, run_id: str) -> WorkflowRun:
        return await self._client._call(get_call(run_id))

    async def list(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 20,
    ) -> AsyncIterator[WorkflowRun]:
        """Every matching run, newest first, fetched a page at a time."""
        async for page in self.pages(
            type=type,
            status=status,
            created_after=created_after,
            created_before=created_before,
            page_size=page_size,
        ):
            for run in page.data:
                yield run

    async def pages(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 20,
    ) -> AsyncIterator[Page[WorkflowRun]]:
        cursor: str | None = None
        while True:
            page = await self._client._call(
                list_call(
                    type=type,
                    status=status,
                    created_after=created_after,
                    created_before=created_before,
                    limit=page_size,
                    cursor=cursor,
                )
            )
            yield page
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def steps(self, run_id: str) -> builtins.list[WorkflowStep]:
        return await self._client._call(steps_call(run_id))

    async def cancel(self, run_id: str) -> WorkflowRun:
        return await self._client._call(action_call(run_id, "cancel"))

    async def resume(self, run_id: str) -> WorkflowRun:
        return await self._client._call(action_call(run_id, "resume"))

    async def fork(self, run_id: str, from_step: int) -> WorkflowRun:
        return await self._client._call(action_call(run_id, "fork", {"from_step": from_step}))

    async def result(self, run_id: str) -> builtins.list[dict[str, Any]]:
        return await self._client._call(result_call(run_id))

    async def stream_events(
        self, run_id: str, *, after: int = -1, follow: bool = True
    ) -> AsyncIterator[WorkflowEvent]:
        """The run's events; see :meth:`Workflows.stream_events`."""
        last, failures = after, 0
        while True:
            try:
                response = await self._client._send(events_call(run_id, last, follow))
                try:
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        decoded = decoder.decode(line)
                        if decoded is not None:
                            event = _event(decoded)
                            last, failures = event.seq, 0
                            yield event
                finally:
                    await response.aclose()
                return
            except (httpx.TransportError, APIConnectionError):
                failures += 1
                if failures > RECONNECTS:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))
