"""Grafana dashboards from SLO specs: one per service, a row per SLO, reading the series the
generated recording rules write (``slo:sli_error:ratio_rate*``, ``slo:error_budget_*``).

Each SLO row has the SLI over the window, the budget remaining, the burn rate over the 1h and
5m windows against the 14.4× page threshold, and the budget remaining over time. The data
source is a dashboard variable, so the file imports into any Grafana with a Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from somaagent.sre.slo.maths import BURN_WINDOWS
from somaagent.sre.slo.promql import decimal_text
from somaagent.sre.slo.rules import ratio_metric
from somaagent.sre.slo.spec import SLOSpec

__all__ = ["dashboard", "dashboard_files", "render_dashboard"]

# Grafana's dashboard model is large, loosely typed JSON; a TypedDict per panel kind would
# restate Grafana's schema without catching anything the import does not.
Panel = dict[str, Any]

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_WIDTH = 24


def _target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": _DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _stat(
    title: str, expr: str, *, x: int, y: int, unit: str, steps: list[dict[str, Any]]
) -> Panel:
    return {
        "type": "stat",
        "title": title,
        "datasource": _DATASOURCE,
        "gridPos": {"h": 6, "w": 6, "x": x, "y": y},
        "targets": [_target(expr, title)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "decimals": 3,
                "noValue": "no data",
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def _timeseries(
    title: str,
    targets: list[dict[str, Any]],
    *,
    x: int,
    y: int,
    w: int,
    unit: str,
    threshold: float | None = None,
) -> Panel:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if threshold is not None:
        steps.append({"color": "red", "value": threshold})
    return {
        "type": "timeseries",
        "title": title,
        "datasource": _DATASOURCE,
        "gridPos": {"h": 6, "w": w, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "line" if threshold else "off"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
    }


def _slo_panels(slo: SLOSpec, y: int, next_id: int) -> list[Panel]:
    match = f'{{slo="{slo.name}"}}'
    objective = decimal_text(slo.objective)
    page = BURN_WINDOWS[0]
    row: Panel = {
        "type": "row",
        "title": f"{slo.name}: {objective}% over {slo.window}",
        "collapsed": False,
        "gridPos": {"h": 1, "w": _WIDTH, "x": 0, "y": y},
        "panels": [],
    }
    target = float(slo.target)
    panels = [
        row,
        _stat(
            f"SLI ({slo.window})",
            f"1 - {ratio_metric(slo.window)}{match}",
            x=0,
            y=y + 1,
            unit="percentunit",
            steps=[{"color": "red", "value": None}, {"color": "green", "value": target}],
        ),
        _stat(
            "Error budget remaining",
            f"slo:error_budget_remaining:ratio{match}",
            x=6,
            y=y + 1,
            unit="percentunit",
            steps=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 0},
                {"color": "green", "value": 0.1},
            ],
        ),
        _timeseries(
            f"Burn rate ({page.long} / {page.short})",
            [
                _target(
                    f"{ratio_metric(page.long)}{match} / {decimal_text(slo.error_budget)}",
                    page.long,
                    "A",
                ),
                _target(
                    f"{ratio_metric(page.short)}{match} / {decimal_text(slo.error_budget)}",
                    page.short,
                    "B",
                ),
            ],
            x=12,
            y=y + 1,
            w=12,
            unit="x",
            threshold=float(page.factor),
        ),
        _timeseries(
            "Error budget remaining over time",
            [_target(f"slo:error_budget_remaining:ratio{match}", "remaining")],
            x=0,
            y=y + 7,
            w=_WIDTH,
            unit="percentunit",
            threshold=None,
        ),
    ]
    for offset, panel in enumerate(panels):
        panel["id"] = next_id + offset
    return panels


def dashboard(service: str, specs: Sequence[SLOSpec]) -> dict[str, Any]:
    """The Grafana dashboard for one service's SLOs (those of ``specs`` in ``service``)."""
    mine = [slo for slo in specs if slo.service == service]
    if not mine:
        raise ValueError(f"no SLO belongs to the service {service!r}")
    panels: list[Panel] = []
    y = 0
    for slo in mine:
        panels += _slo_panels(slo, y, len(panels) + 1)
        y += 13
    return {
        "title": f"SomaAgent SLOs: {service}",
        "uid": f"soma-slo-{service}"[:40],
        "tags": ["somaagent", "slo", service],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render_dashboard(service: str, specs: Sequence[SLOSpec]) -> str:
    """The dashboard as JSON text (stable key order, a trailing newline)."""
    return json.dumps(dashboard(service, specs), indent=2, ensure_ascii=False) + "\n"


def dashboard_files(specs: Sequence[SLOSpec]) -> dict[str, str]:
    """One dashboard per service: ``{"slo-gateway-api.json": "...", ...}``."""
    services = list(dict.fromkeys(slo.service for slo in specs))
    return {f"slo-{service}.json": render_dashboard(service, specs) for service in services}
