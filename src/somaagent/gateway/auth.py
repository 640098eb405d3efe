"""Authentication: the ``Authorization: Bearer soma_sk_...`` header (or ``x-api-key``) to
a :class:`~somaagent.accounts.keys.Principal`, with the per-key rate limit.

Verified keys are cached for ``CACHE_SECONDS`` (1 s) by their hash, so the hot path does no
database read. A key revoked in this process (:func:`~somaagent.accounts.keys.revoke_key`)
stops working on the next request: the cache is dropped when the process's revocation count
moves. A key revoked elsewhere (``soma admin keys revoke`` on the database, another replica)
stops working within ``CACHE_SECONDS``, the documented bound. When a cached entry expires
under load, one database read refreshes it and the requests that arrive meanwhile wait for
that read instead of each making their own.

Every dependency here is an ``async def``: FastAPI runs a plain ``def`` dependency in a worker
thread, which on the hot path cost more than the work it does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import Depends, Request

from somaagent.accounts.keys import Principal, authenticate, hash_key, revocations
from somaagent.errors import AuthenticationError, PermissionDeniedError
from somaagent.gateway.state import GatewayState

CACHE_SECONDS = 1.0
"""How long a verified key is trusted without a database read: the most a revocation made
outside this process (another process, another replica) takes to be seen. At one read per
key per second, a busy key costs the database next to nothing."""
_CACHE_MAX = 10_000

# The process's revocation count each gateway state's cache was filled under, by id(state).
_generations: dict[int, int] = {}

# Database lookups in flight, by (gateway state, key hash): concurrent requests with the same
# uncached key share one. Entries leave when their lookup ends.
_lookups: dict[tuple[int, str], asyncio.Task[Principal | None]] = {}


def get_state(request: Request) -> GatewayState:
    """The running gateway's state (a plain function, for code that has the request)."""
    state: GatewayState = request.app.state.gateway
    return state


async def current_state(request: Request) -> GatewayState:
    """The running gateway's state, as a dependency (``async`` so it runs on the loop)."""
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
    """The caller, or a 401 problem; also takes a rate-limit token for the key.

    A plain coroutine as well as a dependency: routes that skip dependency injection call it
    directly. The principal is also left on ``request.state.principal``.
    """
    principal = await authenticate_request(request)
    get_state(request).rate_limiter.check(principal.key_id)
    request.state.principal = principal
    return principal


async def authenticate_request(request: Request) -> Principal:
    """The caller of ``request``, or a 401 problem; takes no rate-limit token.

    The gateway's middleware calls it before a request body is read, so a caller without a
    valid key learns that first, whatever the body holds.
    """
    state = get_state(request)
    key = _presented_key(request)
    if not key:
        raise AuthenticationError(
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    generation = revocations()
    if _generations.get(id(state)) != generation:  # a key was revoked in this process
        state.key_cache.clear()
        _generations[id(state)] = generation
    digest = hash_key(key)
    cached = state.key_cache.get(digest)
    if cached is not None and cached[1] > time.monotonic():
        principal = cached[0]
    else:
        found = await _lookup(state, key, digest)
        if found is None:
            raise AuthenticationError(
                "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = found
    return principal


async def _lookup(state: GatewayState, key: str, digest: str) -> Principal | None:
    """Read the key from the database, sharing the read with concurrent requests for it."""
    slot = (id(state), digest)
    task = _lookups.get(slot)
    if task is None:
        task = asyncio.ensure_future(_read_and_cache(state, key, digest))
        _lookups[slot] = task
        task.add_done_callback(lambda done: _forget(slot, done))
    # shield: a caller that goes away (a client hanging up) leaves the read to the others
    return await asyncio.shield(task)


def _forget(slot: tuple[int, str], task: asyncio.Task[Principal | None]) -> None:
    if _lookups.get(slot) is task:
        del _lookups[slot]
    if not task.cancelled():
        task.exception()  # retrieved here, so an error nobody awaited is not logged twice


async def _read_and_cache(state: GatewayState, key: str, digest: str) -> Principal | None:
    async with state.sessions() as session:
        found = await authenticate(session, key)
    if found is not None:
        if len(state.key_cache) >= _CACHE_MAX:
            state.key_cache.clear()
        state.key_cache[digest] = (found, time.monotonic() + CACHE_SECONDS)
    return found


async def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """The caller if it holds an admin key, else a 403 problem."""
    if principal.scope != "admin":
        raise PermissionDeniedError("this operation needs an admin key")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
State = Annotated[GatewayState, Depends(current_state)]
