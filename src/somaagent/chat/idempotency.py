"""``Idempotency-Key`` on a message send: the first answer is stored and replayed.

A record is claimed before the user message is stored. A retry with the same key and the
same body gets the stored exchange; with another body, a 409. If the model call failed, the
record remembers the stored user message, and a retry runs the model again for that message
instead of storing a second one.

A claim in flight names its owner: the process (host, pid and a per-process boot id) and, in
that process, the task serving the request. A retry may take the claim over as soon as the
request is known dead: its task ended (the client hung up, the request failed) in this
process, or its process is gone from this host (``kill -9``, a crash, a restart). A claim held
by a process on another host cannot be checked that way, so its owner keeps it alive: every
:data:`HEARTBEAT` it moves the claim's stamp (``created_at``) forward (:func:`keep_alive`), and
a claim whose stamp is older than :data:`STALE_AFTER_BEATS` heartbeats is taken as dead (its
host crashed, or lost the database). A claim written by a gateway from before heartbeats is
waited out for :data:`STALE_IN_FLIGHT`. A take-over is one conditional update on the stamp, so
two retries racing for a dead claim cannot both win, and a heartbeat landing first makes the
take-over fail (busy): its owner is alive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import uuid
import weakref
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.chat.tables import IdempotencyRecord
from somaagent.db import new_id, utcnow
from somaagent.errors import BusyError, ConflictError, ValidationError

STALE_IN_FLIGHT = timedelta(minutes=10)
"""How long a claim without heartbeats (written by an older gateway) is waited out."""
HEARTBEAT = timedelta(seconds=15)
"""How often the process serving a claimed request moves the claim's stamp forward."""
STALE_AFTER_BEATS = 4
"""Heartbeats missed before a claim held on another host is taken as dead (a minute)."""
FAILED = 0  # status of a record whose user message is stored but whose model call failed
DONE = 201

_HOST = socket.gethostname()
_boot = uuid.uuid4().hex
# record id -> the task serving its request, in this process
_live: weakref.WeakValueDictionary[str, asyncio.Task[Any]] = weakref.WeakValueDictionary()
_beating: dict[str, asyncio.Task[None]] = {}  # record id -> its heartbeat, in this process
log = logging.getLogger(__name__)


def _new_boot() -> None:
    global _boot
    _boot = uuid.uuid4().hex
    _live.clear()


os.register_at_fork(after_in_child=_new_boot)


def _owner() -> dict[str, Any]:
    return {
        "host": _HOST,
        "pid": os.getpid(),
        "boot": _boot,
        "heartbeat_s": HEARTBEAT.total_seconds(),
    }


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
    beat = owner.get("heartbeat_s")
    if isinstance(beat, int | float) and beat > 0:
        return utcnow() - record.created_at >= STALE_AFTER_BEATS * timedelta(seconds=beat)
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


def keep_alive(sessions: async_sessionmaker[AsyncSession], record_id: str) -> None:
    """Start moving the committed claim ``record_id``'s stamp forward every :data:`HEARTBEAT`,
    for as long as this process's task serving it runs and the claim is still in flight."""
    task = asyncio.get_running_loop().create_task(_beat(sessions, record_id))
    _beating[record_id] = task

    def forget(done: asyncio.Task[None]) -> None:
        if _beating.get(record_id) is done:
            del _beating[record_id]

    task.add_done_callback(forget)


def _stop_beat(record_id: str) -> None:
    task = _beating.pop(record_id, None)
    if task is not None:
        task.cancel()


async def stop_heartbeats() -> None:
    """Cancel this process's heartbeats (the gateway is stopping: its claims go stale)."""
    tasks = list(_beating.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _beat(sessions: async_sessionmaker[AsyncSession], record_id: str) -> None:
    async with sessions() as session:
        stamp = await session.scalar(
            select(IdempotencyRecord.created_at).where(
                IdempotencyRecord.id == record_id, IdempotencyRecord.status_code.is_(None)
            )
        )
    while stamp is not None:
        await asyncio.sleep(HEARTBEAT.total_seconds())
        holder = _live.get(record_id)
        if holder is None or holder.done():
            return  # answered, failed or abandoned: let the claim go stale
        now = utcnow()
        try:
            async with sessions() as session:
                moved = await session.execute(
                    update(IdempotencyRecord)
                    .where(
                        IdempotencyRecord.id == record_id,
                        IdempotencyRecord.status_code.is_(None),
                        IdempotencyRecord.created_at == stamp,
                    )
                    .values(created_at=now)
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
        except Exception as exc:  # the database is away: try again at the next beat
            log.warning("idempotency claim %s: heartbeat not written: %s", record_id, exc)
            continue
        if getattr(moved, "rowcount", 1) != 1:
            return  # finished, or taken over by a retry that judged it dead
        stamp = now


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
    _stop_beat(record_id)


async def fail(session: AsyncSession, record_id: str, tenant: str) -> None:
    """Mark the model call failed: a retry runs it again for the stored user message."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None and record.tenant_id == tenant:
        record.status_code = FAILED
    _live.pop(record_id, None)
    _stop_beat(record_id)
