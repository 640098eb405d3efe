"""API keys: generation, hashing, lookup, creation and revocation.

A key looks like ``soma_sk_<43 url-safe characters>`` (256 bits of randomness) so it is easy
to recognise in a secret scanner. Only its SHA-256 is stored: the key is high-entropy, so a
fast hash is safe (no dictionary to attack) and lets every request look the key up by an
indexed column without a slow KDF on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from somaagent.accounts.tables import ApiKey
from somaagent.db import Tenant, new_id, utcnow
from somaagent.errors import NotFoundError, ValidationError
from somaagent.types import ApiKeyInfo, Scope

KEY_PREFIX = "soma_sk_"
SCOPES: tuple[Scope, ...] = ("admin", "member")
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name, tenant and scope."""

    key_id: str
    name: str
    tenant: str
    scope: Scope


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and 20 < len(value) < 200


def _validate(name: str, tenant: str, scope: str) -> None:
    if not name.strip():
        raise ValidationError("name must not be empty", errors=[_err("name", "empty")])
    if not tenant or len(tenant) > 64 or not all(c.isalnum() or c in "-_." for c in tenant):
        raise ValidationError(
            "tenant must be 1-64 letters, digits, '-', '_' or '.'",
            errors=[_err("tenant", "invalid tenant id")],
        )
    if scope not in SCOPES:
        raise ValidationError(
            f"scope must be one of {', '.join(SCOPES)}", errors=[_err("scope", "invalid")]
        )


def _err(field: str, msg: str) -> dict[str, object]:
    return {"loc": [field], "msg": msg, "type": "value_error"}


def to_info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        tenant=row.tenant_id,
        scope=row.scope,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        monthly_budget_usd=row.monthly_budget_usd,
    )


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    tenant: str = DEFAULT_TENANT,
    scope: str = "member",
    monthly_budget_usd: float | None = None,
) -> tuple[ApiKeyInfo, str]:
    """Create a key (and its tenant if new); return its info and the secret, shown once."""
    _validate(name, tenant, scope)
    _validate_budget(monthly_budget_usd)
    if await session.get(Tenant, tenant) is None:
        session.add(Tenant(id=tenant))
        await session.flush()  # no ORM relationship orders the inserts, so flush the tenant first
    secret = generate_key()
    row = ApiKey(
        id=new_id("key"),
        tenant_id=tenant,
        name=name.strip(),
        scope=scope,
        prefix=secret[: len(KEY_PREFIX) + 4],
        key_hash=hash_key(secret),
        created_at=utcnow(),
        monthly_budget_usd=monthly_budget_usd,
    )
    session.add(row)
    await session.commit()
    return to_info(row), secret


async def list_keys(session: AsyncSession, *, tenant: str | None = None) -> list[ApiKeyInfo]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if tenant is not None:
        query = query.where(ApiKey.tenant_id == tenant)
    return [to_info(row) for row in (await session.scalars(query)).all()]


async def revoke_key(
    session: AsyncSession, key_id: str, *, tenant: str | None = None
) -> ApiKeyInfo:
    """Revoke a key by id (or by its prefix); revoking twice keeps the first time."""
    query = select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id))
    if tenant is not None:
        query = query.where(ApiKey.tenant_id == tenant)
    rows = (await session.scalars(query)).all()
    if len(rows) != 1:
        raise NotFoundError(f"no API key {key_id!r}" if not rows else f"{key_id!r} is ambiguous")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.commit()
        _note_revocation()
    return to_info(row)


_revocations = 0


def _note_revocation() -> None:
    global _revocations
    _revocations += 1


def revocations() -> int:
    """How many keys this process has revoked: a key cache that saw another count drops what
    it holds, so a revocation takes effect on the process's next request."""
    return _revocations


def _validate_budget(value: float | None) -> None:
    if value is not None and not 0 <= value < 1e9:
        raise ValidationError(
            "the monthly budget must be a number of USD, 0 or more",
            errors=[_err("monthly_budget_usd", "out of range")],
        )


async def set_budget(
    session: AsyncSession, key_id: str, monthly_budget_usd: float | None
) -> ApiKeyInfo:
    """Set (or with ``None`` remove) a key's monthly budget in USD."""
    _validate_budget(monthly_budget_usd)
    rows = (
        await session.scalars(
            select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id))
        )
    ).all()
    if len(rows) != 1:
        raise NotFoundError(f"no API key {key_id!r}" if not rows else f"{key_id!r} is ambiguous")
    rows[0].monthly_budget_usd = monthly_budget_usd
    await session.commit()
    return to_info(rows[0])


async def count_active_admin_keys(session: AsyncSession) -> int:
    rows = await session.scalars(
        select(ApiKey.id).where(ApiKey.scope == "admin", ApiKey.revoked_at.is_(None))
    )
    return len(rows.all())


async def authenticate(session: AsyncSession, key: str) -> Principal | None:
    """The principal for a presented key, or None for an unknown or revoked one."""
    if not looks_like_key(key):
        return None
    digest = hash_key(key)
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    # constant-time comparison of what we looked up, against timing probes of the index
    if not hmac.compare_digest(row.key_hash, digest):
        return None
    return Principal(key_id=row.id, name=row.name, tenant=row.tenant_id, scope=row.scope)  # type: ignore[arg-type]
