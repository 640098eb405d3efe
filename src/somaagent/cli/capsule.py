"""``soma capsule``: list, install, show, execute, remove and scaffold capsules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli._render import CliError
from somaagent.sdk import Client
from somaagent.sdk._capsules import Capsules
from somaagent.types.capsules import Capsule

MANIFEST_TEMPLATE = """\
name: {name}
version: 0.1.0
description: What {name} does, in one sentence.
kind: python
entry: tools.py
tools:
  - name: hello
    description: Greet someone by name.
    input_schema:
      type: object
      properties:
        name: {{type: string, description: who to greet}}
      required: [name]
      additionalProperties: false
    output_schema:
      type: object
      properties:
        greeting: {{type: string}}
      required: [greeting]
    annotations: {{read_only: true, idempotent: true}}
permissions:
  network: none
  filesystem: none
  timeout_s: 10
  memory_mb: 256
  cpu_s: 5
  processes: 8
"""

TOOLS_TEMPLATE = '''\
"""The tools of {name}: one function per tool, called with the arguments as keywords.

It runs in a sandbox with the standard library only: no network, a private scratch
folder as its working directory. Return a dict (the structured result) or any JSON value.
"""


def hello(name: str) -> dict[str, str]:
    return {{"greeting": f"hello {{name}}"}}
'''

TEST_TEMPLATE = '''\
"""Run with: python -m pytest {name}/"""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("tools", Path(__file__).with_name("tools.py"))
tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tools)


def test_hello() -> None:
    assert tools.hello("Ada") == {{"greeting": "hello Ada"}}
'''


def _capsules(client: Client) -> Capsules:
    resource = getattr(client, "capsules", None)
    return resource if isinstance(resource, Capsules) else Capsules(client)


def _out() -> Console:
    return Console(highlight=False)


def _json_list(items: list[Capsule]) -> None:
    _render.as_json([item.model_dump(mode="json") for item in items])


@click.group()
def capsule() -> None:
    """Capsules: sandboxed, versioned tool packages (also served over MCP at /mcp)."""


@capsule.command("list")
@click.option("--installed", "only", flag_value="installed", help="Only installed capsules.")
@click.option("--available", "only", flag_value="available", help="Only the catalog's others.")
@click.option("--search", "query", metavar="TEXT", help="Match in names and descriptions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def list_capsules(state: CliState, only: str | None, query: str | None, as_json: bool) -> None:
    """List your installed capsules and the catalog's others."""
    installed = None if only is None else only == "installed"
    with state.resolve().client() as client:
        items = _capsules(client).list(installed=installed, query=query)
    if as_json:
        _json_list(items)
        return
    if not items:
        _render.note("no capsules")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("Name", "Version", "Kind", "Installed", "Tools", "Description"):
        table.add_column(column, no_wrap=column != "Description")
    for item in items:
        tools = ", ".join(tool.name for tool in item.tools)
        mark = "yes" if item.installed else "-"
        table.add_row(item.name, item.version, item.kind, mark, tools, escape(item.description))
    _render.print_table(table)


@capsule.command("install")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the installed capsule as JSON.")
@pass_state
def install(state: CliState, source: str, as_json: bool) -> None:
    """Install SOURCE: a catalog id (calculator), or a capsule folder or archive (./mytool)."""
    try:
        with state.resolve().client() as client:
            installed = _capsules(client).install(source)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if as_json:
        _render.as_json(installed)
        return
    tools = ", ".join(tool.name for tool in installed.tools)
    _render.success(f"installed {installed.name} {installed.version} (tools: {tools})")


@capsule.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def show(state: CliState, name: str, as_json: bool) -> None:
    """Show a capsule: its tools, schemas, permissions and hashes."""
    with state.resolve().client() as client:
        item = _capsules(client).get(name)
    if as_json:
        _render.as_json(item)
        return
    perms = item.permissions
    network = perms.get("network", "none")
    _render.key_value(
        [
            ("name", item.name),
            ("version", item.version),
            ("kind", item.kind),
            ("installed", "yes" if item.installed else "no (in the catalog)"),
            ("description", item.description),
            ("sha256", item.sha256 or ""),
            ("network", network if isinstance(network, str) else ", ".join(network)),
            (
                "limits",
                f"{perms.get('timeout_s')} s, {perms.get('memory_mb')} MB, "
                f"{perms.get('cpu_s')} CPU s, {perms.get('processes')} processes",
            ),
        ]
    )
    for tool in item.tools:
        _out().print(f"\n[bold]{escape(tool.name)}[/]  {escape(tool.description)}")
        _out().print(f"  input: {escape(json.dumps(tool.input_schema))}", soft_wrap=True)
        if tool.output_schema:
            _out().print(f"  output: {escape(json.dumps(tool.output_schema))}", soft_wrap=True)
        _out().print(f"  sha256: {tool.sha256}")


def _typed_value(value: str, schema: dict[str, Any] | None) -> Any:
    """``--arg`` text as the schema's type: strings stay text, others are read as JSON."""
    if schema is not None and schema.get("type") == "string":
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _arguments(
    input_file: str | None, pairs: tuple[str, ...], properties: dict[str, Any]
) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if input_file is not None:
        try:
            text = sys.stdin.read() if input_file == "-" else Path(input_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--input {input_file}: cannot read it ({exc})") from exc
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise CliError(f"--input is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise CliError("--input must hold a JSON object")
        arguments.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--arg takes key=value, not {pair!r}")
        arguments[key] = _typed_value(value, properties.get(key))
    return arguments


@capsule.command("execute")
@click.argument("name")
@click.argument("tool", required=False)
@click.option("--input", "input_file", metavar="FILE", help="Arguments as a JSON file (- stdin).")
@click.option("--arg", "pairs", multiple=True, metavar="KEY=VALUE", help="One argument.")
@click.option("--version", "version", metavar="VERSION", help="A stored version to run.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole execution as JSON.")
@pass_state
def execute(
    state: CliState,
    name: str,
    tool: str | None,
    input_file: str | None,
    pairs: tuple[str, ...],
    version: str | None,
    as_json: bool,
) -> None:
    """Call TOOL (default: the capsule's first) of NAME in its sandbox; print the result."""
    with state.resolve().client() as client:
        capsules = _capsules(client)
        properties: dict[str, Any] = {}
        if pairs:
            found = capsules.get(name)
            spec = next((t for t in found.tools if tool is None or t.name == tool), None)
            if spec is not None:
                properties = dict(spec.input_schema.get("properties") or {})
        arguments = _arguments(input_file, pairs, properties)
        result = capsules.execute(name, tool, arguments, version=version)
    if as_json:
        _render.as_json(result)
    elif not result.is_error:
        click.echo(result.text if result.text else json.dumps(result.structured))
    if result.is_error:
        raise CliError(result.error or result.text or "the tool failed")
    if not as_json:
        _render.note(f"{result.tool} in {result.duration_ms:.0f} ms, sandbox {result.sandbox_tier}")


@capsule.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def remove(state: CliState, name: str, as_json: bool) -> None:
    """Uninstall NAME (its stored versions stay)."""
    with state.resolve().client() as client:
        _capsules(client).uninstall(name)
    if as_json:
        _render.as_json({"removed": name})
    else:
        _render.success(f"removed {name}")


@capsule.command("init")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Where to create the folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def init(name: str, parent: Path, as_json: bool) -> None:
    """Scaffold a python capsule NAME/ (capsule.yaml, tools.py and a test)."""
    if not name.replace("_", "").replace("-", "").isalnum() or not name[:1].isalpha():
        raise CliError("a capsule name starts with a letter: letters, digits, '-' and '_'")
    folder = parent / name
    if folder.exists():
        raise CliError(f"{folder} already exists")
    folder.mkdir(parents=True)
    (folder / "capsule.yaml").write_text(MANIFEST_TEMPLATE.format(name=name.lower()))
    (folder / "tools.py").write_text(TOOLS_TEMPLATE.format(name=name))
    (folder / "test_tools.py").write_text(TEST_TEMPLATE.format(name=name))
    if as_json:
        files = ["capsule.yaml", "tools.py", "test_tools.py"]
        _render.as_json({"created": str(folder), "files": files})
        return
    _render.success(f"created {folder}/ (edit tools.py, then: soma capsule install {folder})")
