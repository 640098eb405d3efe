"""``soma memory``: create collections, index files and folders, search and retrieve."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli._render import CliError
from somaagent.sdk import Client
from somaagent.sdk._memory import Memory
from somaagent.sdk._memory_calls import Fusion, Mode, read_documents
from somaagent.sdk._memory_calls import Progress as IndexProgress
from somaagent.types import Page
from somaagent.types.memory import Collection, DocumentIn, IndexResult, RAGContext, SearchResults


def _memory(client: Client) -> Memory:
    """``client.memory`` (built here if this SDK's client does not carry it yet)."""
    resource = getattr(client, "memory", None)
    return resource if isinstance(resource, Memory) else Memory(client)


def _out() -> Console:
    return Console(highlight=False)


def _filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--filter") from exc
    if not isinstance(value, dict):
        raise click.BadParameter('a JSON object, e.g. {"topic": "bio"}', param_hint="--filter")
    return value


def _metadata(pairs: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        values[key] = value if isinstance(value, str | int | float | bool) else raw
    return values


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
filter_option = click.option(
    "--filter",
    "filter_",
    metavar="JSON",
    help='Metadata filter, e.g. \'{"topic": {"eq": "bio"}}\'.',
)
mode_option = click.option(
    "--mode",
    type=click.Choice(["hybrid", "vector", "keyword"]),
    default="hybrid",
    show_default=True,
    help="Search by meaning, by keywords, or both fused.",
)


@click.group()
def memory() -> None:
    """Collections of documents to search and ground answers in."""


@memory.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the collection holds.")
@json_option
@pass_state
def create(state: CliState, name: str, description: str, as_json: bool) -> None:
    """Create a collection NAME."""
    with state.resolve().client() as client:
        collection = _memory(client).create(name, description=description)
    if as_json:
        _render.as_json(collection)
    else:
        _render.success(f"created {collection.name} ({collection.embedding_model})")


@memory.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True)
@click.option("--cursor", metavar="CURSOR", help="Where to continue (from the previous page).")
@json_option
@pass_state
def list_collections(state: CliState, limit: int, cursor: str | None, as_json: bool) -> None:
    """List your collections with their document and chunk counts."""
    with state.resolve().client() as client:
        page = _memory(client).list(limit=limit, cursor=cursor)
    if as_json:
        _render.as_json(page)
    else:
        _collections_table(page)


def _collections_table(page: Page[Collection]) -> None:
    if not page.data:
        _render.note("no collections: create one with `soma memory create NAME`")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Name", "Documents", "Chunks", "Model", "Updated", "Description"):
        table.add_column(column, no_wrap=column != "Description")
    for c in page.data:
        table.add_row(
            c.name,
            str(c.document_count),
            str(c.chunk_count),
            c.embedding_model,
            f"{c.updated_at:%Y-%m-%d %H:%M}",
            escape(c.description),
        )
    _out().print(table)
    if page.has_more and page.next_cursor:
        _render.note(f"more: soma memory list --cursor {page.next_cursor}")


@memory.command("index")
@click.argument("name")
@click.argument(
    "paths",
    metavar="PATH...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@click.option("--meta", "pairs", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@click.option("--force", is_flag=True, help="Re-index documents even when unchanged.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=32, show_default=True)
@click.option(
    "--follow-links",
    is_flag=True,
    help="Also index files that symbolic links in a folder lead to outside it.",
)
@json_option
@pass_state
def index(
    state: CliState,
    name: str,
    paths: tuple[Path, ...],
    pairs: tuple[str, ...],
    force: bool,
    batch_size: int,
    follow_links: bool,
    as_json: bool,
) -> None:
    """Index Markdown and text files, or every one in a folder, into NAME.

    A document's id is its path relative to the folder given, so indexing the same folder again
    replaces changed documents and skips unchanged ones.
    """
    metadata = _metadata(pairs)
    documents: list[DocumentIn] = []
    try:
        for path in paths:
            documents.extend(read_documents(path, metadata=metadata, follow_links=follow_links))
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    with state.resolve().client() as client, _progress(len(documents), quiet=as_json) as advance:
        result = _memory(client).index(
            name, documents, force=force, batch_size=batch_size, on_progress=advance
        )
    if as_json:
        _render.as_json(result)
    else:
        _index_summary(name, result)


@contextmanager
def _progress(total: int, *, quiet: bool) -> Iterator[Any]:
    """A Rich progress bar on stderr (shown on a terminal only); yields the SDK's callback."""
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("documents · {task.fields[chunks]} chunks"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )
    task = bar.add_task("index", total=total, chunks=0)

    def advance(progress: IndexProgress) -> None:
        bar.update(task, completed=progress.documents_done, chunks=progress.chunks_done)

    with bar:
        yield advance


def _index_summary(name: str, result: IndexResult) -> None:
    parts = [f"indexed {len(result.indexed)} document(s), {result.chunk_count} chunks into {name}"]
    if result.unchanged:
        parts.append(f"{len(result.unchanged)} unchanged")
    _render.success(", ".join(parts))
    for failure in result.failed:
        _render.error(f"{failure.id}: {failure.error} ({failure.state})")


@memory.command("search")
@click.argument("name")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True)
@filter_option
@mode_option
@click.option("--fusion", type=click.Choice(["rrf", "weighted"]), default="rrf", show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@json_option
@pass_state
def search(
    state: CliState,
    name: str,
    query: str,
    k: int,
    filter_: str | None,
    mode: str,
    fusion: str,
    alpha: float,
    as_json: bool,
) -> None:
    """Search NAME for QUERY; each hit shows its score and source."""
    where = _filter(filter_)
    with state.resolve().client() as client:
        results = _memory(client).search(
            name,
            query,
            k=k,
            filter=where,
            mode=cast(Mode, mode),
            fusion=cast(Fusion, fusion),
            alpha=alpha,
        )
    if as_json:
        _render.as_json(results)
    else:
        _hits(results)


def _hits(results: SearchResults) -> None:
    if not results.data:
        _render.note("no results")
        return
    console = _out()
    for rank, hit in enumerate(results.data, start=1):
        where = " › ".join([hit.source or hit.document_id, *hit.headings])
        console.print(f"[bold]{rank}.[/] [cyan]{escape(where)}[/] [dim]{hit.score:.3f}[/]")
        console.print(escape(hit.text.strip()), soft_wrap=True)
        console.print()


@memory.command("retrieve")
@click.argument("name")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True)
@filter_option
@mode_option
@click.option("--budget", type=click.IntRange(16), default=4000, show_default=True, help="Tokens.")
@click.option("--model", metavar="MODEL", help="Count tokens as this model does.")
@json_option
@pass_state
def retrieve(
    state: CliState,
    name: str,
    query: str,
    k: int,
    filter_: str | None,
    mode: str,
    budget: int,
    model: str | None,
    as_json: bool,
) -> None:
    """Retrieve the context for QUERY from NAME, within a token budget, with its sources."""
    where = _filter(filter_)
    with state.resolve().client() as client:
        context = _memory(client).retrieve(
            name,
            query,
            k=k,
            filter=where,
            token_budget=budget,
            model=model,
            mode=cast(Mode, mode),
        )
    if as_json:
        _render.as_json(context)
    else:
        _context(context)


def _context(context: RAGContext) -> None:
    if not context.chunks:
        _render.note("nothing found")
        return
    click.echo(context.context)
    console = _out()
    console.print()
    console.print("[bold]Sources[/]")
    for source in context.sources:
        console.print(f"  [{source.number}] {escape(source.label)}", soft_wrap=True)
    cut = ", truncated to fit" if context.truncated else ""
    _render.note(f"{context.token_count} of {context.token_budget} tokens{cut}")


@memory.command("delete")
@click.argument("name")
@click.option("--document", "document_id", metavar="ID", help="Delete only this document.")
@json_option
@pass_state
def delete(state: CliState, name: str, document_id: str | None, as_json: bool) -> None:
    """Delete the collection NAME, or one --document of it."""
    with state.resolve().client() as client:
        resource = _memory(client)
        if document_id is not None:
            resource.delete_document(name, document_id)
        else:
            resource.delete(name)
    what = f"{document_id} from {name}" if document_id else name
    if as_json:
        _render.as_json({"deleted": what})
    else:
        _render.success(f"deleted {what}")
