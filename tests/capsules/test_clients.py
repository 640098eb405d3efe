"""The capsule clients against the real gateway on loopback: ``soma capsule``, both SDK
clients, and the official ``mcp`` client at ``/mcp``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import mcp_types
import pytest
from click.testing import CliRunner
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from somaagent import AsyncClient, Client
from somaagent.cli import main
from somaagent.errors import ConflictError, NotFoundError, ValidationError
from tests.cli.gateway import Gateway, serve_gateway
from tests.fakes.fixtures import FakeVendor

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Gateway]:
    with serve_gateway(tmp_path_factory.mktemp("gateway"), fake_openai) as running:
        yield running


@pytest.fixture
def soma(served: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SOMA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SOMA_API_KEY", served.admin_key)
    monkeypatch.setenv("SOMA_BASE_URL", served.base_url)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_cli_done_when(soma: CliRunner, tmp_path: Path) -> None:
    installed = soma.invoke(main, ["capsule", "install", "calculator"])
    assert installed.exit_code == 0, installed.output
    assert "installed calculator 1.0.0" in installed.output
    result = soma.invoke(main, ["capsule", "execute", "calculator", "--arg", "expression=2*(3+4)"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "14"

    # a new capsule: scaffold, edit, install from the folder, execute
    created = soma.invoke(main, ["capsule", "init", "mytool"])
    assert created.exit_code == 0, created.output
    tools = tmp_path / "mytool" / "tools.py"
    tools.write_text(tools.read_text().replace('f"hello {name}"', 'f"hi there, {name}!"'))
    assert (tmp_path / "mytool" / "test_tools.py").is_file()
    installed = soma.invoke(main, ["capsule", "install", "./mytool"])
    assert installed.exit_code == 0, installed.output
    ran = soma.invoke(main, ["capsule", "execute", "mytool", "hello", "--arg", "name=Ada"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout) == {"greeting": "hi there, Ada!"}
    as_json = soma.invoke(
        main, ["capsule", "execute", "mytool", "--input", "-", "--json"], input='{"name": "Bo"}'
    )
    assert json.loads(as_json.stdout)["structured"] == {"greeting": "hi there, Bo!"}

    # the same version with changed code is refused
    tools.write_text(tools.read_text().replace("hi there", "howdy"))
    again = soma.invoke(main, ["capsule", "install", "./mytool"])
    assert again.exit_code == 1 and "bump the version" in again.output

    listed = json.loads(soma.invoke(main, ["capsule", "list", "--installed", "--json"]).stdout)
    assert {c["name"] for c in listed} == {"calculator", "mytool"}
    shown = soma.invoke(main, ["capsule", "show", "calculator"])
    assert "evaluate" in shown.stdout and "sha256" in shown.stdout
    failed = soma.invoke(main, ["capsule", "execute", "calculator", "--arg", "expression=1/0"])
    assert failed.exit_code == 1 and "division by zero" in failed.output
    unread = soma.invoke(main, ["capsule", "execute", "calculator", "--input", "nope.json"])
    assert unread.exit_code == 1, unread.output
    assert "error: --input nope.json: cannot read it" in unread.output
    assert "Traceback" not in unread.output
    removed = soma.invoke(main, ["capsule", "remove", "mytool", "--json"])
    assert removed.exit_code == 0 and json.loads(removed.stdout) == {"removed": "mytool"}
    scaffold = soma.invoke(main, ["capsule", "init", "other", "--json"])
    assert json.loads(scaffold.stdout)["files"] == ["capsule.yaml", "tools.py", "test_tools.py"]
    assert soma.invoke(main, ["capsule", "init", "other"]).exit_code == 1  # exists already
    missing = soma.invoke(main, ["capsule", "execute", "mytool", "--arg", "name=x"])
    assert missing.exit_code == 3


def test_sync_sdk(served: Gateway, tmp_path: Path) -> None:
    with Client(api_key=served.admin_key, base_url=served.base_url) as client:
        capsule = client.capsules.install("datetime")
        assert capsule.installed and [t.name for t in capsule.tools] == ["now", "convert"]
        result = client.capsules.execute(
            "datetime", "convert", {"time": "2026-01-01T12:00:00", "to_timezone": "Asia/Tokyo"}
        )
        assert not result.is_error, result.error
        assert result.structured == {"iso": "2026-01-01T21:00:00+09:00", "timezone": "Asia/Tokyo"}
        assert client.capsules.get("datetime").version == "1.0.0"
        assert [v.version for v in client.capsules.versions("datetime")] == ["1.0.0"]
        assert any(c.name == "datetime" and c.installed for c in client.capsules.list())
        assert client.capsules.executions("datetime").data[0].id == result.id
        with pytest.raises(ValidationError):
            client.capsules.execute("datetime", "convert", {"time": 5})
        with pytest.raises(NotFoundError):
            client.capsules.install("no-such-capsule")
        client.capsules.uninstall("datetime")
        with pytest.raises(NotFoundError):
            client.capsules.execute("datetime")


async def test_async_sdk(served: Gateway, tmp_path: Path) -> None:
    folder = tmp_path / "adder"
    folder.mkdir()
    (folder / "capsule.yaml").write_text(
        "name: adder\nversion: 1.0.0\nkind: python\nentry: tools.py\n"
        "tools:\n  - name: add\n    input_schema: {type: object}\n"
    )
    (folder / "tools.py").write_text("def add(a, b):\n    return a + b\n")
    async with AsyncClient(api_key=served.admin_key, base_url=served.base_url) as client:
        capsule = await client.capsules.install(folder)
        assert capsule.name == "adder" and capsule.source == "upload"
        result = await client.capsules.execute("adder", arguments={"a": 2, "b": 3})
        assert result.text == "5" and result.structured == {"result": 5}
        (folder / "capsule.yaml").write_text(
            (folder / "capsule.yaml")
            .read_text()
            .replace("name: add\n", "name: add\n    description: x\n")
        )
        with pytest.raises(ConflictError):
            await client.capsules.install(folder)
        assert "adder" in [c.name for c in await client.capsules.list(installed=True)]
        await client.capsules.uninstall("adder")


async def test_mcp_endpoint_with_the_official_client(served: Gateway) -> None:
    with Client(api_key=served.admin_key, base_url=served.base_url) as client:
        client.capsules.install("calculator")
    headers = {"Authorization": f"Bearer {served.admin_key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(f"{served.base_url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        names = [tool.name for tool in listed.tools]
        assert "calculator.evaluate" in names
        tool = next(t for t in listed.tools if t.name == "calculator.evaluate")
        assert tool.annotations is not None and tool.annotations.read_only_hint
        assert tool.output_schema is not None
        result = await session.call_tool("calculator.evaluate", {"expression": "2*(3+4)"})
        assert isinstance(result, mcp_types.CallToolResult)
        assert not result.is_error
        assert result.structured_content == {"result": 14}
        assert result.content[0].text == "14"  # type: ignore[union-attr]
        failed = await session.call_tool("calculator.evaluate", {"expression": "nope()"})
        assert isinstance(failed, mcp_types.CallToolResult) and failed.is_error
        unknown = await session.call_tool("nothing.here", {})
        assert isinstance(unknown, mcp_types.CallToolResult) and unknown.is_error

    async with httpx2.AsyncClient(timeout=10) as http:
        refused = await http.post(
            f"{served.base_url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")


async def test_mcp_calls_charge_the_callers_key(served: Gateway) -> None:
    headers = {"Authorization": f"Bearer {served.admin_key}"}
    with Client(api_key=served.admin_key, base_url=served.base_url) as client:
        client.capsules.install("json_extract")
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        before = (await http.get(f"{served.base_url}/v1/me")).json()["spent_this_month_usd"]
        async with (
            streamable_http_client(f"{served.base_url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool(
                "json_extract.extract",
                {"text": '{"name": "Ada"}', "schema": {"type": "object"}},
            )
            assert isinstance(result, mcp_types.CallToolResult) and not result.is_error
        after = (await http.get(f"{served.base_url}/v1/me")).json()["spent_this_month_usd"]
    assert after > before
