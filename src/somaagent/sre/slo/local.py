"""A Prometheus for one machine: the config that scrapes a local gateway, and the server itself.

``soma slo prometheus`` writes ``prometheus.yml`` (job ``somaagent-gateway``, the job the SLO
specs select, scraped every 5 s) and the generated SLO rules into a folder, then runs the
``prometheus`` binary on it (Debian's ``prometheus`` package; ``brew install prometheus``;
or any release build on ``PATH``). The TSDB lives in the same folder, so history survives a
restart, which error budgets need: a budget is counted over everything the window holds.

The project does not ship Prometheus; a missing binary is a :class:`ConfigurationError` that
says how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from somaagent.errors import ConfigurationError
from somaagent.sre import children
from somaagent.sre.slo.rules import rule_files
from somaagent.sre.slo.spec import SLOSpec

__all__ = [
    "GATEWAY_JOB",
    "LocalPrometheus",
    "default_directory",
    "find_prometheus",
    "prometheus_config",
    "start_prometheus",
    "write_config",
]

GATEWAY_JOB = "somaagent-gateway"
"""The scrape job of the gateway: the uptime SLO and the chaos probes select it by name."""
PROMETHEUS_ENV = "SOMA_PROMETHEUS_BIN"
INSTALL_HINT = (
    "install Prometheus (Debian/Ubuntu: apt-get install prometheus; macOS: brew install "
    "prometheus) or point SOMA_PROMETHEUS_BIN at its binary"
)


def find_prometheus() -> str:
    """The ``prometheus`` binary: ``$SOMA_PROMETHEUS_BIN``, else the one on ``PATH``.

    Raises:
        ConfigurationError: there is none (the message says how to install it).
    """
    chosen = os.environ.get(PROMETHEUS_ENV)
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise ConfigurationError(f"{PROMETHEUS_ENV}={chosen} is not an executable file")
        return chosen
    found = shutil.which("prometheus")
    if found is None:
        raise ConfigurationError(f"the prometheus binary was not found: {INSTALL_HINT}")
    return found


def default_directory() -> Path:
    """``$SOMA_DATA_DIR/prometheus``, else ``prometheus`` in the user data folder."""
    base = os.environ.get("SOMA_DATA_DIR") or platformdirs.user_data_dir("somaagent")
    return Path(base) / "prometheus"


def prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    interval: str = "5s",
    rule_globs: Sequence[str] = (),
) -> str:
    """A ``prometheus.yml`` scraping ``targets`` (``{job: ["host:port", ...]}``) every
    ``interval``, evaluating rules at the same pace (so a scrape timeout never exceeds it)."""
    lines = [
        "# Written by `soma slo prometheus`; edit freely, it is rewritten only with --force.",
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        f"  scrape_timeout: {interval}",
    ]
    if rule_globs:
        lines.append("rule_files:")
        lines += [f'  - "{glob}"' for glob in rule_globs]
    lines.append("scrape_configs:")
    for job, addresses in targets.items():
        lines += [
            f"  - job_name: {job}",
            "    static_configs:",
            "      - targets: [" + ", ".join(f'"{a}"' for a in addresses) + "]",
        ]
    return "\n".join(lines) + "\n"


def write_config(
    directory: Path,
    *,
    gateway: str,
    specs: Sequence[SLOSpec] | None = None,
    interval: str = "5s",
    force: bool = False,
) -> Path:
    """Write ``prometheus.yml`` and ``rules/*.yaml`` (the SLOs' rules) into ``directory``.

    An existing ``prometheus.yml`` is kept unless ``force``; the rules are always rewritten,
    so they follow the specs.

    Returns:
        The config file's path.
    """
    rules = directory / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    if specs is not None:
        for old in rules.glob("*.yaml"):
            old.unlink()
        for name, text in rule_files(specs).items():
            (rules / name).write_text(text, encoding="utf-8")
    config = directory / "prometheus.yml"
    if force or not config.exists():
        globs = ["rules/*.yaml"] if specs is not None else []
        text = prometheus_config({GATEWAY_JOB: [gateway]}, interval=interval, rule_globs=globs)
        config.write_text(text, encoding="utf-8")
    return config


@dataclass
class LocalPrometheus:
    """A running ``prometheus``: its URL, folder and process."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes]

    def stop(self, *, timeout: float = 10.0) -> int:
        """Stop the server (SIGTERM, then SIGKILL); its exit status."""
        return children.end(self.process, grace=timeout)


def start_prometheus(
    directory: Path,
    *,
    listen: str = "127.0.0.1:9090",
    binary: str | None = None,
    retention: str = "35d",
    log_level: str = "warn",
    output: int | None = None,
) -> LocalPrometheus:
    """Start ``prometheus`` on ``directory/prometheus.yml`` with its TSDB in ``directory/data``.

    Retention defaults to 35 days, past the SLO windows' 30. ``output`` is a file descriptor
    for the server's log (default: inherited).

    Raises:
        ConfigurationError: no binary, or no config in ``directory``.
    """
    config = directory / "prometheus.yml"
    if not config.exists():
        raise ConfigurationError(f"{config} does not exist: write it first (write_config)")
    command = [
        binary or find_prometheus(),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={listen}",
        "--web.enable-lifecycle",
        f"--log.level={log_level}",
    ]
    process = children.spawn(command, stdout=output, stderr=subprocess.STDOUT if output else None)
    return LocalPrometheus(url=f"http://{listen}", directory=directory, process=process)
