"""``Idempotency-Key`` on a message send: the first answer is stored and replayed.

A record is claimed before the user message is stored. A retry with the same key and the
same body gets the stored exchange; with another body, a 409. If the model call failed, the
record remembers the stored user message, and a retry runs the model again for that message
instead of storing a second one. A claim left in flight by a crashed process goes stale after
:data:`STALE_IN_FLIGHT`.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from somaagent import types
from somaagent.accounts.keys import Principal
from somaagent.chat.tables import IdempotencyRecord
from somaagent.db import new_id, utcnow
from somaagent.errors import ConflictError, ValidationError

STALE_IN_FLIGHT = timedelta(minutes=10)
FAILED = 0  # status of a record whose user message is stored but whose model call failed
DONE = 201


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
            id=new_id("idem"), tenant_id=who.tenant, key=key, request_hash=digest
        )
        session.add(record)
        try:
            await session.flush()
        except IntegrityError as exc:
            await session.rollback()
            raise ConflictError("a request with this Idempotency-Key is still in progress") from exc
        return record.id, None
    if record.request_hash != digest:
        raise ConflictError("this Idempotency-Key was already used for a different request")
    if record.status_code is not None and record.status_code != FAILED:
        return types.MessageExchange.model_validate(record.response)
    previous = (record.response or {}).get("message_id")
    in_flight = record.status_code is None and utcnow() - record.created_at < STALE_IN_FLIGHT
    if in_flight:
        raise ConflictError("a request with this Idempotency-Key is still in progress")
    record.status_code = None
    record.created_at = utcnow()
    return record.id, previous


async def remember_message(session: AsyncSession, record_id: str, message_id: str) -> None:
    """Note the stored user message, so a retry after a failed model call reuses it."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None:
        record.response = {"message_id": message_id}


async def complete(session: AsyncSession, record_id: str, exchange: types.MessageExchange) -> None:
    """Store the answer that retries with the same key get."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None:
        record.status_code = DONE
        record.response = exchange.model_dump(mode="json")


async def fail(session: AsyncSession, record_id: str, tenant: str) -> None:
    """Mark the model call failed: a retry runs it again for the stored user message."""
    record = await session.get(IdempotencyRecord, record_id)
    if record is not None and record.tenant_id == tenant:
        record.status_code = FAILED
