"""The prompt engine as the gateway uses it: save, look up, label, diff and render.

:class:`PromptService` ties the store (versions and labels in the database), the engine (the
sandbox) and the shipped defaults together. The gateway makes one at start; conversations and
``/v1/chat/completions`` call :meth:`PromptService.render` or
:meth:`PromptService.render_messages` to turn ``prompt: {name, variables}`` into messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from somaagent import types
from somaagent.llm import tokens
from somaagent.llm.base import ChatMessage
from somaagent.llm.registry import ModelSpec
from somaagent.prompts import chains
from somaagent.prompts.defaults import load_defaults
from somaagent.prompts.engine import Loc, PromptEngine
from somaagent.prompts.schemas import (
    PromptDiff,
    PromptLabels,
    PromptSummary,
    PromptVersion,
    RenderedChain,
    RenderedPrompt,
)
from somaagent.prompts.store import PromptStore
from somaagent.prompts.template import PromptRef, TemplateSpec

__all__ = ["PromptService"]


class PromptService:
    """Templates for one gateway.

    Args:
        sessions: the gateway's session factory.
        engine: the sandboxed engine (one with the default limits if omitted).
        defaults: the shipped templates by name; the files in ``prompts/defaults`` if omitted.
            Each is compiled here, so a broken default fails the gateway's start.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        engine: PromptEngine | None = None,
        defaults: Mapping[str, TemplateSpec] | None = None,
    ) -> None:
        self.engine = engine or PromptEngine()
        specs = load_defaults() if defaults is None else dict(defaults)
        for spec in specs.values():
            self.engine.compile(spec)
        self.store = PromptStore(sessions, specs)

    @property
    def defaults(self) -> dict[str, TemplateSpec]:
        """The shipped templates, by name."""
        return self.store.defaults

    # -- versions and labels -----------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        spec: TemplateSpec,
        *,
        created_by: str | None = None,
        skip_unchanged: bool = False,
    ) -> tuple[PromptVersion, bool]:
        """Compile ``spec`` and save it as the next version of its name.

        Nothing is saved from a template that does not compile.

        Returns:
            The version, and whether it is new (see ``skip_unchanged``).

        Raises:
            ValidationError: the template does not compile (line and column in ``errors``).
            PayloadTooLargeError: the body is over the size limit.
        """
        self.engine.compile(spec)
        return await self.store.create(
            tenant, spec, created_by=created_by, skip_unchanged=skip_unchanged
        )

    async def get(self, tenant: str, ref: str | PromptRef) -> PromptVersion:
        """The version ``ref`` names (``name``, ``name@3``, ``name:production``)."""
        return await self.store.get(tenant, ref)

    async def list_page(
        self, tenant: str, *, limit: int = 20, cursor: str | None = None
    ) -> types.Page[PromptSummary]:
        """One page of templates, by name, the shipped defaults included."""
        return await self.store.list_page(tenant, limit=limit, cursor=cursor)

    async def versions_page(
        self, tenant: str, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> types.Page[PromptVersion]:
        """One page of a template's versions, newest first."""
        return await self.store.versions_page(tenant, name, limit=limit, cursor=cursor)

    async def labels(self, tenant: str, name: str) -> PromptLabels:
        """A template's labels."""
        return await self.store.labels(tenant, name)

    async def set_label(
        self,
        tenant: str,
        name: str,
        label: str,
        version: int,
        *,
        expected_version: int | None = None,
        updated_by: str | None = None,
    ) -> PromptLabels:
        """Point ``label`` at ``version`` atomically; see :meth:`PromptStore.set_label`."""
        return await self.store.set_label(
            tenant,
            name,
            label,
            version,
            expected_version=expected_version,
            updated_by=updated_by,
        )

    async def delete_label(self, tenant: str, name: str, label: str) -> None:
        """Remove a label."""
        await self.store.delete_label(tenant, name, label)

    async def diff(
        self, tenant: str, name: str, from_: str | None = None, to: str = "latest"
    ) -> PromptDiff:
        """A unified diff between two versions (numbers, labels or ``latest``); ``from_``
        defaults to the version before ``to``."""
        return await self.store.diff(tenant, name, from_, to)

    # -- rendering ---------------------------------------------------------------------------

    async def render(
        self,
        tenant: str,
        ref: str | PromptRef,
        variables: Mapping[str, Any] | None = None,
        *,
        model: ModelSpec | None = None,
        loc: Loc = ("body", "variables"),
        ref_loc: Loc = ("path", "ref"),
    ) -> RenderedPrompt:
        """Render one template.

        Args:
            tenant: whose templates.
            ref: ``name`` (the latest), ``name@version`` or ``name:label``.
            variables: values for its declared variables.
            model: count the text's tokens as this model would; no count when ``None``.
            loc: where the variables are in the caller's request, for error locations
                (e.g. ``("body", "prompt", "variables")``).
            ref_loc: where ``ref`` is, for the error an invalid reference raises
                (e.g. ``("body", "prompt", "name")``).

        Raises:
            NotFoundError: no such template, version or label.
            ValidationError: bad variables (each named), a sandbox violation, a render error
                or a limit exceeded.
        """
        version = await self.store.get(tenant, ref, loc=ref_loc)
        compiled = self.engine.compile(version.to_spec())
        values = dict(variables or {})

        def work() -> tuple[str, int | None]:
            content = self.engine.render(compiled, values, loc=loc)
            count = tokens.count_text(content, model) if model is not None else None
            return content, count

        content, count = await anyio.to_thread.run_sync(work)
        return RenderedPrompt(
            name=version.name,
            version=version.version,
            role=version.role,
            content=content,
            tokens=count,
            model=model.name if model is not None else None,
            source=version.source,
        )

    async def render_chain(
        self,
        tenant: str,
        refs: Sequence[str],
        variables: Mapping[str, Any] | None = None,
        *,
        model: ModelSpec | None = None,
    ) -> RenderedChain:
        """Render several templates, in order, with shared variables; see :mod:`.chains`."""
        return await chains.render_chain(
            self.store, self.engine, tenant, refs, variables, model=model
        )

    async def render_messages(
        self,
        tenant: str,
        refs: Sequence[str],
        variables: Mapping[str, Any] | None = None,
        *,
        model: ModelSpec | None = None,
    ) -> list[ChatMessage]:
        """:meth:`render_chain`, as the message list a model adapter takes."""
        chain = await self.render_chain(tenant, refs, variables, model=model)
        return chains.to_chat_messages(chain)
