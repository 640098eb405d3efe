"""All of the CLI's output: Rich on a terminal, plain text or JSON otherwise.

Results go to stdout; notes, footers and errors go to stderr, so that ``soma chat ... > out``
captures the reply alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import IO, Any

import click
from pydantic import BaseModel
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from somaagent.errors import (
    PROBLEM_BASE,
    APIError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    SomaAgentError,
)
from somaagent.types import (
    Conversation,
    Message,
    ModelInfo,
    Page,
    RouteCandidate,
    RouteDecision,
)

EXIT_ERROR = 1
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4


class CliError(click.ClickException):
    """An error to report on one line of stderr (``error: ...``) with its exit code."""

    def __init__(self, message: str, *, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self._exit_code = exit_code

    @property  # click reads it when it exits
    def exit_code(self) -> int:  # type: ignore[override]
        return self._exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        error(self.format_message())


def _refused_key(exc: SomaAgentError) -> bool:
    """A 401, or a 403 about the key's scope; not a 403 of its own kind (a capsule whose
    permissions the sandbox cannot enforce has nothing to do with the key)."""
    if isinstance(exc, AuthenticationError):
        return True
    return isinstance(exc, PermissionDeniedError) and exc.problem_type == (
        PROBLEM_BASE + PermissionDeniedError.slug
    )


def exit_code_for(exc: SomaAgentError) -> int:
    """4 for a refused key, 3 for something unknown, 1 for anything else."""
    if _refused_key(exc):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    return EXIT_ERROR


def describe(exc: SomaAgentError) -> str:
    """A one-line description of an error, with its status and request id."""
    if isinstance(exc, APIError):
        extra = f"HTTP {exc.status_code}"
        if exc.request_id:
            extra += f", request {exc.request_id}"
        hint = " (check the key, or run `soma login`)" if _refused_key(exc) else ""
        return f"{exc.message} ({extra}){hint}"
    return str(exc)


def _out() -> Console:
    return Console(highlight=False)


def table_console() -> Console:
    """A console for tables: the terminal's width, or when piped, wide enough that no column
    is cut (a name in a table is something to copy)."""
    console = _out()
    return console if console.is_terminal else Console(highlight=False, width=200)


_UNBOUNDED = 100_000


def print_table(table: Table) -> None:
    """Print a table with no cell cut: ids and names in tables are there to be copied.

    At the terminal's width when the table fits; otherwise (a narrow terminal, or output piped
    to a file) at the table's natural width, so the terminal wraps whole lines rather than Rich
    shortening a cell with "…".
    """
    console = _out()
    natural = Console(width=_UNBOUNDED, highlight=False).measure(table).maximum
    if not console.is_terminal or natural > console.width:
        console = Console(highlight=False, width=max(natural, 1))
    console.print(table)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def is_terminal() -> bool:
    """Whether stdout is a terminal (then output is rich, else plain)."""
    return _out().is_terminal


def error(message: str) -> None:
    """``error: <message>`` on one line of stderr."""
    _err().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def note(message: str) -> None:
    """A dim note on stderr."""
    _err().print(f"[dim]{escape(message)}[/]", soft_wrap=True)


def success(message: str) -> None:
    """A result for people, on stdout."""
    _out().print(f"[green]✓[/] {escape(message)}", soft_wrap=True)


def as_json(value: BaseModel | Mapping[str, Any] | list[Any]) -> None:
    """Pretty JSON on stdout."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def json_line(value: BaseModel) -> None:
    """One compact JSON document on its own line (for streams)."""
    click.echo(value.model_dump_json())


def reply(text: str) -> None:
    """An assistant's reply: Markdown on a terminal, the raw text otherwise."""
    if is_terminal():
        _out().print(Markdown(text))
    else:
        click.echo(text)


def delta(text: str) -> None:
    """A piece of a streamed reply, shown at once."""
    click.echo(text, nl=False)  # click.echo flushes


def end_of_stream() -> None:
    """End the streamed reply's line."""
    click.echo()


def footer(message: Message) -> None:
    """A dim line under a reply: model, tokens, cost, latency and the conversation; then
    the sources a grounded reply cites."""
    note(" · ".join(_footer_parts(message)))
    for source in message.sources or []:
        label = source.get("source") or source.get("document_id")
        note(f"[{source.get('number')}] {label}")


def _footer_parts(message: Message) -> list[str]:
    parts = [message.model or "unknown model"]
    if message.usage is not None:
        usage = message.usage
        parts.append(
            f"{usage.total_tokens} tokens ({usage.prompt_tokens} in, {usage.completion_tokens} out)"
        )
    if message.cost_usd is not None:
        parts.append(f"${message.cost_usd:.6f}")
    if message.latency_ms is not None:
        parts.append(f"{message.latency_ms:.0f} ms")
    parts.append(f"conversation {message.conversation_id}")
    return parts


def _when(conversation: Conversation) -> str:
    return conversation.updated_at.strftime("%Y-%m-%d %H:%M")


def conversations_table(page: Page[Conversation]) -> None:
    """A table of conversations, with a hint for the next page."""
    if not page.data:
        note("no conversations")
        return
    table = Table(show_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("Title")
    table.add_column("Model", no_wrap=True)
    table.add_column("Updated", no_wrap=True)
    for conversation in page.data:
        table.add_row(
            conversation.id,
            escape(conversation.title or "—"),
            conversation.model or conversation.last_model or "(default)",
            _when(conversation),
        )
    print_table(table)
    if page.has_more and page.next_cursor:
        note(f"more: soma conversations list --cursor {page.next_cursor}")


_ROLE_STYLES = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}


def conversation_detail(conversation: Conversation, messages: Iterable[Message]) -> None:
    """A conversation's header, then each message under its role."""
    console = _out()
    console.print(f"[bold]{escape(conversation.title or 'Untitled')}[/]", soft_wrap=True)
    details = [conversation.id, f"updated {_when(conversation)}"]
    if conversation.model:
        details.insert(1, f"model {conversation.model}")
    console.print(f"[dim]{escape(' · '.join(details))}[/]", soft_wrap=True)
    if conversation.system_prompt:
        console.print(f"[dim]system: {escape(conversation.system_prompt)}[/]", soft_wrap=True)
    for message in messages:
        console.print()
        style = _ROLE_STYLES.get(message.role, "bold")
        console.print(f"[{style}]{message.role}[/]", soft_wrap=True)
        if message.role == "assistant" and console.is_terminal:
            console.print(Markdown(message.content))
        else:
            console.print(escape(message.content), soft_wrap=True)
        if message.role == "assistant":
            console.print(f"[dim]{escape(' · '.join(_footer_parts(message)[:-1]))}[/]")


def key_value(rows: Iterable[tuple[str, str]]) -> None:
    """Aligned ``label: value`` lines on stdout."""
    rows = list(rows)
    width = max((len(label) for label, _ in rows), default=0) + 1
    console = _out()
    for label, value in rows:
        console.print(f"[bold]{label + ':':<{width}}[/] {escape(value)}", soft_wrap=True)


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:.6f}" if value < 1 else f"${value:,.4f}"


def _quality(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _candidate_order(candidate: RouteCandidate) -> tuple[int, float, float]:
    rank = 0 if candidate.chosen else 1 if candidate.eligible else 2
    return rank, candidate.estimated_cost_usd, candidate.estimated_latency_ms


def _verdict(candidate: RouteCandidate) -> str:
    why = escape(candidate.why.removeprefix("chosen: "))
    if candidate.chosen:
        verdict = "[bold green]✓ chosen[/]"
    elif candidate.eligible:
        verdict = "passed over"
    else:
        verdict = f"[dim]excluded by {escape(candidate.excluded_by or '?')}[/]"
    return f"{verdict}: {why}" if why else verdict


_WIDE_TABLE = 120
"""The console width from which the route table gives the provider a column of its own."""


def route_decision(decision: RouteDecision, *, show_all: bool = False) -> None:
    """A routing decision: the chosen model and the reason, then a table of the candidates.

    Candidates are listed chosen first, then the eligible ones by estimated cost, then (with
    ``show_all``) those a constraint excluded; otherwise a note counts the excluded ones. On a
    narrow console the provider goes under the model's name, so that the reasons keep room.
    """
    complexity = decision.complexity
    rows = [
        ("chosen", f"{decision.model} ({decision.provider}, {decision.provider_model_id})"),
        ("reason", decision.reason),
        (
            "estimate",
            f"quality {_quality(decision.predicted_quality)} (bar {decision.quality_bar:.3f})"
            f" · {_usd(decision.estimated_cost_usd)} · {_ms(decision.estimated_latency_ms)}",
        ),
        (
            "prompt",
            f"{complexity.category}, difficulty {complexity.difficulty:.2f}, "
            f"~{complexity.expected_output_tokens} output tokens",
        ),
        ("fallbacks", ", ".join(decision.fallbacks) or "none"),
    ]
    if decision.policy:
        policy = ", ".join(f"{k}={json.dumps(v)}" for k, v in decision.policy.items())
        rows.append(("policy", policy))
    key_value(rows)
    console = _out()
    wide = console.width >= _WIDE_TABLE
    table = Table(show_edge=False, header_style="bold")
    table.add_column("Model", no_wrap=True)
    if wide:
        table.add_column("Provider", no_wrap=True)
    table.add_column("Quality", justify="right", no_wrap=True)
    table.add_column("Est. cost", justify="right", no_wrap=True)
    table.add_column("Est. latency", justify="right", no_wrap=True)
    table.add_column("Verdict: why", ratio=1)
    shown = [c for c in decision.candidates if show_all or c.eligible or c.chosen]
    for candidate in sorted(shown, key=_candidate_order):
        name = escape(candidate.model)
        provider = escape(candidate.provider)
        if candidate.chosen:
            name = f"[bold]{name}[/]"
        models = [name, provider] if wide else [f"{name}\n[dim]{provider}[/]"]
        table.add_row(
            *models,
            _quality(candidate.predicted_quality),
            _usd(candidate.estimated_cost_usd),
            _ms(candidate.estimated_latency_ms),
            _verdict(candidate),
        )
    console.print()
    console.print(table)
    hidden = len(decision.candidates) - len(shown)
    if hidden:
        note(f"{hidden} excluded model{'s' if hidden != 1 else ''} not shown (--all lists them)")
    note(f"decided in {decision.decision_ms:.1f} ms; no model was called")


def models_table(models: Iterable[ModelInfo], *, show_all: bool = False) -> None:
    """The registry's models with their prices; those not available only with ``show_all``."""
    listed = sorted(models, key=lambda m: (not m.available, m.provider, m.id))
    shown = [m for m in listed if show_all or m.available]
    if not shown:
        note("no model is available" + ("" if show_all else " (--all lists the registry)"))
        return
    table = Table(show_edge=False, header_style="bold")
    table.add_column("Model", no_wrap=True)
    table.add_column("Provider", no_wrap=True)
    table.add_column("Context", justify="right", no_wrap=True)
    table.add_column("$/M in", justify="right", no_wrap=True)
    table.add_column("$/M out", justify="right", no_wrap=True)
    if show_all:
        table.add_column("Available", no_wrap=True)
    for model in shown:
        row = [
            escape(model.id),
            escape(model.provider),
            f"{model.context_window:,}",
            _price(model.input_cost_per_mtok),
            _price(model.output_cost_per_mtok),
        ]
        if show_all:
            row.append("yes" if model.available else "[dim]no[/]")
        table.add_row(*row)
    print_table(table)
    hidden = len(listed) - len(shown)
    if hidden:
        note(f"{hidden} model{'s' if hidden != 1 else ''} not configured here (--all lists them)")


def _price(value: float) -> str:
    return "free" if value == 0 else f"${value:,.2f}"
