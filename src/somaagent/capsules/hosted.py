"""The catalog's ``builtin`` tools, which the gateway runs itself because they use its
services: ``memory_search`` (the memory service's search), ``json_extract`` (a model through
the router, charged to the calling key's usage and checked against its monthly budget like a
chat turn) and ``http_fetch`` (HTTP with a host allow-list and an SSRF guard).

The capsules package imports no gateway code: the app factory hands in the services as plain
callables (:class:`HostServices`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpcore

from somaagent.accounts.keys import Principal
from somaagent.accounts.usage import UsageLedger
from somaagent.capsules.manifest import ToolSpec
from somaagent.capsules.netguard import (
    NetworkRefused,
    address_allowed,
    host_allowed,
    resolve_allowed,
)
from somaagent.capsules.runner import Outcome, schema_problem
from somaagent.types import Usage

__all__ = ["HostServices", "HostedTools", "ModelAnswer", "address_allowed", "host_allowed"]

MemorySearch = Callable[[str, str, str, int], Awaitable[list[dict[str, Any]]]]
"""``(tenant, collection, query, k) -> [{id, text, score, metadata}]``."""
TIER = "host"
USAGE_ENDPOINT = "capsules"
"""The ``endpoint`` of the usage records builtin tools' model calls are charged under."""


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """One model call's answer and what it cost."""

    text: str
    model: str
    """The model's name in the gateway's catalog."""
    provider: str
    usage: Usage
    cost_usd: float


Complete = Callable[[str, str | None, list[dict[str, str]]], Awaitable[ModelAnswer]]
"""``(tenant, model or None, messages) -> the answer``."""


@dataclass(slots=True)
class HostServices:
    """What the gateway lends the builtin tools, and the operator's network rules."""

    memory_search: MemorySearch | None = None
    complete: Complete | None = None
    http_hosts: list[str] = field(default_factory=list)
    """Hosts ``http_fetch`` may reach (``example.com``, ``*.example.com``); empty: none."""
    allow_private_networks: bool = False
    """Let ``http_fetch`` reach loopback, link-local and private addresses."""
    usage: UsageLedger | None = None
    """Where model calls are charged (to the calling key) and budgets checked."""


class ToolFailure(Exception):
    """A builtin tool's failure, reported as an ``is_error`` result."""


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself and connects only to an allowed address: the check and the
    connection use the same address, so DNS cannot answer differently in between."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve_allowed(host, port, allow_private=self.allow_private)
        except NetworkRefused as exc:
            raise ToolFailure(str(exc)) from exc
        return await self.inner.connect_tcp(
            addresses[0],
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class HostedTools:
    """Runs the builtin tools for one gateway."""

    def __init__(self, services: HostServices) -> None:
        self.services = services

    async def call(
        self,
        capsule: str,
        tool: ToolSpec,
        arguments: dict[str, Any],
        *,
        tenant: str,
        timeout_s: float,
        who: Principal | None = None,
    ) -> Outcome:
        """Run one builtin tool for ``tenant``; model calls are charged to ``who``'s key.

        Raises :class:`~somaagent.errors.BudgetExceededError` (before any model call) when
        ``who``'s key has spent its monthly budget.
        """
        started = time.perf_counter()
        handler = {
            ("http_fetch", "fetch"): self._fetch,
            ("memory_search", "search"): self._search,
            ("json_extract", "extract"): self._extract,
        }.get((capsule, tool.name))
        if handler is None:
            return Outcome.failed(
                f"{capsule} has no builtin tool {tool.name!r}", tier=TIER, started=started
            )
        try:
            with anyio.fail_after(timeout_s):
                value = await handler(tenant, who, arguments)
        except TimeoutError:
            return Outcome.failed(
                f"{capsule}: it ran past its {timeout_s:g} s timeout", tier=TIER, started=started
            )
        except ToolFailure as exc:
            return Outcome.failed(f"{capsule}: {exc}", tier=TIER, started=started)
        problem = schema_problem(tool.output_schema, value)
        if problem is not None:
            return Outcome.failed(
                f"{capsule}: output does not match its schema: {problem}",
                tier=TIER,
                started=started,
            )
        return Outcome(
            content=[{"type": "text", "text": json.dumps(value, ensure_ascii=False)}],
            structured=value,
            duration_ms=(time.perf_counter() - started) * 1000,
            sandbox_tier=TIER,
        )

    async def _fetch(
        self, tenant: str, who: Principal | None, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        url = str(arguments["url"])
        max_bytes = int(arguments.get("max_bytes", 65536))
        async with httpcore.AsyncConnectionPool(
            network_backend=_GuardedBackend(self.services.allow_private_networks)
        ) as pool:
            for _ in range(4):  # the request and up to three redirects, each checked again
                parts = urlsplit(url)
                host = parts.hostname or ""
                if parts.scheme not in ("http", "https") or not host:
                    raise ToolFailure(f"not an http(s) URL: {url}")
                if not host_allowed(host, self.services.http_hosts):
                    raise ToolFailure(
                        f"host {host} is not on the operator's allow-list "
                        "(SOMA_CAPSULES_HTTP_HOSTS)"
                    )
                body = bytearray()
                truncated = False
                try:
                    async with pool.stream(
                        "GET", url, headers=[(b"user-agent", b"SomaAgent-http_fetch/1")]
                    ) as response:
                        location = _header(response.headers, b"location")
                        if response.status in (301, 302, 303, 307, 308) and location:
                            url = urljoin(url, location)
                            continue
                        async for chunk in response.aiter_stream():
                            body.extend(chunk)
                            if len(body) > max_bytes:
                                truncated = True
                                break
                except httpcore.TimeoutException as exc:
                    raise ToolFailure(f"{host} timed out") from exc
                except (
                    httpcore.NetworkError,
                    httpcore.ProtocolError,
                    httpcore.UnsupportedProtocol,
                ) as exc:
                    raise ToolFailure(f"cannot fetch {url}: {exc}") from exc
                content_type = _header(response.headers, b"content-type") or ""
                return {
                    "url": url,
                    "status": response.status,
                    "content_type": content_type,
                    "text": bytes(body[:max_bytes]).decode(
                        _charset(content_type), errors="replace"
                    ),
                    "truncated": truncated,
                }
        raise ToolFailure("too many redirects")

    async def _search(
        self, tenant: str, who: Principal | None, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        if self.services.memory_search is None:
            raise ToolFailure("the memory service is not available on this gateway")
        try:
            results = await self.services.memory_search(
                tenant,
                str(arguments["collection"]),
                str(arguments["query"]),
                int(arguments.get("k", 5)),
            )
        except Exception as exc:  # a missing collection or a store failure is the tool's error
            raise ToolFailure(
                getattr(exc, "message", None) or str(exc) or type(exc).__name__
            ) from exc
        return {"results": results}

    async def _extract(
        self, tenant: str, who: Principal | None, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        if self.services.complete is None:
            raise ToolFailure("no model is available on this gateway")
        ledger = self.services.usage
        if ledger is not None and who is not None:
            await ledger.check_budget(who)  # a spent budget is the caller's 429, as in chat
        schema = arguments["schema"]
        messages = [
            {
                "role": "system",
                "content": "Extract the requested data from the user's text. Answer with one JSON "
                "value that matches this JSON Schema and nothing else:\n"
                + json.dumps(schema)
                + ("\n" + str(arguments["instructions"]) if arguments.get("instructions") else ""),
            },
            {"role": "user", "content": str(arguments["text"])},
        ]
        try:
            answered = await self.services.complete(tenant, arguments.get("model"), messages)
        except Exception as exc:  # provider failures end as the tool's error, not a 500
            raise ToolFailure(
                f"the model call failed: {getattr(exc, 'message', None) or exc}"
            ) from exc
        if ledger is not None and who is not None:
            # Charged once the model answered, whatever the answer holds: the call was made.
            ledger.record(
                who,
                endpoint=USAGE_ENDPOINT,
                model=answered.model,
                provider=answered.provider,
                usage=answered.usage,
                cost_usd=answered.cost_usd,
            )
        answer, model = answered.text, answered.model
        data = _first_json(answer)
        if data is _NOTHING:
            raise ToolFailure(f"the model's answer held no JSON: {answer[:200]!r}")
        problem = schema_problem(schema, data)
        if problem is not None:
            raise ToolFailure(f"the model's JSON does not match the schema: {problem}")
        return {"data": data, "model": model}


_NOTHING = object()


def _first_json(text: str) -> Any:
    """The first JSON value in a model's answer (fences and prose around it ignored)."""
    fenced = re.search(r"```(?:json)?\s*(.+?)```", text, re.S)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start, char in enumerate(candidate):
            if char in "{[":
                try:
                    return decoder.raw_decode(candidate, start)[0]
                except ValueError:
                    continue
    return _NOTHING


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _charset(content_type: str) -> str:
    match = re.search(r"charset=([\w-]+)", content_type, re.I)
    return match.group(1) if match else "utf-8"
