"""The usage ledger: calls summed per key and model, written in batches, never lost."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from somaagent.accounts.keys import Principal
from somaagent.accounts.tables import UsageRecord
from somaagent.types import Usage
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio


async def test_calls_are_summed_per_key_and_model(gateway: Gateway) -> None:
    ledger = gateway.state.usage
    who = Principal(key_id="key_a", name="a", tenant="default", scope="member")
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    for _ in range(3):
        ledger.record(who, endpoint="e", model="m1", provider="p", usage=usage, cost_usd=0.1)
    ledger.record(who, endpoint="e", model="m2", provider="p", usage=usage, cost_usd=0.2)
    assert (await ledger.spend(who)).spent_usd == pytest.approx(0.5)
    await ledger.flush()
    async with gateway.state.sessions() as session:
        rows = (
            await session.scalars(select(UsageRecord).where(UsageRecord.api_key_id == "key_a"))
        ).all()
    by_model = {r.model: r for r in rows}
    assert by_model["m1"].requests == 3
    assert by_model["m1"].prompt_tokens == 30
    assert by_model["m1"].cost_usd == pytest.approx(0.3)
    assert by_model["m2"].requests == 1
    ledger.forget("key_a")
    assert (await ledger.spend(who)).spent_usd == pytest.approx(0.5)  # now read from the table


async def test_a_failed_write_keeps_the_charges(gateway: Gateway) -> None:
    ledger = gateway.state.usage
    who = Principal(key_id="key_b", name="b", tenant="default", scope="member")
    usage = Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
    ledger.record(who, endpoint="e", model="m", provider="p", usage=usage, cost_usd=0.25)
    real = ledger.sessions

    def broken() -> object:
        raise RuntimeError("database down")

    ledger.sessions = broken  # type: ignore[assignment]
    try:
        with pytest.raises(RuntimeError):
            await ledger.flush()
    finally:
        ledger.sessions = real
    assert (await ledger.spend(who)).spent_usd == pytest.approx(0.25)
    await ledger.flush()
    async with gateway.state.sessions() as session:
        rows = (
            await session.scalars(select(UsageRecord).where(UsageRecord.api_key_id == "key_b"))
        ).all()
    assert [r.cost_usd for r in rows] == [pytest.approx(0.25)]
