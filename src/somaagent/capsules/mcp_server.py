"""The tenant's installed capsules as one MCP server (``/mcp`` on the gateway).

Built on the official package's low-level :class:`~mcp.server.lowlevel.Server` and its
streamable-HTTP session manager in stateless mode: each HTTP request carries its API key, so
each is served on its own, for the tenant that key names. Tools are named ``capsule.tool``
(``calculator.evaluate``) so two capsules may both have a tool called ``search``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from somaagent._version import __version__
from somaagent.accounts.keys import Principal
from somaagent.capsules.service import CapsuleService
from somaagent.errors import APIError

__all__ = ["build_session_manager", "split_tool_name"]

Who = Callable[[ServerRequestContext[Any, Any]], Principal]
"""``ctx -> principal``: the caller of one request, as the HTTP layer authenticated it."""


def split_tool_name(name: str) -> tuple[str, str]:
    """``calculator.evaluate`` -> ``("calculator", "evaluate")``."""
    capsule, _, tool = name.partition(".")
    return capsule, tool


def build_session_manager(service: CapsuleService, who: Who) -> StreamableHTTPSessionManager:
    """The session manager to mount at ``/mcp``; run it (``async with manager.run()``)."""

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        tenant = who(ctx).tenant
        tools = []
        for manifest, tool in await service.tools(tenant):
            definition = tool.to_mcp()
            definition["name"] = f"{manifest.name}.{tool.name}"
            definition["_meta"] = {
                "somaagent/version": manifest.version,
                "somaagent/sha256": tool.sha256,
            }
            tools.append(mcp_types.Tool.model_validate(definition))
        return mcp_types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        principal = who(ctx)
        capsule, tool = split_tool_name(params.name)
        try:
            execution = await service.execute(
                principal.tenant,
                capsule,
                tool=tool or None,
                arguments=params.arguments or {},
                principal=principal,
            )
        except APIError as exc:  # an unknown tool or bad arguments: the call's error
            return mcp_types.CallToolResult(
                content=[mcp_types.TextContent(type="text", text=exc.message)], is_error=True
            )
        return mcp_types.CallToolResult.model_validate(
            {
                "content": execution.content,
                "structuredContent": execution.structured,
                "isError": execution.is_error,
                "_meta": {
                    "somaagent/execution": execution.id,
                    "somaagent/sandbox_tier": execution.sandbox_tier,
                    "somaagent/duration_ms": execution.duration_ms,
                },
            }
        )

    server: Server[Any] = Server(
        "somaagent-capsules",
        version=__version__,
        instructions="The capsules installed for your tenant; tools are named capsule.tool.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    return StreamableHTTPSessionManager(
        app=server,
        stateless=True,
        json_response=True,
        # Callers authenticate with an API key header, not an ambient cookie, so a rebound
        # DNS name gains a page nothing it could not already send.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
