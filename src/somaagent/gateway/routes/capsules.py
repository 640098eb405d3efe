"""``/v1/capsules``: install, list, remove and execute capsules; ``/mcp``: the tenant's
installed capsules as an MCP server (streamable HTTP, authenticated by API key).

The router's lifespan makes the :class:`CapsuleService` once the gateway's state exists
(FastAPI runs an included router's lifespan inside the app's) and runs the MCP session
manager for as long as the app runs.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi import Path as PathParam
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from somaagent.accounts.keys import Principal
from somaagent.capsules.hosted import HostServices, ModelAnswer
from somaagent.capsules.manifest import NAME_PATTERN
from somaagent.capsules.mcp_server import build_session_manager
from somaagent.capsules.service import CapsuleService, SandboxPolicy, decode_archive
from somaagent.errors import APIError, ServiceUnavailableError
from somaagent.gateway import problems
from somaagent.gateway.auth import CurrentPrincipal, get_state, require_principal
from somaagent.gateway.state import GatewayState
from somaagent.llm import cost
from somaagent.llm.base import ChatMessage, ChatRequest
from somaagent.types import Page
from somaagent.types.capsules import (
    Capsule,
    CapsuleInstall,
    CapsuleVersion,
    ExecuteRequest,
    Execution,
)
from somaagent.types.memory import SearchRequest

__all__ = ["MCPEndpoint", "router"]

logger = logging.getLogger(__name__)


def _host_services(app: FastAPI, gateway: GatewayState) -> HostServices:
    settings = gateway.settings

    async def memory_search(
        tenant: str, collection: str, query: str, k: int
    ) -> list[dict[str, Any]]:
        found = await app.state.gateway.memory.search(
            tenant, collection, SearchRequest(query=query, k=k)
        )
        return [
            {
                "id": hit.id,
                "text": hit.text,
                "score": hit.score,
                "metadata": getattr(hit, "metadata", None) or {},
            }
            for hit in found.data
        ]

    async def complete(
        tenant: str, model: str | None, messages: list[dict[str, str]]
    ) -> ModelAnswer:
        spec = gateway.pool.resolve(model, field="arguments.model")
        adapter = await gateway.pool.adapter(spec)
        answer = await adapter.complete(
            ChatRequest(
                messages=[cast(ChatMessage, dict(m)) for m in messages],
                model=spec.provider_model_id,
                max_tokens=1024,
                temperature=0.0,
            )
        )
        return ModelAnswer(
            text=answer.content,
            model=spec.name,
            provider=spec.provider,
            usage=answer.usage,
            cost_usd=cost.cost_usd(spec, answer.usage),
        )

    return HostServices(
        memory_search=memory_search,
        complete=complete,
        http_hosts=list(getattr(settings, "capsules_http_hosts", []) or []),
        allow_private_networks=bool(getattr(settings, "capsules_allow_private_networks", False)),
        usage=gateway.usage,
    )


def make_service(app: FastAPI) -> CapsuleService:
    """The capsule service for a started gateway, from its settings."""
    gateway: GatewayState = app.state.gateway
    settings = gateway.settings
    root = (
        getattr(settings, "capsules_dir", None)
        or Path(tempfile.gettempdir()) / "somaagent-capsules"
    )
    policy = SandboxPolicy(
        root=Path(root),
        tier=getattr(settings, "capsules_sandbox", "auto"),
        allow_unconfined=bool(getattr(settings, "capsules_allow_unconfined", False)),
        warm_pool=int(getattr(settings, "capsules_warm_pool", 0) or 0),
        egress_mb=int(getattr(settings, "capsules_egress_mb", 64) or 64),
    )
    return CapsuleService(gateway.sessions, policy, _host_services(app, gateway))


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        service = make_service(app)
    except OSError as exc:  # an unusable sandbox folder: the rest of the gateway still serves
        logger.error("capsules are unavailable: %s (set SOMA_CAPSULES_DIR)", exc)
        yield
        return
    app.state.capsules = service
    manager = build_session_manager(service, _mcp_caller)
    app.state.capsules_mcp = manager
    async with manager.run(), service.running():
        yield


router = APIRouter(tags=["capsules"], lifespan=_lifespan)
PREFIX = "/v1/capsules"


def get_capsules(request: Request) -> CapsuleService:
    service = getattr(request.app.state, "capsules", None)
    if not isinstance(service, CapsuleService):
        raise ServiceUnavailableError("the capsule service is not running")
    return service


Capsules = Annotated[CapsuleService, Depends(get_capsules)]
Name = Annotated[str, PathParam(pattern=NAME_PATTERN, description="the capsule's name")]
Ref = Annotated[str, PathParam(max_length=140, description="NAME or NAME@VERSION")]


def _split_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    return name, version or None


@router.get(PREFIX)
async def list_capsules(
    who: CurrentPrincipal,
    capsules: Capsules,
    installed: Annotated[
        bool | None, Query(description="only installed (true) or not (false)")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="match in name or description")
    ] = None,
) -> Page[Capsule]:
    """The tenant's installed capsules and the catalog's others."""
    return Page[Capsule](data=await capsules.listing(who.tenant, installed=installed, query=q))


@router.post(PREFIX, status_code=status.HTTP_201_CREATED, responses={200: {"model": Capsule}})
async def install_capsule(
    body: CapsuleInstall, who: CurrentPrincipal, capsules: Capsules, response: Response
) -> Capsule:
    """Install a catalog capsule by id, or an uploaded archive (201; 200 when unchanged)."""
    archive = decode_archive(body.archive_base64) if body.archive_base64 is not None else None
    capsule, created = await capsules.install(
        who.tenant, capsule_id=body.id, archive=archive, who=who.key_id
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return capsule


@router.get(PREFIX + "/executions")
async def list_executions(
    who: CurrentPrincipal,
    capsules: Capsules,
    capsule: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[Execution]:
    """The tenant's recorded tool calls, newest first."""
    data, next_cursor = await capsules.executions(
        who.tenant, capsule=capsule, limit=limit, cursor=cursor
    )
    return Page[Execution](data=data, next_cursor=next_cursor, has_more=next_cursor is not None)


@router.get(PREFIX + "/{name}")
async def get_capsule(name: Name, who: CurrentPrincipal, capsules: Capsules) -> Capsule:
    """One capsule: the installed version, else the catalog's."""
    return await capsules.get(who.tenant, name)


@router.get(PREFIX + "/{name}/versions")
async def capsule_versions(
    name: Name, who: CurrentPrincipal, capsules: Capsules
) -> Page[CapsuleVersion]:
    """Every stored version of the tenant's capsule, newest first."""
    return Page[CapsuleVersion](data=await capsules.versions(who.tenant, name))


@router.delete(PREFIX + "/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def uninstall_capsule(name: Name, who: CurrentPrincipal, capsules: Capsules) -> Response:
    """Uninstall (the stored versions stay, immutable)."""
    await capsules.uninstall(who.tenant, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(PREFIX + "/{ref}/execute")
async def execute_capsule(
    ref: Ref, body: ExecuteRequest, who: CurrentPrincipal, capsules: Capsules
) -> Execution:
    """Call one tool (default: the first) of an installed capsule, in its sandbox."""
    name, version = _split_ref(ref)
    return await capsules.execute(
        who.tenant,
        name,
        version=version,
        tool=body.tool,
        arguments=body.arguments,
        principal=who,
    )


def _mcp_caller(ctx: Any) -> Principal:
    principal: Principal = ctx.request.scope["state"]["soma_principal"]
    return principal


class MCPEndpoint:
    """``/mcp``: authenticate the API key, then hand the request to the MCP session manager.

    A class, so Starlette treats it as an ASGI app rather than a request handler.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _serve_mcp(scope, receive, send)


async def _serve_mcp(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    try:
        principal = await require_principal(request)
        manager = getattr(request.app.state, "capsules_mcp", None)
        if manager is None:
            raise ServiceUnavailableError("the capsule service is not running")
    except APIError as exc:
        await problems.problem_response(exc, request)(scope, receive, send)
        return
    scope.setdefault("state", {})["soma_principal"] = principal
    get_state(request)  # the gateway is up (raises otherwise)
    await manager.handle_request(scope, receive, send)


router.routes.append(Route("/mcp", endpoint=MCPEndpoint(), methods=["GET", "POST", "DELETE"]))
