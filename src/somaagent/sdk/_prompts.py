"""``client.prompts``: template versions, labels, diffs and rendering.

The calls are built here once, with no I/O; :class:`Prompts` and :class:`AsyncPrompts` only
send them through a client. Template files are read with
:mod:`somaagent.types.templates`, which needs only pydantic (and PyYAML for YAML files).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import AsyncSender, SyncSender, drop_none, model_parser, no_content
from somaagent.types import Page
from somaagent.types.prompts import (
    PromptDiff,
    PromptLabels,
    PromptSummary,
    PromptVersion,
    RenderedChain,
    RenderedPrompt,
)
from somaagent.types.templates import (
    Role,
    TemplateSpec,
    VariableSpec,
    iter_template_files,
    load_template_file,
)

__all__ = ["AsyncPrompts", "Prompts", "PushedPrompt"]

Variables = Sequence[VariableSpec | Mapping[str, Any]] | Mapping[str, Any]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PushedPrompt:
    """One template pushed by :meth:`Prompts.push`.

    Attributes:
        version: the version the gateway now has.
        created: whether it is a new version (``False``: identical to the latest, skipped).
        path: the file it came from, if any.
    """

    version: PromptVersion
    created: bool
    path: Path | None = None


def _path(name: str, suffix: str = "") -> str:
    if not name:
        raise ValueError("a prompt name must be a non-empty string")
    return f"/v1/prompts/{quote(name, safe='@:')}{suffix}"


def _pushed(path: Path | None) -> Callable[[httpx.Response], PushedPrompt]:
    def parse(response: httpx.Response) -> PushedPrompt:
        version = PromptVersion.model_validate(response.json())
        return PushedPrompt(version=version, created=response.status_code == 201, path=path)

    return parse


def read_specs(source: TemplateSpec | PathLike) -> list[tuple[TemplateSpec, Path | None]]:
    """The templates in ``source``: a spec, a template file, or a folder of them.

    Every file is read before anything is pushed, so a bad file stops the push early.

    Raises:
        ValueError: a file is not a valid template (its path is in the message).
        FileNotFoundError: ``source`` does not exist.
    """
    if isinstance(source, TemplateSpec):
        return [(source, None)]
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    specs: list[tuple[TemplateSpec, Path | None]] = []
    for path in iter_template_files(root):
        try:
            specs.append((load_template_file(path), path))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if not specs:
        raise ValueError(f"{root} holds no template files")
    return specs


# The builders of every call: paths, parameters, bodies and parsers; no I/O.


def push_call(
    spec: TemplateSpec, *, skip_unchanged: bool, path: Path | None = None
) -> APICall[PushedPrompt]:
    params = {"skip_unchanged": "true"} if skip_unchanged else None
    body = spec.model_dump(mode="json")
    return APICall("POST", "/v1/prompts", _pushed(path), params=params, json=body)


def build_spec(
    name: str,
    body: str,
    *,
    role: Role,
    variables: Variables | None,
    description: str,
    metadata: Mapping[str, Any] | None,
) -> TemplateSpec:
    """The spec :meth:`Prompts.create` pushes (validated here, before any request)."""
    return TemplateSpec.model_validate(
        {
            "name": name,
            "role": role,
            "body": body,
            "variables": variables if variables is not None else [],
            "description": description,
            "metadata": dict(metadata or {}),
        }
    )


def list_call(*, limit: int, cursor: str | None) -> APICall[Page[PromptSummary]]:
    params = {"limit": limit, "cursor": cursor}
    return APICall("GET", "/v1/prompts", model_parser(Page[PromptSummary]), params=params)


def get_call(ref: str, *, version: int | None, label: str | None) -> APICall[PromptVersion]:
    params = {"version": version, "label": label}
    return APICall("GET", _path(ref), model_parser(PromptVersion), params=params)


def versions_call(name: str, *, limit: int, cursor: str | None) -> APICall[Page[PromptVersion]]:
    params = {"limit": limit, "cursor": cursor}
    path = _path(name, "/versions")
    return APICall("GET", path, model_parser(Page[PromptVersion]), params=params)


def labels_call(name: str) -> APICall[PromptLabels]:
    return APICall("GET", _path(name, "/labels"), model_parser(PromptLabels))


def set_label_call(
    name: str, label: str, version: int, *, expected_version: int | None
) -> APICall[PromptLabels]:
    body = drop_none(version=version, expected_version=expected_version)
    path = _path(name, f"/labels/{quote(label, safe='')}")
    return APICall("PUT", path, model_parser(PromptLabels), json=body)


def delete_label_call(name: str, label: str) -> APICall[None]:
    return APICall("DELETE", _path(name, f"/labels/{quote(label, safe='')}"), no_content)


def diff_call(name: str, from_: int | str | None, to: int | str) -> APICall[PromptDiff]:
    params = {"from": None if from_ is None else str(from_), "to": str(to)}
    return APICall("GET", _path(name, "/diff"), model_parser(PromptDiff), params=params)


def render_call(
    ref: str, variables: Mapping[str, Any] | None, *, model: str | None
) -> APICall[RenderedPrompt]:
    body = drop_none(variables=dict(variables or {}), model=model)
    return APICall("POST", _path(ref, "/render"), model_parser(RenderedPrompt), json=body)


def render_chain_call(
    refs: Sequence[str], variables: Mapping[str, Any] | None, *, model: str | None
) -> APICall[RenderedChain]:
    body = drop_none(prompts=list(refs), variables=dict(variables or {}), model=model)
    return APICall("POST", "/v1/prompts/render", model_parser(RenderedChain), json=body)


class Prompts:
    """``client.prompts``: versioned, labelled prompt templates.

    ::

        client.prompts.push("prompts/")                     # every template file in a folder
        client.prompts.render("support:production", {"customer": "Ada"}).content
        client.prompts.set_label("support", "production", 3)  # roll forward or back
        print(client.prompts.diff("support", 2, 3).diff)
    """

    def __init__(self, client: SyncSender) -> None:
        self._client = client

    def create(
        self,
        name: str,
        body: str,
        *,
        role: Role = "user",
        variables: Variables | None = None,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        skip_unchanged: bool = False,
    ) -> PromptVersion:
        """Save a new version of a template.

        Args:
            name: the template's name.
            body: its Jinja2 source.
            role: the chat role it renders as.
            variables: its declared variables (a list of specs, or ``{name: spec}``).
            description: what it is for.
            metadata: free-form JSON.
            skip_unchanged: return the latest version instead if it is identical.

        Raises:
            ValidationError: it does not compile (line and column in ``errors``), or the
                spec is invalid (raised by pydantic before any request).
        """
        spec = build_spec(
            name, body, role=role, variables=variables, description=description, metadata=metadata
        )
        return self._client._call(push_call(spec, skip_unchanged=skip_unchanged)).version

    def push(
        self, source: TemplateSpec | PathLike, *, skip_unchanged: bool = True
    ) -> builtins.list[PushedPrompt]:
        """Push a spec, a template file, or every template file in a folder.

        Files are front matter + body (``.prompt``, ``.md``, ``.jinja``, ...), YAML or JSON;
        a template's name defaults to its file's name. By default a template identical to
        its latest version is skipped rather than saved again.
        """
        return [
            self._client._call(push_call(spec, skip_unchanged=skip_unchanged, path=path))
            for spec, path in read_specs(source)
        ]

    def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[PromptSummary]:
        """One page of templates by name, the shipped defaults included."""
        return self._client._call(list_call(limit=limit, cursor=cursor))

    def get(
        self, ref: str, *, version: int | None = None, label: str | None = None
    ) -> PromptVersion:
        """One version: ``name`` (the latest), ``name@3``, ``name:production``."""
        return self._client._call(get_call(ref, version=version, label=label))

    def versions(
        self, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> Page[PromptVersion]:
        """One page of a template's versions, newest first."""
        return self._client._call(versions_call(name, limit=limit, cursor=cursor))

    def labels(self, name: str) -> PromptLabels:
        """A template's labels and the versions they point at."""
        return self._client._call(labels_call(name))

    def set_label(
        self, name: str, label: str, version: int, *, expected_version: int | None = None
    ) -> PromptLabels:
        """Point ``label`` at ``version`` (atomically; roll back by pointing it back).

        Args:
            expected_version: move only if the label points here now (``0``: only if it
                does not exist yet); a :class:`~somaagent.errors.ConflictError` otherwise.
        """
        call = set_label_call(name, label, version, expected_version=expected_version)
        return self._client._call(call)

    def delete_label(self, name: str, label: str) -> None:
        """Remove a label; the version it pointed at stays."""
        self._client._call(delete_label_call(name, label))

    def diff(
        self, name: str, from_: int | str | None = None, to: int | str = "latest"
    ) -> PromptDiff:
        """A unified diff between two versions (numbers, labels or ``"latest"``);
        ``from_`` defaults to the version before ``to``."""
        return self._client._call(diff_call(name, from_, to))

    def render(
        self, ref: str, variables: Mapping[str, Any] | None = None, *, model: str | None = None
    ) -> RenderedPrompt:
        """Render a template; ``tokens`` counts the text for ``model`` (or the default)."""
        return self._client._call(render_call(ref, variables, model=model))

    def render_chain(
        self,
        refs: Sequence[str],
        variables: Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
    ) -> RenderedChain:
        """Render templates in order into a chat message list, sharing ``variables``."""
        return self._client._call(render_chain_call(refs, variables, model=model))


class AsyncPrompts:
    """``client.prompts`` of :class:`~somaagent.AsyncClient`; see :class:`Prompts`."""

    def __init__(self, client: AsyncSender) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        body: str,
        *,
        role: Role = "user",
        variables: Variables | None = None,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        skip_unchanged: bool = False,
    ) -> PromptVersion:
        """Save a new version of a template; see :meth:`Prompts.create`."""
        spec = build_spec(
            name, body, role=role, variables=variables, description=description, metadata=metadata
        )
        return (await self._client._call(push_call(spec, skip_unchanged=skip_unchanged))).version

    async def push(
        self, source: TemplateSpec | PathLike, *, skip_unchanged: bool = True
    ) -> builtins.list[PushedPrompt]:
        """Push a spec, a template file, or a folder of them; see :meth:`Prompts.push`."""
        return [
            await self._client._call(push_call(spec, skip_unchanged=skip_unchanged, path=path))
            for spec, path in read_specs(source)
        ]

    async def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[PromptSummary]:
        """One page of templates by name, the shipped defaults included."""
        return await self._client._call(list_call(limit=limit, cursor=cursor))

    async def get(
        self, ref: str, *, version: int | None = None, label: str | None = None
    ) -> PromptVersion:
        """One version: ``name`` (the latest), ``name@3``, ``name:production``."""
        return await self._client._call(get_call(ref, version=version, label=label))

    async def versions(
        self, name: str, *, limit: int = 20, cursor: str | None = None
    ) -> Page[PromptVersion]:
        """One page of a template's versions, newest first."""
        return await self._client._call(versions_call(name, limit=limit, cursor=cursor))

    async def labels(self, name: str) -> PromptLabels:
        """A template's labels and the versions they point at."""
        return await self._client._call(labels_call(name))

    async def set_label(
        self, name: str, label: str, version: int, *, expected_version: int | None = None
    ) -> PromptLabels:
        """Point ``label`` at ``version``; see :meth:`Prompts.set_label`."""
        call = set_label_call(name, label, version, expected_version=expected_version)
        return await self._client._call(call)

    async def delete_label(self, name: str, label: str) -> None:
        """Remove a label; the version it pointed at stays."""
        await self._client._call(delete_label_call(name, label))

    async def diff(
        self, name: str, from_: int | str | None = None, to: int | str = "latest"
    ) -> PromptDiff:
        """A unified diff between two versions; see :meth:`Prompts.diff`."""
        return await self._client._call(diff_call(name, from_, to))

    async def render(
        self, ref: str, variables: Mapping[str, Any] | None = None, *, model: str | None = None
    ) -> RenderedPrompt:
        """Render a template; see :meth:`Prompts.render`."""
        return await self._client._call(render_call(ref, variables, model=model))

    async def render_chain(
        self,
        refs: Sequence[str],
        variables: Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
    ) -> RenderedChain:
        """Render templates in order into a chat message list; see :meth:`Prompts.render_chain`."""
        return await self._client._call(render_chain_call(refs, variables, model=model))
