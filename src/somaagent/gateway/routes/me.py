"""Who the presented API key belongs to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from somaagent.gateway.auth import CurrentPrincipal, State

router = APIRouter(prefix="/v1", tags=["auth"])


@router.get("/me")
async def me(principal: CurrentPrincipal, state: State) -> dict[str, Any]:
    """The key: its id, name, tenant, scope, and this month's spend against its budget."""
    spend = await state.usage.spend(principal)
    return {
        "key_id": principal.key_id,
        "name": principal.name,
        "tenant": principal.tenant,
        "scope": principal.scope,
        "spent_this_month_usd": spend.spent_usd,
        "monthly_budget_usd": spend.budget_usd,
    }
