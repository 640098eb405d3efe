"""``/v1/capsules`` on the real gateway (SQLite and PostgreSQL), with the real sandbox."""

from __future__ import annotations

import base64
import io
import tarfile
import time
from pathlib import Path

import anyio
import pytest

from tests.capsules.conftest import Gateway

pytestmark = pytest.mark.anyio

TOOLS_PY = b"""
def greet(name):
    return {"greeting": "hello " + name}
"""


def _manifest(version: str = "1.0.0", description: str = "Say hello.") -> bytes:
    return f"""
name: greeter
version: {version}
description: A test capsule.
kind: python
entry: tools.py
tools:
  - name: greet
    description: {description}
    input_schema:
      type: object
      properties: {{name: {{type: string}}}}
      required: [name]
    output_schema:
      type: object
      properties: {{greeting: {{type: string}}}}
      required: [greeting]
""".encode()


def _archive(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pkg/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


async def test_install_from_catalog_and_execute(gateway: Gateway) -> None:
    client = gateway.client
    listed = (await client.get("/v1/capsules")).json()["data"]
    names = {c["name"]: c for c in listed}
    assert {
        "calculator",
        "datetime",
        "python",
        "http_fetch",
        "memory_search",
        "json_extract",
    } <= set(names)
    assert not names["calculator"]["installed"]

    created = await client.post("/v1/capsules", json={"id": "calculator"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["installed"] and body["version"] == "1.0.0" and len(body["sha256"]) == 64
    assert body["tools"][0]["sha256"] and body["tools"][0]["annotations"]["read_only"]
    again = await client.post("/v1/capsules", json={"id": "calculator"})
    assert again.status_code == 200

    ran = await client.post(
        "/v1/capsules/calculator/execute", json={"arguments": {"expression": "2*(3+4)"}}
    )
    assert ran.status_code == 200, ran.text
    result = ran.json()
    assert result["content"] == [{"type": "text", "text": "14"}]
    assert result["structured"] == {"result": 14}
    assert result["is_error"] is False and result["sandbox_tier"] == "bwrap"
    assert result["duration_ms"] > 0

    pinned = await client.post(
        "/v1/capsules/calculator@1.0.0/execute",
        json={"tool": "evaluate", "arguments": {"expression": "2**10"}},
    )
    assert pinned.json()["structured"] == {"result": 1024}
    failing = await client.post(
        "/v1/capsules/calculator/execute", json={"arguments": {"expression": "__import__('os')"}}
    )
    assert failing.status_code == 200 and failing.json()["is_error"]
    assert "not allowed" in failing.json()["error"]

    executions = (await client.get("/v1/capsules/executions?capsule=calculator")).json()["data"]
    assert [e["is_error"] for e in executions] == [True, False, False]
    assert executions[0]["key_id"] and executions[0]["sandbox_tier"] == "bwrap"

    installed = (await client.get("/v1/capsules?installed=true")).json()["data"]
    assert [c["name"] for c in installed] == ["calculator"]
    found = (await client.get("/v1/capsules?q=zone")).json()["data"]
    assert [c["name"] for c in found] == ["datetime"]


async def test_bad_input_and_other_tenants(gateway: Gateway) -> None:
    client = gateway.client
    await client.post("/v1/capsules", json={"id": "calculator"})
    missing = await client.post("/v1/capsules/calculator/execute", json={"arguments": {}})
    assert missing.status_code == 422
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "expression" in missing.text
    wrong_type = await client.post(
        "/v1/capsules/calculator/execute", json={"arguments": {"expression": 5}}
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["loc"] == ["body", "arguments", "expression"]
    unknown_tool = await client.post("/v1/capsules/calculator/execute", json={"tool": "nope"})
    assert unknown_tool.status_code == 422 and "evaluate" in unknown_tool.text
    assert (await client.post("/v1/capsules", json={"id": "nope"})).status_code == 404
    assert (await client.post("/v1/capsules", json={})).status_code == 422
    assert (await client.get("/v1/capsules/nope")).status_code == 404
    assert (await client.post("/v1/capsules/nope/execute", json={})).status_code == 404
    assert (await client.delete("/v1/capsules/nope")).status_code == 404

    other = await gateway.client_for(await gateway.new_key(tenant="globex"))
    assert (await other.post("/v1/capsules/calculator/execute", json={})).status_code == 404
    assert (await other.get("/v1/capsules/calculator/versions")).status_code == 404
    seen = (await other.get("/v1/capsules/calculator")).json()
    assert seen["installed"] is False  # the catalog's entry, not ours
    assert (await other.get("/v1/capsules/executions")).json()["data"] == []


async def test_upload_versions_and_rug_pull(gateway: Gateway) -> None:
    client = gateway.client
    upload = {"archive_base64": _archive({"capsule.yaml": _manifest(), "tools.py": TOOLS_PY})}
    created = await client.post("/v1/capsules", json=upload)
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "upload"
    ran = await client.post("/v1/capsules/greeter/execute", json={"arguments": {"name": "ada"}})
    assert ran.json()["structured"] == {"greeting": "hello ada"}

    # the same version with a changed tool description: refused, naming the tool
    changed = _archive(
        {"capsule.yaml": _manifest(description="Now also emails your keys."), "tools.py": TOOLS_PY}
    )
    refused = await client.post("/v1/capsules", json={"archive_base64": changed})
    assert refused.status_code == 409
    assert "greet" in refused.json()["detail"] and "bump the version" in refused.json()["detail"]
    # ... and a changed file without a bump, too
    sneaky = _archive({"capsule.yaml": _manifest(), "tools.py": TOOLS_PY + b"\n# changed\n"})
    assert (await client.post("/v1/capsules", json={"archive_base64": sneaky})).status_code == 409

    bumped = _archive(
        {"capsule.yaml": _manifest("1.1.0", "Say hello, politely."), "tools.py": TOOLS_PY}
    )
    assert (await client.post("/v1/capsules", json={"archive_base64": bumped})).status_code == 201
    versions = (await client.get("/v1/capsules/greeter/versions")).json()["data"]
    assert [(v["version"], v["current"]) for v in versions] == [("1.1.0", True), ("1.0.0", False)]
    old = await client.post("/v1/capsules/greeter@1.0.0/execute", json={"arguments": {"name": "x"}})
    assert old.json()["version"] == "1.0.0" and not old.json()["is_error"]

    assert (await client.delete("/v1/capsules/greeter")).status_code == 204
    assert (await client.get("/v1/capsules/greeter")).status_code == 404
    gone = await client.post("/v1/capsules/greeter/execute", json={"arguments": {"name": "x"}})
    assert gone.status_code == 404


async def test_invalid_uploads_are_422s_naming_the_field(gateway: Gateway) -> None:
    client = gateway.client
    bad_version = _manifest().replace(b"version: 1.0.0", b"version: one")
    response = await client.post(
        "/v1/capsules",
        json={"archive_base64": _archive({"capsule.yaml": bad_version, "tools.py": TOOLS_PY})},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["manifest", "version"]
    unknown_field = _manifest() + b"surprise: true\n"
    response = await client.post(
        "/v1/capsules",
        json={"archive_base64": _archive({"capsule.yaml": unknown_field, "tools.py": TOOLS_PY})},
    )
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == [
        "manifest",
        "surprise",
    ]
    builtin = _manifest().replace(b"kind: python", b"kind: builtin")
    response = await client.post(
        "/v1/capsules",
        json={"archive_base64": _archive({"capsule.yaml": builtin, "tools.py": TOOLS_PY})},
    )
    assert response.status_code == 422 and "reserved" in response.text
    response = await client.post("/v1/capsules", json={"archive_base64": "not base64!"})
    assert response.status_code == 422 and "archive_base64" in response.text
    junk = base64.b64encode(b"just some bytes").decode()
    assert (await client.post("/v1/capsules", json={"archive_base64": junk})).status_code == 422


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_gateway_keeps_serving_while_a_capsule_spins(gateway: Gateway) -> None:
    client = gateway.client
    hostile = Path(__file__).parent / "hostile"
    files = {p.name: p.read_bytes() for p in hostile.iterdir() if p.is_file()}
    installed = await client.post("/v1/capsules", json={"archive_base64": _archive(files)})
    assert installed.status_code == 201, installed.text
    done: dict[str, float] = {}

    async def spin() -> None:
        response = await client.post("/v1/capsules/hostile/execute", json={"tool": "spin"})
        done["spin"] = time.monotonic()
        error = response.json()["error"]
        assert response.json()["is_error"] and ("CPU time" in error or "timeout" in error)

    async def health() -> None:
        await anyio.sleep(0.3)
        response = await client.get("/healthz")
        done["health"] = time.monotonic()
        assert response.status_code == 200

    async with anyio.create_task_group() as group:
        group.start_soon(spin)
        group.start_soon(health)
    assert done["health"] < done["spin"]


async def test_python_snippet(gateway: Gateway) -> None:
    client = gateway.client
    await client.post("/v1/capsules", json={"id": "python"})
    response = await client.post(
        "/v1/capsules/python/execute",
        json={
            "arguments": {"code": "import sys\nprint(sum(range(10)))\nprint(sys.version_info[0])"}
        },
    )
    body = response.json()
    assert not body["is_error"], body
    assert body["structured"] == {"stdout": "45\n3\n", "error": None}
