"""API keys: hashed at rest, scoped by tenant, revocable."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from somaagent.accounts.tables import ApiKey
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio


async def test_missing_and_bad_keys_are_401(gateway: Gateway) -> None:
    anonymous = await gateway.client_for("")
    anonymous.headers.pop("Authorization")
    r = await anonymous.get("/v1/conversations")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["type"] == "urn:somaagent:problem:unauthenticated"
    bad = await gateway.client_for("soma_sk_" + "x" * 43)
    assert (await bad.get("/v1/conversations")).status_code == 401


async def test_keys_are_stored_hashed_only(gateway: Gateway) -> None:
    secret = await gateway.new_key(name="hash-check")
    async with gateway.state.sessions() as session:
        rows = (await session.scalars(select(ApiKey))).all()
    stored = [value for row in rows for value in (row.key_hash, row.prefix, row.name, row.id)]
    assert all(secret not in value for value in stored)
    assert all(len(row.key_hash) == 64 for row in rows)
    assert secret.startswith("soma_sk_")


async def test_me_reports_tenant_and_scope(gateway: Gateway) -> None:
    key = await gateway.new_key(tenant="acme", scope="member", name="ci")
    client = await gateway.client_for(key)
    me = (await client.get("/v1/me")).json()
    assert me["tenant"] == "acme"
    assert me["scope"] == "member"
    assert me["name"] == "ci"
    admin = (await gateway.client.get("/v1/me")).json()
    assert admin["scope"] == "admin"


async def test_other_tenants_objects_are_404_not_403(gateway: Gateway) -> None:
    alice = await gateway.client_for(await gateway.new_key(tenant="alice"))
    bob = await gateway.client_for(await gateway.new_key(tenant="bob"))
    conv = (await alice.post("/v1/conversations", json={"title": "private"})).json()
    url = f"/v1/conversations/{conv['id']}"
    for response in (
        await bob.get(url),
        await bob.delete(url),
        await bob.get(url + "/messages"),
        await bob.post(url + "/messages", json={"content": "hi"}),
    ):
        assert response.status_code == 404
    assert (await bob.get("/v1/conversations")).json()["data"] == []
    assert (await alice.get(url)).status_code == 200
    assert (await alice.get(url + "/messages")).json()["data"] == []


async def test_revoked_key_stops_working(gateway: Gateway) -> None:
    from somaagent.accounts import keys

    key = await gateway.new_key(name="temp")
    client = await gateway.client_for(key)
    assert (await client.get("/v1/me")).status_code == 200
    async with gateway.state.sessions() as session:
        info = (await keys.list_keys(session))[-1]
        await keys.revoke_key(session, info.id)
    gateway.state.key_cache.clear()
    assert (await client.get("/v1/me")).status_code == 401
