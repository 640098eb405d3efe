"""Who the presented API key belongs to."""

from __future__ import annotations

from fastapi import APIRouter

from somaagent.gateway.auth import CurrentPrincipal

router = APIRouter(prefix="/v1", tags=["auth"])


@router.get("/me")
async def me(principal: CurrentPrincipal) -> dict[str, str]:
    return {
        "key_id": principal.key_id,
        "name": principal.name,
        "tenant": principal.tenant,
        "scope": principal.scope,
    }
