"""json_extract's model calls are charged to the calling key, like a chat turn: a usage record
under the ``capsules`` endpoint, the spend in ``/v1/me``, and a 429 once the key's monthly
budget is spent (before any model call). The real gateway and ledger, the wire-format fake
provider."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from somaagent.accounts.tables import ApiKey, UsageRecord
from tests.capsules.conftest import Gateway
from tests.fakes.fixtures import FakeVendor

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


async def test_json_extract_is_charged_to_the_calling_key(
    gateway: Gateway, fake_openai: FakeVendor
) -> None:
    key = await gateway.new_key(name="extractor")
    client = await gateway.client_for(key)
    me = (await client.get("/v1/me")).json()
    assert (await client.post("/v1/capsules", json={"id": "json_extract"})).status_code == 201
    arguments = {"text": 'Ada: {"name": "Ada", "age": 36}', "schema": SCHEMA}
    done = await client.post("/v1/capsules/json_extract/execute", json={"arguments": arguments})
    assert not done.json()["is_error"], done.json()
    # A wrong answer is still a model call made: charged too.
    wrong = {"text": '{"name": "Ada"}', "schema": SCHEMA}
    failed = await client.post("/v1/capsules/json_extract/execute", json={"arguments": wrong})
    assert failed.json()["is_error"]

    await gateway.state.usage.flush()
    async with gateway.state.sessions() as session:
        rows = (
            await session.scalars(select(UsageRecord).where(UsageRecord.api_key_id == me["key_id"]))
        ).all()
    assert [(r.endpoint, r.requests) for r in rows] == [("capsules", 2)]
    assert rows[0].tenant_id == me["tenant"]
    assert rows[0].prompt_tokens > 0 and rows[0].completion_tokens > 0
    assert rows[0].cost_usd > 0
    gateway.state.usage.forget(me["key_id"])
    spent = (await client.get("/v1/me")).json()["spent_this_month_usd"]
    assert spent == pytest.approx(rows[0].cost_usd)
    # The admin key that made no call was charged nothing.
    async with gateway.state.sessions() as session:
        others = await session.scalars(
            select(UsageRecord).where(UsageRecord.api_key_id != me["key_id"])
        )
        assert others.all() == []


async def test_a_spent_budget_refuses_before_the_model_is_called(
    gateway: Gateway, fake_openai: FakeVendor
) -> None:
    key = await gateway.new_key(name="budgeted")
    client = await gateway.client_for(key)
    me = (await client.get("/v1/me")).json()
    async with gateway.state.sessions() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == me["key_id"]).values(monthly_budget_usd=0.0000001)
        )
        await session.commit()
    gateway.state.usage.forget(me["key_id"])  # as the admin API does after a budget change
    await client.post("/v1/capsules", json={"id": "json_extract"})
    arguments = {"text": '{"name": "Ada", "age": 36}', "schema": SCHEMA}
    first = await client.post("/v1/capsules/json_extract/execute", json={"arguments": arguments})
    assert first.status_code == 200 and not first.json()["is_error"]
    calls = len(fake_openai.requests)
    blocked = await client.post("/v1/capsules/json_extract/execute", json={"arguments": arguments})
    assert blocked.status_code == 429, blocked.text
    assert blocked.json()["type"] == "urn:somaagent:problem:budget-exceeded"
    assert "monthly budget" in blocked.json()["detail"]
    assert len(fake_openai.requests) == calls  # refused before the provider was asked
    # Tools that call no model still run for that key.
    await client.post("/v1/capsules", json={"id": "calculator"})
    calc = await client.post(
        "/v1/capsules/calculator/execute", json={"arguments": {"expression": "6*7"}}
    )
    assert calc.status_code == 200 and calc.json()["structured"] == {"result": 42}
