"""Authentication: the ``Authorization: Bearer soma_sk_...`` header (or ``x-api-key``) to
a :class:`~somaagent.gateway.keys.Principal`, with the per-key rate limit.

Verified keys are cached for a few seconds by their hash, so the hot path does no database
read; a revoked key stops working within that time.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from somaagent.errors import AuthenticationError, PermissionDeniedError
from somaagent.gateway.keys import Principal, authenticate, hash_key
from somaagent.gateway.state import GatewayState

CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000


def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.headers.get("x-api-key")


async def require_principal(request: Request) -> Principal:
    """The caller, or a 401 problem; also takes a rate-limit token for the key."""
    state = get_state(request)
    key = _presented_key(request)
    if not key:
        raise AuthenticationError(
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hash_key(key)
    now = time.monotonic()
    cached = state.key_cache.get(digest)
    if cached is not None and cached[1] > now:
        principal = cached[0]
    else:
        async with state.sessions() as session:
            found = await authenticate(session, key)
        if found is None:
            raise AuthenticationError(
                "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = found
        if len(state.key_cache) >= _CACHE_MAX:
            state.key_cache.clear()
        state.key_cache[digest] = (principal, now + CACHE_SECONDS)
    state.rate_limiter.check(principal.key_id)
    request.state.principal = principal
    return principal


async def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if principal.scope != "admin":
        raise PermissionDeniedError("this operation needs an admin key")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
State = Annotated[GatewayState, Depends(get_state)]
