"""``soma workflow``: start durable runs, watch them, list, cancel and resume them.

Input comes from ``--input FILE.json`` (``-`` for stdin; a ``.jsonl`` file becomes
``{"items": [...]}``, the shape of ``batch_chat``) and ``--set key=value`` pairs (a value is
JSON when it parses, else a string; ``a.b=1`` sets a nested key).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.sdk import Client
from somaagent.sdk._workflows import Workflows
from somaagent.types.workflows import RUN_STATUSES, WorkflowEvent, WorkflowRun

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}
UNSUCCESSFUL = ("failed", "cancelled")
"""How a run may end that makes a command that waited for it exit 1."""


def _workflows(client: Client) -> Workflows:
    resource = getattr(client, "workflows", None)
    return resource if isinstance(resource, Workflows) else Workflows(client)


def _out() -> Console:
    return Console(highlight=False)


def read_input(source: str | None, pairs: Sequence[str]) -> dict[str, Any]:
    """The run's input from ``--input`` and ``--set``."""
    data: dict[str, Any] = {}
    if source is not None:
        text = sys.stdin.read() if source == "-" else _read(source)
        if source.endswith(".jsonl"):
            try:
                items = [json.loads(line) for line in text.splitlines() if line.strip()]
            except ValueError as exc:
                raise click.BadParameter(f"not JSONL: {exc}", param_hint="--input") from exc
            data = {"items": items}
        else:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
            if not isinstance(value, dict):
                raise click.BadParameter("a JSON object", param_hint="--input")
            data = value
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        target = data
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.BadParameter(f"{key}: {part} is not an object", param_hint="--set")
        target[leaf] = value
    return data


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--input"
        ) from exc


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _detail(run: WorkflowRun) -> None:
    rows = [
        ("id", run.id),
        ("type", run.type),
        ("status", f"{run.status} ({run.engine_status})"),
        ("created", f"{run.created_at:%Y-%m-%d %H:%M:%S}"),
    ]
    if run.finished_at:
        rows.append(("finished", f"{run.finished_at:%Y-%m-%d %H:%M:%S}"))
    if run.cost_usd is not None:
        rows.append(("cost", f"${run.cost_usd:.6f}"))
    if run.stranded:
        rows.append(("stranded", f"started on SomaAgent {run.app_version}; not resumed here"))
    if run.error:
        where = f" in step {run.error.step}" if run.error.step else ""
        rows.append(("error", f"{run.error.type}{where}: {run.error.message}"))
    if run.output is not None:
        rows.append(("output", json.dumps(run.output, default=str)[:500]))
    _render.key_value(rows)


def _follow(workflows: Workflows, run_id: str, *, as_json: bool) -> WorkflowRun:
    """Follow a run's events: a progress bar on a terminal, one line per event otherwise."""
    if as_json or not _render.is_terminal():
        for event in workflows.stream_events(run_id):
            if as_json:
                _render.json_line(event)
            else:
                click.echo(_event_line(event))
        return workflows.wait(run_id)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(f"{run_id} queued", total=None)
        for event in workflows.stream_events(run_id):
            data = event.data
            if event.type == "run.started":
                progress.update(task, description=f"{run_id} running")
            elif event.type == "run.progress":
                progress.update(
                    task,
                    completed=data.get("done", 0),
                    total=data.get("total"),
                    description=f"{run_id} {data.get('unit', 'steps')}",
                )
            elif event.type == "run.step":
                progress.console.print(f"  [dim]{escape(_event_line(event))}[/]")
            elif event.type == "run.finished":
                progress.update(task, description=f"{run_id} {data.get('status')}")
    return workflows.wait(run_id)


def _event_line(event: WorkflowEvent) -> str:
    data = event.data
    if event.type == "run.step":
        extra = f" ({data['attempts']} attempts)" if (data.get("attempts") or 1) > 1 else ""
        detail = data.get("summary") or data.get("error") or ""
        return f"{event.seq} step {data.get('name')} {data.get('status')}{extra}: {detail}"
    if event.type == "run.progress":
        return f"{event.seq} progress {data.get('done')}/{data.get('total')}"
    if event.type == "run.finished":
        rest = {k: v for k, v in data.items() if k != "status" and v is not None}
        detail = f" {json.dumps(rest, default=str)}" if rest else ""
        return f"{event.seq} run.finished {data.get('status')}{detail}"
    return f"{event.seq} {event.type} {json.dumps(data, default=str)}"


def _finish(run: WorkflowRun, as_json: bool) -> None:
    if as_json:
        _render.as_json(run)
    else:
        _detail(run)
    if run.status in UNSUCCESSFUL:
        raise SystemExit(1)


@click.group()
def workflow() -> None:
    """Durable workflows: start runs, follow them, cancel and resume them."""


@workflow.command("types")
@json_option
@pass_state
def types_(state: CliState, as_json: bool) -> None:
    """List the workflow types and what input they take."""
    with state.resolve().client() as client:
        types = _workflows(client).types()
    if as_json:
        _render.as_json([t.model_dump(mode="json") for t in types])
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Type", "Input", "Description"):
        table.add_column(column, no_wrap=column == "Type")
    for t in types:
        required = t.input_schema.get("required", [])
        description = t.description if t.available else f"{t.description} ({t.note})"
        table.add_row(t.name, ", ".join(required), escape(description))
    _render.print_table(table)


@workflow.command("start")
@click.argument("type_name", metavar="TYPE")
@click.option("--input", "source", metavar="FILE", help="Input JSON (or JSONL) file; - for stdin.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE", help="Set an input field.")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, readable=True),
    metavar="FILE",
    help="document_ingest: upload this file first and index it (repeatable).",
)
@click.option("--id", "run_id", help="The run's id; starting the same id again returns it.")
@click.option("--wait", is_flag=True, help="Wait for the run to finish.")
@click.option("--follow", is_flag=True, help="Show the run's progress until it finishes.")
@json_option
@pass_state
def start(
    state: CliState,
    type_name: str,
    source: str | None,
    pairs: tuple[str, ...],
    files: tuple[str, ...],
    run_id: str | None,
    wait: bool,
    follow: bool,
    as_json: bool,
) -> None:
    """Start a run of TYPE."""
    data = read_input(source, pairs)
    if files and type_name != "document_ingest":
        raise click.UsageError("--file is for document_ingest runs")
    with state.resolve().client() as client:
        workflows = _workflows(client)
        if files:
            # stored durably on the gateway before the run starts, which reads them by id
            upload = workflows.upload(files)
            data["uploads"] = [*data.get("uploads", []), upload.id]
            if not as_json:
                _render.note(
                    f"uploaded {len(upload.files)} files ({upload.bytes} bytes) as {upload.id}"
                )
        run = workflows.start(type_name, data, id=run_id)
        if not (wait or follow):
            if as_json:
                _render.as_json(run)
            else:
                _render.success(f"started {run.id} ({run.type}, {run.status})")
                _render.note(f"follow it: soma workflow logs {run.id} --follow")
            return
        run = _follow(workflows, run.id, as_json=as_json) if follow else workflows.wait(run.id)
    if as_json and follow:
        _render.json_line(run)
        if run.status in UNSUCCESSFUL:
            raise SystemExit(1)
        return
    _finish(run, as_json)


@workflow.command("status")
@click.argument("run_id", metavar="ID")
@json_option
@pass_state
def status(state: CliState, run_id: str, as_json: bool) -> None:
    """Show a run: status, timings, output or error."""
    with state.resolve().client() as client:
        run = _workflows(client).get(run_id)
    if as_json:
        _render.as_json(run)
    else:
        _detail(run)


@workflow.command("steps")
@click.argument("run_id", metavar="ID")
@json_option
@pass_state
def steps(state: CliState, run_id: str, as_json: bool) -> None:
    """List a run's finished steps (their ids are what `fork --from-step` takes)."""
    with state.resolve().client() as client:
        done = _workflows(client).steps(run_id)
    if as_json:
        _render.as_json([s.model_dump(mode="json") for s in done])
        return
    if not done:
        _render.note(f"no finished steps yet: soma workflow logs {run_id} --follow")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Step", "Name", "Status", "Attempts", "ms", "Cost", "Output"):
        table.add_column(column)
    for step in done:
        summary = step.output_summary or ""
        if step.error:
            summary = f"{step.error.type}: {step.error.message}"
        table.add_row(
            str(step.step_id),
            escape(step.name),
            _status(step.status),
            str(step.attempts),
            "" if step.duration_ms is None else f"{step.duration_ms:.0f}",
            "" if step.cost_usd is None else f"${step.cost_usd:.6f}",
            escape(summary[:80]),
        )
    _render.table_console().print(table)


@workflow.command("result")
@click.argument("run_id", metavar="ID")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the JSONL here instead of printing it.",
)
@pass_state
def result(state: CliState, run_id: str, output: str | None) -> None:
    """A finished run's result file, one JSON object per line (batch_chat: one per item)."""
    with state.resolve().client() as client:
        items = _workflows(client).result(run_id)
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    if output is None:
        click.echo(lines, nl=False)
        return
    try:
        Path(output).write_text(lines, encoding="utf-8")
    except OSError as exc:
        raise _render.CliError(f"--output {output}: cannot write it ({exc})") from exc
    _render.success(f"wrote {len(items)} results to {output}")


@workflow.command("list")
@click.option("--status", "status_", type=click.Choice(RUN_STATUSES), help="Only this status.")
@click.option("--type", "type_name", metavar="TYPE", help="Only this workflow type.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@pass_state
def list_runs(
    state: CliState, status_: str | None, type_name: str | None, limit: int, as_json: bool
) -> None:
    """List your runs, newest first (runs stranded by another version are marked)."""
    with state.resolve().client() as client:
        runs: list[WorkflowRun] = []
        for run in _workflows(client).list(
            type=type_name, status=status_, page_size=min(limit, 100)
        ):
            runs.append(run)
            if len(runs) >= limit:
                break
    if as_json:
        _render.as_json([r.model_dump(mode="json") for r in runs])
        return
    if not runs:
        _render.note("no runs: start one with `soma workflow start TYPE --input FILE.json`")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("ID", "Type", "Status", "Created", "Version", "Cost"):
        table.add_column(column, no_wrap=True)
    for r in runs:
        label = _status(r.status) + (" [red](stranded)[/]" if r.stranded else "")
        cost = f"${r.cost_usd:.6f}" if r.cost_usd is not None else ""
        table.add_row(
            r.id, r.type, label, f"{r.created_at:%Y-%m-%d %H:%M}", r.app_version or "", cost
        )
    _render.print_table(table)
    stranded = [r for r in runs if r.stranded]
    if stranded:
        _render.note(
            f"{len(stranded)} run(s) were left running by another SomaAgent version; a gateway "
            "of that version resumes them, or fork them to run them on this one"
        )


def _changed(run: WorkflowRun, as_json: bool, detail: str = "") -> None:
    """Print a run that a command just changed: as JSON, or its id and new status."""
    if as_json:
        _render.as_json(run)
    else:
        _render.success(f"{run.id} {run.status}{detail}")


@workflow.command("cancel")
@click.argument("run_id", metavar="ID")
@json_option
@pass_state
def cancel(state: CliState, run_id: str, as_json: bool) -> None:
    """Cancel a queued or running run."""
    with state.resolve().client() as client:
        run = _workflows(client).cancel(run_id)
    _changed(run, as_json)


@workflow.command("resume")
@click.argument("run_id", metavar="ID")
@json_option
@pass_state
def resume(state: CliState, run_id: str, as_json: bool) -> None:
    """Resume a cancelled run from its last finished step."""
    with state.resolve().client() as client:
        run = _workflows(client).resume(run_id)
    _changed(run, as_json)


@workflow.command("fork")
@click.argument("run_id", metavar="ID")
@click.option(
    "--from-step",
    "from_step",
    type=click.IntRange(min=1),
    required=True,
    help="The step to run again (a step_id; the steps before it are reused).",
)
@json_option
@pass_state
def fork(state: CliState, run_id: str, from_step: int, as_json: bool) -> None:
    """Start a new run that reuses a run's steps before --from-step (how a failed run is
    run again: its 409 on resume names the step)."""
    with state.resolve().client() as client:
        run = _workflows(client).fork(run_id, from_step)
    _changed(run, as_json, f" (forked from {run_id} at step {from_step})")


@workflow.command("delete-upload")
@click.argument("upload_id", metavar="UPLOAD_ID")
@json_option
@pass_state
def delete_upload(state: CliState, upload_id: str, as_json: bool) -> None:
    """Delete an upload now (refused while a queued or running run names it)."""
    with state.resolve().client() as client:
        _workflows(client).delete_upload(upload_id)
    if as_json:
        _render.as_json({"id": upload_id, "deleted": True})
    else:
        _render.success(f"deleted upload {upload_id}")


@workflow.command("logs")
@click.argument("run_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option("--after", type=int, default=-1, help="Only events after this sequence number.")
@json_option
@pass_state
def logs(state: CliState, run_id: str, follow: bool, after: int, as_json: bool) -> None:
    """Print a run's events (steps, progress, start and end); with --follow, exit 1 when the
    run ends failed or cancelled."""
    with state.resolve().client() as client:
        workflows = _workflows(client)
        if follow and not as_json and _render.is_terminal():
            _finish(_follow(workflows, run_id, as_json=False), False)
            return
        ended = None
        for event in workflows.stream_events(run_id, after=after, follow=follow):
            if event.type == "run.finished":
                ended = event.data.get("status")
            if as_json:
                _render.json_line(event)
            else:
                click.echo(_event_line(event))
    if follow and ended in UNSUCCESSFUL:
        raise SystemExit(1)


__all__ = ["read_input", "workflow"]
