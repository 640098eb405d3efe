"""``soma prompts``: push, list, show, render, label and diff prompt templates."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli._render import CliError
from somaagent.sdk import Client
from somaagent.sdk._prompts import Prompts
from somaagent.types import Page
from somaagent.types.prompts import (
    PromptSummary,
    PromptVersion,
    RenderedChain,
    RenderedPrompt,
)
from somaagent.types.templates import VariableType, a_type, dump_template_text


def _prompts(client: Client) -> Prompts:
    """``client.prompts`` (built here if this SDK's client does not carry it yet)."""
    resource = getattr(client, "prompts", None)
    return resource if isinstance(resource, Prompts) else Prompts(client)


def _out() -> Console:
    return Console(highlight=False)


@click.group()
def prompts() -> None:
    """Versioned prompt templates: push files, render, label versions, diff them."""


# -- list, show ------------------------------------------------------------------------------


@prompts.command("list")
@click.option(
    "--limit", type=click.IntRange(1, 100), default=50, show_default=True, help="Page size."
)
@click.option("--cursor", metavar="CURSOR", help="Where to continue (from the previous page).")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def list_prompts(state: CliState, limit: int, cursor: str | None, as_json: bool) -> None:
    """List templates: yours and the shipped defaults (version 0)."""
    with state.resolve().client() as client:
        page = _prompts(client).list(limit=limit, cursor=cursor)
    if as_json:
        _render.as_json(page)
    else:
        _prompts_table(page)


def _prompts_table(page: Page[PromptSummary]) -> None:
    if not page.data:
        _render.note("no prompts")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Name", "Latest", "Role", "Labels", "Description"):
        table.add_column(column, no_wrap=column != "Description")
    for item in page.data:
        latest = "default" if item.source == "default" else str(item.latest_version)
        labels = ", ".join(f"{k}→{v}" for k, v in sorted(item.labels.items()))
        table.add_row(item.name, latest, item.role, labels, escape(item.description))
    _out().print(table)
    if page.has_more and page.next_cursor:
        _render.note(f"more: soma prompts list --cursor {page.next_cursor}")


@prompts.command("show")
@click.argument("ref", metavar="NAME[@VERSION|:LABEL]")
@click.option("--raw", is_flag=True, help="Print it as a template file (to edit and push).")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@pass_state
def show(state: CliState, ref: str, raw: bool, as_json: bool) -> None:
    """Show a template version: the latest, NAME@VERSION or NAME:LABEL."""
    with state.resolve().client() as client:
        version = _prompts(client).get(ref)
    if as_json:
        _render.as_json(version)
    elif raw:
        click.echo(dump_template_text(version.to_spec()), nl=False)
    else:
        _version_detail(version)


def _version_detail(version: PromptVersion) -> None:
    origin = "0 (shipped default)" if version.source == "default" else str(version.version)
    rows = [("name", version.name), ("version", origin), ("role", version.role)]
    if version.labels:
        rows.append(("labels", ", ".join(version.labels)))
    if version.description:
        rows.append(("description", version.description))
    if version.created_at is not None:
        rows.append(("created", f"{version.created_at:%Y-%m-%d %H:%M}"))
    if version.variables:
        rows.append(("variables", ""))
    _render.key_value(rows)
    for variable in version.variables:
        need = "required" if variable.required else f"default {json.dumps(variable.default)}"
        line = f"  {variable.name}: {variable.type}, {need}"
        if variable.description:
            line += f" — {variable.description}"
        _out().print(escape(line), soft_wrap=True)
    _out().print()
    _out().print(escape(version.body), soft_wrap=True)


@prompts.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@pass_state
def versions(state: CliState, name: str, as_json: bool) -> None:
    """List a template's versions, newest first."""
    with state.resolve().client() as client:
        page = _prompts(client).versions(name, limit=100)
    if as_json:
        _render.as_json(page)
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Version", "Labels", "Created", "Description"):
        table.add_column(column)
    for v in page.data:
        created = f"{v.created_at:%Y-%m-%d %H:%M}" if v.created_at else "shipped default"
        table.add_row(str(v.version), ", ".join(v.labels), created, escape(v.description))
    _out().print(table)


# -- push ------------------------------------------------------------------------------------


@prompts.command("push")
@click.argument("source", metavar="FILE_OR_DIR", type=click.Path(exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Save a new version even when nothing changed.")
@click.option("--json", "as_json", is_flag=True, help="Print the saved versions as JSON.")
@pass_state
def push(state: CliState, source: Path, force: bool, as_json: bool) -> None:
    """Push a template file, or every template file in a folder.

    Files are YAML front matter then a Jinja2 body (.prompt, .md, .jinja, .j2, .txt), or YAML
    or JSON with a `body`; the name defaults to the file's name. A template identical to its
    latest version is skipped unless --force.
    """
    with state.resolve().client() as client:
        try:
            pushed = _prompts(client).push(source, skip_unchanged=not force)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    if as_json:
        _render.as_json(
            [{**p.version.model_dump(mode="json"), "created": p.created} for p in pushed]
        )
        return
    for item in pushed:
        ref = f"{item.version.name}@{item.version.version}"
        if item.created:
            _render.success(f"{ref} saved")
        else:
            _render.note(f"{ref} unchanged")


# -- render ----------------------------------------------------------------------------------


def _coerce(name: str, raw: str, kind: VariableType | None) -> Any:
    """A ``--var`` value as the declared type wants it."""
    try:
        if kind in (None, "string"):
            return raw
        if kind == "integer":
            return int(raw)
        if kind == "number":
            number = float(raw)
            return int(number) if number.is_integer() and "." not in raw else number
        if kind == "boolean":
            lowered = raw.lower()
            if lowered in {"true", "yes", "1", "on"}:
                return True
            if lowered in {"false", "no", "0", "off"}:
                return False
            raise ValueError("expected true or false")
        if kind == "any":
            try:
                return json.loads(raw)
            except ValueError:
                return raw
        return json.loads(raw)  # list, object
    except ValueError as exc:
        message = f"{name}={raw!r} is not {a_type(kind or 'string')}: {exc}"
        raise click.BadParameter(message, param_hint="--var") from exc


def _variables(pairs: Sequence[str], declared: dict[str, VariableType]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        values[name] = _coerce(name, raw, declared.get(name))
    return values


def template_variables(client: Client, ref: str, pairs: Sequence[str]) -> dict[str, Any]:
    """``--var NAME=VALUE`` pairs for template ``ref``, converted to its declared types."""
    declared = {v.name: v.type for v in _prompts(client).get(ref).variables}
    return _variables(pairs, declared)


@prompts.command("render")
@click.argument("refs", metavar="NAME[@VERSION|:LABEL]...", nargs=-1, required=True)
@click.option(
    "--var",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A variable (repeatable); lists and objects as JSON.",
)
@click.option("--model", metavar="MODEL", help="Count tokens for this model.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def render(
    state: CliState, refs: tuple[str, ...], pairs: tuple[str, ...], model: str | None, as_json: bool
) -> None:
    """Render a template with variables; several make a chain (a message list).

    Values are converted to each variable's declared type: --var count=3 --var
    'tags=["a","b"]'.
    """
    with state.resolve().client() as client:
        resource = _prompts(client)
        declared: dict[str, VariableType] = {}
        for ref in refs:
            for variable in resource.get(ref).variables:
                declared.setdefault(variable.name, variable.type)
        values = _variables(pairs, declared)
        result: RenderedPrompt | RenderedChain
        if len(refs) == 1:
            result = resource.render(refs[0], values, model=model)
            messages = [result]
        else:
            result = resource.render_chain(refs, values, model=model)
            messages = result.messages
    if as_json:
        _render.as_json(result)
        return
    if len(messages) == 1:
        click.echo(messages[0].content)
    else:
        for index, message in enumerate(messages):
            if index:
                click.echo()
            click.echo(f"[{message.role}]")
            click.echo(message.content)
    _render.note(" · ".join(_footer(m) for m in messages))


def _footer(message: RenderedPrompt) -> str:
    origin = "default" if message.source == "default" else str(message.version)
    tokens = f", {message.tokens} tokens" if message.tokens is not None else ""
    return f"{message.name}@{origin} ({message.role}{tokens})"


# -- label, diff -----------------------------------------------------------------------------


@prompts.command("label")
@click.argument("name")
@click.argument("label", required=False)
@click.argument("version", type=click.IntRange(min=1), required=False)
@click.option("--delete", is_flag=True, help="Remove LABEL.")
@click.option(
    "--expect",
    "expected",
    type=click.IntRange(min=0),
    metavar="VERSION",
    help="Move only if LABEL points at VERSION now (0: only if it is new).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the labels as JSON.")
@pass_state
def label(
    state: CliState,
    name: str,
    label: str | None,
    version: int | None,
    delete: bool,
    expected: int | None,
    as_json: bool,
) -> None:
    """Point LABEL at VERSION (create, move or roll back), remove it, or list NAME's labels.

    \b
      soma prompts label support production 3     point production at version 3
      soma prompts label support production --delete
      soma prompts label support                  list the labels
    """
    if delete and (label is None or version is not None):
        raise click.UsageError("--delete takes NAME and LABEL, and no VERSION")
    if not delete and label is not None and version is None:
        raise click.UsageError("give the VERSION to point the label at (or --delete)")
    with state.resolve().client() as client:
        resource = _prompts(client)
        if delete and label is not None:
            resource.delete_label(name, label)
            labels = resource.labels(name)
        elif label is not None and version is not None:
            labels = resource.set_label(name, label, version, expected_version=expected)
        else:
            labels = resource.labels(name)
    if as_json:
        _render.as_json(labels)
        return
    if delete:
        _render.success(f"removed {name}:{label}")
    elif label is not None:
        _render.success(f"{name}:{label} → version {version}")
    elif not labels.labels:
        _render.note(f"{name} has no labels")
    else:
        _render.key_value((k, f"version {v}") for k, v in sorted(labels.labels.items()))


@prompts.command("diff")
@click.argument("name")
@click.argument("old", metavar="[FROM]", required=False)
@click.argument("new", metavar="[TO]", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON.")
@pass_state
def diff(state: CliState, name: str, old: str | None, new: str, as_json: bool) -> None:
    """Show what changed between two versions (numbers, labels or `latest`).

    FROM defaults to the version before TO; TO to the latest.
    """
    with state.resolve().client() as client:
        result = _prompts(client).diff(name, old, new)
    if as_json:
        _render.as_json(result)
    elif not result.changed:
        _render.note(f"{name}@{result.from_version} and @{result.to_version} are the same")
    elif _render.is_terminal():
        _out().print(Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"))
    else:
        click.echo(result.diff, nl=False)
