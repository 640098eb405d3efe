"""``/v1/prompts``: template versions, labels, diffs and rendering."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from somaagent import types
from somaagent.errors import ValidationError
from somaagent.gateway.auth import CurrentPrincipal, State, get_state
from somaagent.llm.registry import ModelSpec, UnknownModelError
from somaagent.prompts.schemas import (
    ChainRenderRequest,
    LabelUpdate,
    PromptDiff,
    PromptLabels,
    PromptSummary,
    PromptVersion,
    RenderedChain,
    RenderedPrompt,
    RenderRequest,
)
from somaagent.prompts.service import PromptService
from somaagent.prompts.template import LABEL_PATTERN, NAME_PATTERN, TemplateSpec

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])


def get_prompts(request: Request) -> PromptService:
    """The gateway's :class:`PromptService`.

    The app makes it at start (``GatewayState.prompts``); until it does, one is made on first
    use and kept on the app.
    """
    gateway = get_state(request)
    service = getattr(gateway, "prompts", None)
    if isinstance(service, PromptService):
        return service
    service = getattr(request.app.state, "prompt_service", None)
    if not isinstance(service, PromptService) or service.store.sessions is not gateway.sessions:
        service = PromptService(gateway.sessions)
        request.app.state.prompt_service = service
    return service


Prompts = Annotated[PromptService, Depends(get_prompts)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="the template's name")]
Ref = Annotated[
    str, Path(max_length=200, description="NAME (the latest), NAME@VERSION or NAME:LABEL")
]
Label = Annotated[str, Path(pattern=LABEL_PATTERN, description="a label, e.g. production")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


def _count_model(state: State, name: str | None) -> ModelSpec | None:
    """The model to count tokens for: the one asked for, else the gateway's default."""
    registry = state.pool.registry
    try:
        return registry.get(name or state.pool.default_model)
    except UnknownModelError as exc:
        if name is None:
            return None  # a default outside the registry: render without counts
        raise ValidationError(
            f"unknown model {name!r}",
            errors=[{"loc": ["body", "model"], "msg": "unknown model", "type": "value_error"}],
        ) from exc


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PromptVersion, "description": "unchanged (skip_unchanged)"}},
)
async def create_version(
    body: TemplateSpec,
    who: CurrentPrincipal,
    prompts: Prompts,
    response: Response,
    skip_unchanged: Annotated[
        bool, Query(description="answer 200 with the latest version if it is identical")
    ] = False,
) -> PromptVersion:
    """Save a new version of a template (a 422 with line and column if it does not compile)."""
    version, created = await prompts.create(
        who.tenant, body, created_by=who.key_id, skip_unchanged=skip_unchanged
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return version


@router.get("")
async def list_prompts(
    who: CurrentPrincipal, prompts: Prompts, limit: Limit = 20, cursor: Cursor = None
) -> types.Page[PromptSummary]:
    """Templates by name: the tenant's own and the shipped defaults."""
    return await prompts.list_page(who.tenant, limit=limit, cursor=cursor)


@router.post("/render")
async def render_chain(
    body: ChainRenderRequest, who: CurrentPrincipal, prompts: Prompts, state: State
) -> RenderedChain:
    """Render several templates, in order, into a chat message list with shared variables."""
    model = _count_model(state, body.model)
    return await prompts.render_chain(who.tenant, body.prompts, body.variables, model=model)


@router.get("/{ref}")
async def get_prompt(
    ref: Ref,
    who: CurrentPrincipal,
    prompts: Prompts,
    version: Annotated[int | None, Query(ge=0)] = None,
    label: Annotated[str | None, Query(pattern=LABEL_PATTERN)] = None,
) -> PromptVersion:
    """One version: by reference, or by name with ``?version=`` or ``?label=``."""
    if version is not None or label is not None:
        if (version is not None and label is not None) or "@" in ref or ":" in ref:
            raise ValidationError(
                "give one of NAME@VERSION, NAME:LABEL, ?version= or ?label=",
                errors=[{"loc": ["query"], "msg": "ambiguous reference", "type": "value_error"}],
            )
        ref = f"{ref}@{version}" if version is not None else f"{ref}:{label}"
    return await prompts.get(who.tenant, ref)


@router.get("/{name}/versions")
async def list_versions(
    name: Name, who: CurrentPrincipal, prompts: Prompts, limit: Limit = 20, cursor: Cursor = None
) -> types.Page[PromptVersion]:
    """A template's versions, newest first (a shipped default last, as version 0)."""
    return await prompts.versions_page(who.tenant, name, limit=limit, cursor=cursor)


@router.get("/{name}/labels")
async def get_labels(name: Name, who: CurrentPrincipal, prompts: Prompts) -> PromptLabels:
    """A template's labels and the versions they point at."""
    return await prompts.labels(who.tenant, name)


@router.put("/{name}/labels/{label}")
async def set_label(
    name: Name, label: Label, body: LabelUpdate, who: CurrentPrincipal, prompts: Prompts
) -> PromptLabels:
    """Point a label at a version, creating or moving it atomically.

    With ``expected_version`` the move happens only if the label still points there (409
    otherwise); ``0`` creates the label only if it does not exist yet.
    """
    if label == "latest":
        raise ValidationError(
            "'latest' always means the newest version; it cannot be a label",
            errors=[{"loc": ["path", "label"], "msg": "reserved label", "type": "value_error"}],
        )
    return await prompts.set_label(
        who.tenant,
        name,
        label,
        body.version,
        expected_version=body.expected_version,
        updated_by=who.key_id,
    )


@router.delete("/{name}/labels/{label}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_label(
    name: Name, label: Label, who: CurrentPrincipal, prompts: Prompts
) -> Response:
    """Remove a label (its version stays)."""
    await prompts.delete_label(who.tenant, name, label)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/diff")
async def diff(
    name: Name,
    who: CurrentPrincipal,
    prompts: Prompts,
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=64, description="a version, a label or latest"),
    ] = None,
    to: Annotated[str, Query(max_length=64, description="a version, a label or latest")] = (
        "latest"
    ),
) -> PromptDiff:
    """A unified diff between two versions; ``from`` defaults to the one before ``to``."""
    return await prompts.diff(who.tenant, name, from_, to)


@router.post("/{ref}/render")
async def render(
    ref: Ref, body: RenderRequest, who: CurrentPrincipal, prompts: Prompts, state: State
) -> RenderedPrompt:
    """Render a template with variables; the text's tokens are counted for ``model``."""
    model = _count_model(state, body.model)
    return await prompts.render(who.tenant, ref, body.variables, model=model)
