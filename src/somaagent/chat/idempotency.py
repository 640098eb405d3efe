"""``Idempotency-Key`` on a message send: the first answer is stored and replayed.

A record is claimed before the user message is stored. A retry with the same key and the
same body gets the stored exchange; with another body, a 409. If the model call failed, the
record remembers the stored user message, and a retry runs the model again for that message
instead of storing a second one.

A claim in flight names its owner: the process (host, pid and a per-process boot id) and, in
that process, the task serving the request. A retry may take the claim over as soon as the
request is known dead: its task ended (the client hung up, the request failed) in this
process, or its process is gone from this host (``kill -9``, a crash, a restart). Only a claim
held by a process on another host is waited out, for :data:`STALE_IN_FLIGHT`. A take-over is
one conditional update, so two retries racing for a dead claim cannot both win.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
import weakref
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.chat.tables import IdempotencyRecord
from somaagent.db import new_id, utcnow
from somaagent.errors import BusyError, ConflictError, ValidationError

STALE_IN_FLIGHT = timedelta(minutes=10)
FAILED = 0  # status of a record whose user message is stored but whose model call failed
DONE = 201

_HOST = socket.gethostname()
_boot = uuid.uuid4().hex
# record id -> the task serving its request, in this process
_live: weakref.WeakValueDictionary[str, asyncio.Task[Any]] = weakref.WeakValueDictionary()


def _new_boot() -> None:
    global _boot
    _boot = uuid.uuid4().hex
    _live.clear()


os.register_at_fork(after_in_child=_new_boot)


def _owner() -> dict[str, Any]:
    return {"host": _HOST, "pid": os.getpid(), "boot": _boot}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _known_dead(record: IdempotencyRecord) -> bool:
    """Whether the request holding ``record`` in flight is known to have died."""
    owner = (record.response or {}).get("owner")
    if not isinstance(owner, dict):  # a claim from before owners were recorded
        return utcnow() - record.created_at >= STALE_IN_FLIGHT
    if owner.get("boot") == _boot:
        task = _live.get(record.id)
        return task is None or task.done()
    pid = owner.get("pid")
    if owner.get("host") == _HOST and isinstance(pid, int) and not _pid_alive(pid):
        return True
    return utcnow() - record.created_at >= STALE_IN_FLIGHT


def _hold(record_id: str) -> None:
    task = asyncio.current_task()
    if task is not None:
        _live[record_id] = task


async def claim(
    session: AsyncSession, who: Principal, conv_id: str, body: types.MessageCreate, key: str
) -> tuple[str, str | None] | types.MessageExchange:
    """Claim ``key``: the stored exchange to replay, or (record id, user message id to reuse)."""
    if not 0 < len(key) <= 255:
        raise ValidationError(
            "Idempotency-Key must be 1-255 characters",
            errors=[
                {"loc": ["header", "Idempotency-Key"], "msg": "bad length", "type": "value_error"}
            ],
        )
    digest = hashlib.sha256(
        (conv_id + "\n" + body.model_dump_json(exclude={"stream"})).encode()
    ).hexdigest()
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == who.tenant, IdempotencyRecord.key == key
        )
    )
    if record is None:
        record = IdempotencyRecord(
            id=new_id("idem"),
            tenant_id=who.tenant,
            key=key,
            request_hash=digest,
            response={"owner": _owner()},
        )
        session.add(record)
        try:
            await session.flush()
        except IntegrityError as exc:
            await session.rollback()
            raise BusyError("a request with this Idempotency-Key is still in progress") from exc
        _hold(record.id)
        return record.id, None
    if record.request_hash != digest:
        raise ConflictError("this Idempotency-Key was already used for a different request")
    if record.status_code is not None and record.status_code != FAILED:
        return types.MessageExchange.model_validate(record.response)
    if record.status_code is None and not _known_dead(record):
        raise BusyError("a request with this Idempotency-Key is still in progress")
    previous = (record.response or {}).get("message_id")
    await _take_over(session, record, previous)
    _hold(record.id)
    return record.id, previous


async def _take_over(
    session: AsyncSession, record: IdempotencyRecord, previous: str | None
) -> None:
    """Make this request the owner of ``record``, unless another retry just did."""
    seen: datetime = record.created_at
    response: dict[str, Any] = {"owner": _owner()}
    if previous is not None:
        response["message_id"] = previous
    condition: ColumnElement[bool] = IdempotencyRecord.status_code.is_(None)
    if record.status_code is not None:
        condition = IdempotencyRecord.status_code == record.status_code
    taken = await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record.id, IdempotencyRecord.created_at == seen, condition)
        .values(status_code=None, created_at=utcnow(), response=response)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 1) != 1:
        await session.rollback()
        raise BusyError("a request with this Idempotency-Key is still in progress")
    await session.refresh(record)


async def remember_message(session: AsyncSession, record_id: str, message_id: str) -> None:
    """Note the stored user message, so a retry after a failed model call reuses it."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None:
        record.response = {**(record.response or {}), "message_id": message_id}


async def complete(session: AsyncSession, record_id: str, exchange: types.MessageExchange) -> None:
    """Store the answer that retries with the same key get."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None:
        record.status_code = DONE
        record.response = exchange.model_dump(mode="json")
    _live.pop(record_id, None)


async def fail(session: AsyncSession, record_id: str, tenant: str) -> None:
    """Mark the model call failed: a retry runs it again for the stored user message."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None and record.tenant_id == tenant:
        record.status_code = FAILED
    _live.pop(record_id, None)
