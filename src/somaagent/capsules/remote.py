"""Capsules of kind ``mcp`` with a ``url``: a remote MCP server over streamable HTTP, called
with the official client. The URL's host must resolve to public addresses unless the operator
allows private networks (the same SSRF rule as ``http_fetch``), and every call checks that
the server still describes the tool as it was pinned at install.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from somaagent.capsules.hosted import address_allowed
from somaagent.capsules.manifest import Manifest, ToolSpec, tool_sha256
from somaagent.capsules.runner import Outcome, finish, tool_from_mcp

__all__ = ["RemoteCaller"]

TIER = "remote"


class RemoteError(Exception):
    """The remote server cannot be used (refused address, unreachable, bad answer)."""


class RemoteCaller:
    """Lists and calls tools of remote MCP servers."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        client_factory: Callable[[], httpx2.AsyncClient] | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.client_factory = client_factory

    async def _check_url(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        try:
            infos = await anyio.getaddrinfo(host, None)
        except OSError as exc:
            raise RemoteError(f"cannot resolve {host}: {exc}") from exc
        for info in infos:
            if not address_allowed(str(info[4][0]), allow_private=self.allow_private):
                raise RemoteError(
                    f"{host} resolves to a loopback, link-local or private address; the operator "
                    "has not allowed those (SOMA_CAPSULES_ALLOW_PRIVATE_NETWORKS)"
                )

    def _client(self, timeout_s: float) -> httpx2.AsyncClient:
        if self.client_factory is not None:
            return self.client_factory()
        return httpx2.AsyncClient(timeout=timeout_s)

    @contextlib.asynccontextmanager
    async def _session(self, url: str, timeout_s: float) -> AsyncIterator[ClientSession]:
        async with (
            self._client(timeout_s) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    async def list_tools(self, url: str, timeout_s: float) -> list[ToolSpec]:
        """The server's tools, as specs to pin."""
        if self.client_factory is None:
            await self._check_url(url)
        with anyio.fail_after(timeout_s):
            async with self._session(url, timeout_s) as session:
                listed = await session.list_tools()
        return [tool_from_mcp(tool) for tool in listed.tools]

    async def call(self, manifest: Manifest, tool: ToolSpec, arguments: dict[str, Any]) -> Outcome:
        """Call ``tool`` on the remote server after checking its pinned definition."""
        assert manifest.url is not None
        started = time.perf_counter()
        timeout = manifest.permissions.timeout_s
        try:
            if self.client_factory is None:
                await self._check_url(manifest.url)
            with anyio.fail_after(timeout):
                async with self._session(manifest.url, timeout) as session:
                    listed = await session.list_tools()
                    served = {item.name: item for item in listed.tools}
                    if tool.name not in served:
                        raise RemoteError(f"the server no longer offers tool {tool.name!r}")
                    if tool_sha256(tool_from_mcp(served[tool.name])) != tool.sha256:
                        raise RemoteError(
                            f"the server's definition of tool {tool.name!r} differs from "
                            "the pinned one (a changed tool needs a new capsule version)"
                        )
                    result = await session.call_tool(tool.name, arguments)
        except TimeoutError:
            return Outcome.failed(
                f"{manifest.name}: it ran past its {timeout:g} s timeout",
                tier=TIER,
                started=started,
            )
        except RemoteError as exc:
            return Outcome.failed(f"{manifest.name}: {exc}", tier=TIER, started=started)
        except Exception as exc:  # an unreachable or misbehaving server is the call's error
            return Outcome.failed(
                f"{manifest.name}: the MCP server failed: {exc}", tier=TIER, started=started
            )
        assert isinstance(result, mcp_types.CallToolResult)
        return finish(result, tool, tier=TIER, started=started)
