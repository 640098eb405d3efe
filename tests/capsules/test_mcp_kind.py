"""Capsules of kind ``mcp``: an existing stdio MCP server run in the sandbox, its tools
discovered and pinned at install; a remote MCP server over streamable HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from somaagent.capsules.manifest import Manifest
from somaagent.capsules.package import Package, content_sha256, from_folder
from somaagent.capsules.service import CapsuleService
from somaagent.errors import ValidationError
from tests.fakes._server import run_asgi

pytestmark = pytest.mark.anyio

ECHO = Path(__file__).parent / "echo_mcp"
MARKER = Path("/tmp/somaagent-capsule-tests-rugpull")


async def test_stdio_server_in_the_sandbox(service: CapsuleService) -> None:
    MARKER.unlink(missing_ok=True)
    capsule, _ = await service.install_package("acme", from_folder(ECHO))
    assert [t.name for t in capsule.tools] == ["add", "echo"]
    assert all(t.sha256 for t in capsule.tools)
    assert capsule.tools[0].annotations["read_only"] is True
    ran = await service.execute("acme", "echo-mcp", tool="add", arguments={"a": 2, "b": 40})
    assert not ran.is_error, ran.error
    assert ran.structured == {"sum": 42} and ran.sandbox_tier == "bwrap"
    with pytest.raises(ValidationError, match="'x' is not of type 'number'"):
        await service.execute("acme", "echo-mcp", tool="add", arguments={"a": "x", "b": 1})
    try:
        MARKER.write_text("the server now describes add differently")
        pulled = await service.execute("acme", "echo-mcp", tool="add", arguments={"a": 1, "b": 1})
    finally:
        MARKER.unlink(missing_ok=True)
    assert pulled.is_error
    assert pulled.error is not None and "differs from the pinned one" in pulled.error


def _remote_app() -> Any:
    import mcp_types
    from mcp.server.lowlevel import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Mount

    async def list_tools(ctx: Any, params: Any) -> mcp_types.ListToolsResult:
        tool = mcp_types.Tool(
            name="shout",
            description="Upper-case the text.",
            input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
        )
        return mcp_types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: Any, params: Any) -> mcp_types.CallToolResult:
        text = str((params.arguments or {}).get("text", "")).upper()
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)])

    server: Any = Server("remote", on_list_tools=list_tools, on_call_tool=call_tool)
    manager = StreamableHTTPSessionManager(
        app=server,
        stateless=True,
        json_response=True,
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        async with manager.run():
            yield

    return Starlette(routes=[Mount("/mcp", app=manager.handle_request)], lifespan=lifespan)


@pytest.fixture(scope="module")
def remote_url() -> Iterator[str]:
    # an MCP client's lingering connection held the graceful shutdown for seconds
    with run_asgi(_remote_app(), lifespan="on", timeout_graceful_shutdown=0.2) as url:
        yield f"{url}/mcp/"


def _remote_package(url: str) -> Package:
    manifest = Manifest.model_validate(
        {"name": "remote", "version": "1.0.0", "kind": "mcp", "url": url, "description": "r"}
    )
    return Package(manifest=manifest.pinned(content_sha256(manifest, {})), files={})


async def test_remote_server_over_streamable_http(service: CapsuleService, remote_url: str) -> None:
    # loopback is refused unless the operator allows private networks
    with pytest.raises(ValidationError, match="private address"):
        await service.install_package("acme", _remote_package(remote_url))
    service.remote.allow_private = True
    capsule, _ = await service.install_package("acme", _remote_package(remote_url))
    assert [t.name for t in capsule.tools] == ["shout"]
    ran = await service.execute("acme", "remote", arguments={"text": "hi"})
    assert not ran.is_error, ran.error
    assert ran.text == "HI" and ran.sandbox_tier == "remote"
