"""Prometheus rules from SLO specs: recording rules, multiwindow multi-burn-rate alerts and
error-budget alerts, written as YAML that ``promtool check rules`` accepts.

For each SLO, two groups:

* ``slo:<name>:recordings``: ``slo:sli_error:ratio_rate<W>`` for every burn-rate window and the
  SLO window (no sample, never NaN, without traffic), the objective, the budget, and the budget
  consumed and remaining over the SLO window;
* ``slo:<name>:alerts``: ``SLOErrorBudgetBurn`` for each window pair of the SRE Workbook (1h/5m
  at 14.4× and 6h/30m at 6× page as ``critical``; 1d/2h at 3× and 3d/6h at 1× are ``warning``
  tickets), ``SLOErrorBudgetLow`` (warning, 90% consumed) and ``SLOErrorBudgetExhausted``
  (critical, 100% consumed).

Every recorded series and alert carries ``slo`` and ``service`` labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NotRequired, TypedDict

from somaagent.errors import ConfigurationError
from somaagent.sre.slo.maths import BUDGET_CRITICAL, BUDGET_WARNING, BURN_WINDOWS, RATE_WINDOWS
from somaagent.sre.slo.promql import decimal_text, error_ratio_expr
from somaagent.sre.slo.spec import SLOSpec

__all__ = [
    "BUDGET_ALERTS",
    "BURN_ALERT",
    "Rule",
    "RuleGroup",
    "alert_labels",
    "dump_yaml",
    "ratio_metric",
    "render_rules",
    "rule_files",
    "rule_groups",
    "service_file_name",
]

BURN_ALERT = "SLOErrorBudgetBurn"
LOW_ALERT = "SLOErrorBudgetLow"
EXHAUSTED_ALERT = "SLOErrorBudgetExhausted"
BUDGET_ALERTS = (LOW_ALERT, EXHAUSTED_ALERT)


class Rule(TypedDict):
    """One Prometheus rule (recording when ``record`` is set, else an alert)."""

    record: NotRequired[str]
    alert: NotRequired[str]
    expr: str
    labels: dict[str, str]
    annotations: NotRequired[dict[str, str]]
    # ``for`` is a keyword; rules carry it as ``for_`` and :func:`dump_yaml` writes ``for``.
    for_: NotRequired[str]


class RuleGroup(TypedDict):
    """A rule group."""

    name: str
    rules: list[Rule]


def ratio_metric(window: str) -> str:
    """The recorded error ratio over ``window``: ``slo:sli_error:ratio_rate5m``."""
    return f"slo:sli_error:ratio_rate{window}"


def _labels(slo: SLOSpec) -> dict[str, str]:
    return {"slo": slo.name, "service": slo.service}


def _select(metric: str, slo: SLOSpec) -> str:
    return f'{metric}{{slo="{slo.name}"}}'


def _number(value: Decimal) -> str:
    return decimal_text(value)


def _recordings(slo: SLOSpec) -> RuleGroup:
    labels = _labels(slo)
    windows = list(dict.fromkeys([*RATE_WINDOWS, slo.window]))
    rules: list[Rule] = [
        {"record": ratio_metric(w), "expr": error_ratio_expr(slo, w), "labels": dict(labels)}
        for w in windows
    ]
    budget = _number(slo.error_budget)
    consumed = f"{_select(ratio_metric(slo.window), slo)} / {budget}"
    rules += [
        {
            "record": "slo:objective:ratio",
            "expr": f"vector({_number(slo.target)})",
            "labels": dict(labels),
        },
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget})", "labels": dict(labels)},
        {"record": "slo:error_budget_consumed:ratio", "expr": consumed, "labels": dict(labels)},
        {
            "record": "slo:error_budget_remaining:ratio",
            "expr": f"1 - {_select('slo:error_budget_consumed:ratio', slo)}",
            "labels": dict(labels),
        },
    ]
    return {"name": f"slo:{slo.name}:recordings", "rules": rules}


def alert_labels(slo: SLOSpec, alert: str, *, window: Any = None) -> dict[str, str]:
    """The labels an alert of ``slo`` carries (``window``: a :class:`BurnWindow`)."""
    labels = {**_labels(slo)}
    if alert == BURN_ALERT:
        labels.update(severity=window.severity, long_window=window.long, short_window=window.short)
    else:
        labels["severity"] = "warning" if alert == LOW_ALERT else "critical"
    return labels


def alert_annotations(slo: SLOSpec, alert: str, *, window: Any = None) -> dict[str, str]:
    """The annotations of an alert: static text, so rule tests can match them exactly."""
    objective = f"{decimal_text(slo.objective)}%"
    if alert == BURN_ALERT:
        factor = decimal_text(window.factor)
        return {
            "summary": f"{slo.name} is burning its error budget over {factor}× too fast",
            "description": (
                f"{slo.description or slo.name} The error ratio over {window.long} and "
                f"{window.short} is above {factor}× the budget of the {objective} objective "
                f"({slo.window} window)."
            ),
        }
    share = "90%" if alert == LOW_ALERT else "all"
    return {
        "summary": f"{slo.name} has spent {share} of its error budget",
        "description": (
            f"{slo.description or slo.name} At least {share} of the {slo.window} error budget "
            f"of the {objective} objective is spent."
        ),
    }


def _alerts(slo: SLOSpec) -> RuleGroup:
    rules: list[Rule] = []
    for window in BURN_WINDOWS:
        threshold = _number(window.factor * slo.error_budget)
        expr = (
            f"{_select(ratio_metric(window.long), slo)} > {threshold}\n"
            f"and\n"
            f"{_select(ratio_metric(window.short), slo)} > {threshold}"
        )
        rules.append(
            {
                "alert": BURN_ALERT,
                "expr": expr,
                "for_": window.for_,
                "labels": alert_labels(slo, BURN_ALERT, window=window),
                "annotations": alert_annotations(slo, BURN_ALERT, window=window),
            }
        )
    consumed = _select("slo:error_budget_consumed:ratio", slo)
    for alert, level in ((LOW_ALERT, BUDGET_WARNING), (EXHAUSTED_ALERT, BUDGET_CRITICAL)):
        rules.append(
            {
                "alert": alert,
                "expr": f"{consumed} >= {_number(level)}",
                "labels": alert_labels(slo, alert),
                "annotations": alert_annotations(slo, alert),
            }
        )
    return {"name": f"slo:{slo.name}:alerts", "rules": rules}


def rule_groups(specs: Sequence[SLOSpec]) -> list[RuleGroup]:
    """The rule groups for ``specs``: a recordings and an alerts group per SLO."""
    groups: list[RuleGroup] = []
    for slo in specs:
        groups += [_recordings(slo), _alerts(slo)]
    return groups


def service_file_name(service: str) -> str:
    """The rule file of one service: ``slo-gateway-api.yaml``."""
    return f"slo-{service}.yaml"


_HEADER = (
    "# Generated by `soma slo rules` from the SLO specs; do not edit by hand.\n"
    "# Check with: promtool check rules {name}\n"
)


def render_rules(specs: Sequence[SLOSpec], *, name: str = "slo-rules.yaml") -> str:
    """One Prometheus rule file for ``specs``, as YAML text."""
    return _HEADER.format(name=name) + dump_yaml({"groups": rule_groups(specs)})


def rule_files(specs: Sequence[SLOSpec]) -> dict[str, str]:
    """One rule file per service: ``{"slo-gateway-api.yaml": "...", ...}``."""
    services = list(dict.fromkeys(slo.service for slo in specs))
    return {
        service_file_name(service): render_rules(
            [slo for slo in specs if slo.service == service], name=service_file_name(service)
        )
        for service in services
    }


def dump_yaml(data: object) -> str:
    """YAML in a stable, readable form: keys in order, multi-line strings as blocks."""
    try:
        import yaml
    except ModuleNotFoundError as exc:  # pragma: no cover - PyYAML comes with the server extra
        raise ConfigurationError("writing rules needs PyYAML: pip install pyyaml") from exc

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    def _dict(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.MappingNode:
        items = [("for" if key == "for_" else key, item) for key, item in value.items()]
        return dumper.represent_mapping("tag:yaml.org,2002:map", items)

    _Dumper.add_representer(str, _str)
    _Dumper.add_representer(dict, _dict)
    text: str = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return text
