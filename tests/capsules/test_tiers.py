"""What a sandbox tier cannot enforce is refused, not faked: a capsule with a network
allow-list on the ``landlock`` or ``rlimits`` tier (and any capsule on ``rlimits``) is a 403
``capsule-permissions-unenforceable`` naming the tier and what it needs, on the real gateway,
before any process starts; installing it is allowed. Nothing runs here, so no tier needs to
work on this machine."""

from __future__ import annotations

import base64
import io
import tarfile

import pytest

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio

UNENFORCEABLE = "urn:somaagent:problem:capsule-permissions-unenforceable"


def _archive(network: str) -> str:
    files = {
        "capsule.yaml": (
            "name: netty\nversion: 1.0.0\nkind: python\nentry: tools.py\n"
            f"tools: [{{name: ping}}]\npermissions: {{network: {network}}}\n"
        ).encode(),
        "tools.py": b"def ping():\n    return 'pong'\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "settings_overrides", [{"capsules_sandbox": "landlock"}, {"capsules_sandbox": "rlimits"}]
)
async def test_an_allow_list_the_tier_cannot_enforce_is_a_403_naming_what_it_needs(
    gateway: Gateway, settings_overrides: dict[str, str]
) -> None:
    tier = settings_overrides["capsules_sandbox"]
    client = gateway.client
    installed = await client.post(
        "/v1/capsules", json={"archive_base64": _archive("[example.com]")}
    )
    assert installed.status_code == 201, installed.text
    refused = await client.post("/v1/capsules/netty/execute", json={"tool": "ping"})
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"] == UNENFORCEABLE
    detail = problem["detail"]
    assert f"the {tier} tier" in detail and "bubblewrap" in detail, detail
    assert "SOMA_CAPSULES_ALLOW_UNCONFINED=true" in detail
    if tier == "landlock":
        assert "not an allow-list of hosts (permissions.network: example.com)" in detail
        assert "apt-get install bubblewrap" in detail
        assert installed.json()["name"] == "netty"
    executions = (await client.get("/v1/capsules/executions")).json()["data"]
    assert executions == []  # refused before anything ran or was recorded
