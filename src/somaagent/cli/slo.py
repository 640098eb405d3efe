"""``soma slo``: SLO status from Prometheus, an HTML budget report, rules and dashboards.

``status`` and ``report`` ask Prometheus directly (``--prometheus``, else
``SOMA_PROMETHEUS_URL``, else ``http://127.0.0.1:9090``); ``rules`` and ``dashboards`` need no
server at all; ``prometheus`` runs one on this machine, scraping the local gateway with the
SLO rules loaded. ``--specs FILE`` swaps the nine default SLOs for a YAML file of one's own.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx
from pydantic import ValidationError as PydanticValidationError
from rich.markup import escape
from rich.table import Table

from somaagent.cli import _render
from somaagent.cli._render import CliError
from somaagent.sre import children
from somaagent.sre.chaos.proxy import parse_host_port
from somaagent.sre.slo import SLOSpec, SLOStatus, SLOTracker, load_specs
from somaagent.sre.slo.dashboards import dashboard_files
from somaagent.sre.slo.local import (
    LocalPrometheus,
    default_directory,
    find_prometheus,
    start_prometheus,
    write_config,
)
from somaagent.sre.slo.maths import format_number, format_percent
from somaagent.sre.slo.prometheus import PrometheusError
from somaagent.sre.slo.report import render_html
from somaagent.sre.slo.rules import render_rules, rule_files
from somaagent.sre.slo.ruletests import rule_test_files

PROMETHEUS_ENV = "SOMA_PROMETHEUS_URL"
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"

_STYLES = {
    "healthy": "green",
    "at-risk": "yellow",
    "violated": "bold red",
    "no-data": "dim",
    "unknown": "magenta",
}

prometheus_option = click.option(
    "--prometheus",
    "prometheus_url",
    metavar="URL",
    help=f"Prometheus base URL (default: {PROMETHEUS_ENV}, then {DEFAULT_PROMETHEUS}).",
)
specs_option = click.option(
    "--specs",
    "specs_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML file of SLO specs (default: the nine shipped SLOs).",
)


def _specs(path: Path | None) -> list[SLOSpec]:
    try:
        return load_specs(path)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CliError(f"invalid SLO spec in {path}: {where}: {first['msg']}") from exc


def _prometheus(url: str | None) -> str:
    return url or os.environ.get(PROMETHEUS_ENV) or DEFAULT_PROMETHEUS


@click.group()
def slo() -> None:
    """Service level objectives: status, budget report, Prometheus rules, dashboards."""


@slo.command("status")
@prometheus_option
@specs_option
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as JSON.")
def status(prometheus_url: str | None, specs_file: Path | None, as_json: bool) -> None:
    """Each SLO's SLI, error budget and status, from Prometheus."""
    url = _prometheus(prometheus_url)
    with SLOTracker(url, _specs(specs_file)) as tracker:
        statuses = tracker.status()
    if as_json:
        _render.as_json([s.model_dump(mode="json") for s in statuses])
        return
    _status_table(statuses)
    errors = {s.error for s in statuses if s.error}
    for error in sorted(errors):
        _render.error(error)


def _burn(status: SLOStatus) -> str:
    fastest = status.burn_rates[0] if status.burn_rates else None
    if fastest is None or fastest.long_rate is None:
        return "—"
    mark = " !" if any(b.firing for b in status.burn_rates) else ""
    return f"{format_number(fastest.long_rate)}×{mark}"


def _budget_left(status: SLOStatus) -> str:
    consumed = status.budget.consumed
    if consumed is not None and consumed > 1:
        return f"none ({format_number(consumed)}× spent)"
    return format_percent(status.budget.remaining)


def _status_table(statuses: list[SLOStatus]) -> None:
    table = Table(show_edge=False, header_style="bold")
    for column in ("SLO", "Objective", "SLI", "Budget left", "Burn 1h", "Status", "Reason"):
        table.add_column(column, no_wrap=column != "Reason", justify="left")
    for s in statuses:
        sli = "—" if s.sli is None else f"{format_number(s.sli, digits=5)}%"
        style = _STYLES.get(s.status, "")
        table.add_row(
            s.name,
            f"{format_number(s.objective)}% / {s.window}",
            sli,
            _budget_left(s),
            _burn(s),
            f"[{style}]{s.status}[/]",
            escape(s.reason),
        )
    _render.table_console().print(table)


@slo.command("report")
@prometheus_option
@specs_option
@click.option(
    "--html",
    "html_file",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the report (statuses and budget charts) to this HTML file.",
)
@click.option(
    "--hours",
    type=click.FloatRange(min=0.1),
    default=24.0,
    show_default=True,
    help="How far back the budget charts go.",
)
def report(
    prometheus_url: str | None, specs_file: Path | None, html_file: Path, hours: float
) -> None:
    """An HTML page with each SLO's status and its error budget over time."""
    url = _prometheus(prometheus_url)
    end = datetime.now(UTC)
    start = end - timedelta(hours=hours)
    with SLOTracker(url, _specs(specs_file)) as tracker:
        statuses = tracker.status(at=end)
        trends = {}
        for spec in tracker.specs:
            try:
                trends[spec.name] = tracker.trend(spec, start=start, end=end)
            except PrometheusError as exc:
                _render.note(f"{spec.name}: no trend ({exc.message})")
                trends[spec.name] = []
    html = render_html(statuses, trends, prometheus_url=url, generated_at=end)
    try:
        html_file.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {html_file}: {exc}") from exc
    _render.success(f"wrote {html_file} ({len(statuses)} SLOs)")


@slo.command("rules")
@specs_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one rule file per service into this folder instead of printing them.",
)
@click.option(
    "--tests-out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write `promtool test rules` files (one per rule file) into this folder.",
)
def rules(specs_file: Path | None, out: Path | None, tests_out: Path | None) -> None:
    """The Prometheus recording and alerting rules for the SLOs (works offline)."""
    specs = _specs(specs_file)
    if out is None:
        if tests_out is not None:
            raise CliError("--tests-out needs --out (the tests refer to the rule files)")
        click.echo(render_rules(specs), nl=False)
        return
    written = _write(out, rule_files(specs))
    if tests_out is not None:
        relative = os.path.relpath(out.resolve(), tests_out.resolve())
        written += _write(tests_out, rule_test_files(specs, rule_dir=relative))
    _render.success(f"wrote {len(written)} files: {', '.join(str(p) for p in written)}")


@slo.command("dashboards")
@specs_option
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one Grafana dashboard (JSON) per service into this folder.",
)
def dashboards(specs_file: Path | None, out: Path) -> None:
    """Grafana dashboards for the SLOs, one per service (works offline)."""
    written = _write(out, dashboard_files(_specs(specs_file)))
    _render.success(f"wrote {len(written)} files: {', '.join(str(p) for p in written)}")


def _write(directory: Path, files: dict[str, str]) -> list[Path]:
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = directory / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise CliError(f"cannot write into {directory}: {exc}") from exc
    return written


@slo.command("prometheus")
@specs_option
@click.option(
    "--gateway",
    metavar="HOST:PORT",
    help="The gateway to scrape (default: the host and port of $SOMA_BASE_URL, else "
    "127.0.0.1:8080).",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help=f"Where Prometheus listens (default: the host and port of ${PROMETHEUS_ENV}, else "
    "127.0.0.1:9090).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Its config, rules and data (default: $SOMA_DATA_DIR/prometheus).",
)
@click.option("--interval", default="5s", show_default=True, help="Scrape and rule interval.")
@click.option("--force", is_flag=True, help="Rewrite prometheus.yml even if it exists.")
@click.option("--config-only", is_flag=True, help="Write the config and rules; do not start.")
def prometheus(
    specs_file: Path | None,
    gateway: str | None,
    listen: str | None,
    directory: Path | None,
    interval: str,
    force: bool,
    config_only: bool,
) -> None:
    """Run Prometheus on this machine, scraping the gateway, with the SLO rules loaded.

    Data stays in --dir between runs (error budgets are counted over all of it). Stops on
    Ctrl-C. Needs the prometheus binary (Debian: apt-get install prometheus).
    """
    gateway = gateway or _host_port(os.environ.get("SOMA_BASE_URL"), "127.0.0.1:8080")
    listen = listen or _host_port(os.environ.get(PROMETHEUS_ENV), "127.0.0.1:9090")
    for option, value in (("--gateway", gateway), ("--listen", listen)):
        try:
            parse_host_port(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
    folder = directory or default_directory()
    try:
        config = write_config(
            folder, gateway=gateway, specs=_specs(specs_file), interval=interval, force=force
        )
    except OSError as exc:
        raise CliError(f"cannot write into {folder}: {exc}") from exc
    if config_only:
        _render.success(f"wrote {config} and {folder / 'rules'}")
        return
    binary = find_prometheus()
    with children.ended_on_exit():
        server = start_prometheus(folder, listen=listen, binary=binary)
        try:
            _wait_ready(server)
            _render.success(f"Prometheus on {server.url}, scraping {gateway} every {interval}")
            _render.note(f"config {config}; data {folder / 'data'}")
            _render.note(f"export SOMA_PROMETHEUS_URL={server.url}   # for soma slo / chaos / sre")
            while server.process.poll() is None:
                time.sleep(0.5)
            raise CliError(f"prometheus exited with status {server.process.returncode}")
        except KeyboardInterrupt:
            _render.note("stopping Prometheus")
        finally:
            server.stop()


def _host_port(url: str | None, default: str) -> str:
    """``host:port`` of ``url`` (its scheme's port when it names none), else ``default``."""
    if not url:
        return default
    parts = urlsplit(url)
    if not parts.hostname:
        return default
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _wait_ready(server: LocalPrometheus, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise CliError(
                f"prometheus exited with status {server.process.returncode} at start "
                "(its messages are above)"
            )
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise CliError(f"prometheus did not become ready at {server.url} within {timeout:g} s")
