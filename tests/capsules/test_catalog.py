"""The builtin catalog tools on the real gateway: memory_search over the memory service,
json_extract through the router and a provider, http_fetch behind its allow-list and SSRF
guard; and the sandbox tier's refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from somaagent.capsules.hosted import HostServices, address_allowed, host_allowed
from somaagent.capsules.package import from_folder
from somaagent.capsules.service import CapsuleService, SandboxPolicy
from somaagent.errors import PermissionDeniedError
from somaagent.memory.service import MemoryService
from tests.capsules.conftest import SANDBOX_ROOT
from tests.fakes.fixtures import FakeVendor
from tests.gateway.conftest import Gateway, swapped_memory

pytestmark = pytest.mark.anyio
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def memory(gateway: Gateway) -> AsyncIterator[MemoryService]:
    async with swapped_memory(gateway) as service:
        yield service


@sqlite_only
async def test_memory_search(gateway: Gateway, memory: MemoryService) -> None:
    client = gateway.client
    assert (await client.post("/v1/memory/collections", json={"name": "kb"})).status_code == 201
    docs = [
        {"text": "Cells divide by mitosis after copying their DNA.", "source": "cells.md"},
        {"text": "Stars fuse hydrogen into helium.", "source": "stars.md"},
    ]
    indexed = await client.post("/v1/memory/collections/kb/documents", json={"documents": docs})
    assert indexed.status_code == 201, indexed.text
    await client.post("/v1/capsules", json={"id": "memory_search"})
    found = await client.post(
        "/v1/capsules/memory_search/execute",
        json={"arguments": {"collection": "kb", "query": "how do cells divide", "k": 1}},
    )
    body = found.json()
    assert not body["is_error"], body
    assert body["sandbox_tier"] == "host"
    assert "mitosis" in body["structured"]["results"][0]["text"]

    other = await gateway.client_for(await gateway.new_key(tenant="globex"))
    await other.post("/v1/capsules", json={"id": "memory_search"})
    theirs = await other.post(
        "/v1/capsules/memory_search/execute",
        json={"arguments": {"collection": "kb", "query": "cells"}},
    )
    assert theirs.json()["is_error"] and "kb" in theirs.json()["error"]  # not their collection


@sqlite_only
async def test_json_extract_through_the_router(gateway: Gateway, fake_openai: FakeVendor) -> None:
    client = gateway.client
    await client.post("/v1/capsules", json={"id": "json_extract"})
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    # the fake model echoes the text back, so the answer holds the JSON the text holds
    done = await client.post(
        "/v1/capsules/json_extract/execute",
        json={"arguments": {"text": 'Ada: {"name": "Ada", "age": 36}', "schema": schema}},
    )
    body = done.json()
    assert not body["is_error"], body
    assert body["structured"]["data"] == {"name": "Ada", "age": 36}
    assert fake_openai.requests[-1].json["messages"][0]["role"] == "system"
    wrong = await client.post(
        "/v1/capsules/json_extract/execute",
        json={"arguments": {"text": '{"name": "Ada"}', "schema": schema}},
    )
    assert wrong.json()["is_error"] and "age" in wrong.json()["error"]


@sqlite_only
async def test_http_fetch_allow_list_and_ssrf_guard(gateway: Gateway) -> None:
    client = gateway.client
    await client.post("/v1/capsules", json={"id": "http_fetch"})
    off_list = await client.post(
        "/v1/capsules/http_fetch/execute", json={"arguments": {"url": "http://example.com/"}}
    )
    assert off_list.json()["is_error"]
    assert "not on the operator's allow-list" in off_list.json()["error"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
    ],
)
def test_ssrf_guard_addresses(address: str, allowed: bool) -> None:
    assert address_allowed(address, allow_private=False) is allowed


def test_host_allow_list() -> None:
    assert host_allowed("api.example.com", ["*.example.com"])
    assert not host_allowed("example.com", ["*.example.com"])
    assert not host_allowed("evil-example.com", ["*.example.com"])
    assert host_allowed("Example.COM.", ["example.com:443"])


async def test_http_fetch_reaches_loopback_only_when_allowed(
    service: CapsuleService, fake_openai: FakeVendor
) -> None:
    url = fake_openai.base_url + "/models"
    await service.install("acme", capsule_id="http_fetch")
    service.hosted.services = HostServices(http_hosts=["127.0.0.1"])
    refused = await service.execute("acme", "http_fetch", arguments={"url": url})
    assert refused.is_error and "private address" in (refused.error or "")
    service.hosted.services = HostServices(http_hosts=["127.0.0.1"], allow_private_networks=True)
    fetched = await service.execute("acme", "http_fetch", arguments={"url": url, "max_bytes": 20})
    assert not fetched.is_error, fetched.error
    assert fetched.structured is not None
    assert fetched.structured["status"] == 401 and fetched.structured["truncated"] is True
    assert len(fetched.structured["text"]) == 20


async def test_permissions_the_tier_cannot_enforce_are_refused(
    service: CapsuleService, tmp_path: Path
) -> None:
    folder = tmp_path / "netty"
    folder.mkdir()
    (folder / "tools.py").write_text("def ping():\n    return 'pong'\n")
    (folder / "capsule.yaml").write_text(
        "name: netty\nversion: 1.0.0\nkind: python\nentry: tools.py\n"
        "tools: [{name: ping}]\npermissions: {network: [example.com]}\n"
    )
    await service.install_package("acme", from_folder(folder))
    # bwrap enforces allow-lists (egress proxy, tests/capsules/test_egress.py); landlock cannot.
    landlock = CapsuleService(service.sessions, SandboxPolicy(root=SANDBOX_ROOT, tier="landlock"))
    with pytest.raises(PermissionDeniedError, match="allow-list of hosts"):
        await landlock.execute("acme", "netty")
    allowing = CapsuleService(
        service.sessions, SandboxPolicy(root=SANDBOX_ROOT, tier="landlock", allow_unconfined=True)
    )
    ran = await allowing.execute("acme", "netty")
    assert ran.text == "pong" and ran.sandbox_tier == "landlock"


async def test_rlimits_tier_runs_only_when_the_operator_allows(service: CapsuleService) -> None:
    await service.install("acme", capsule_id="calculator")
    weak = CapsuleService(service.sessions, SandboxPolicy(root=SANDBOX_ROOT, tier="rlimits"))
    with pytest.raises(PermissionDeniedError, match="confines neither network nor filesystem"):
        await weak.execute("acme", "calculator", arguments={"expression": "1+1"})
    allowed = CapsuleService(
        service.sessions, SandboxPolicy(root=SANDBOX_ROOT, tier="rlimits", allow_unconfined=True)
    )
    ran = await allowed.execute("acme", "calculator", arguments={"expression": "6*7"})
    assert ran.text == "42" and ran.sandbox_tier == "rlimits"
    listed, _ = await allowed.executions("acme")
    assert listed[0].sandbox_tier == "rlimits"
