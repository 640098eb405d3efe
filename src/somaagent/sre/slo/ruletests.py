"""``promtool test rules`` unit tests for the generated rules, one test file per rule file.

Three cases per SLO, on synthetic series that satisfy its selectors:

* **no traffic**: the error-ratio series are absent (never NaN) and no alert fires;
* **all bad**: the 1h/5m and 6h/30m burn-rate alerts page, the 1d/2h one opens a ticket
  after its hour, and both budget alerts fire;
* **95% of the budget spent**: only ``SLOErrorBudgetLow`` fires.

Label values for the synthetic series are derived from the matchers: a literal for ``=``, a
string the regex accepts for ``=~`` (simple regexes: literals, ``.``, classes, groups,
alternation, ``? * +``), something else for ``!=`` and ``!~``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from somaagent.sre.slo.maths import BURN_WINDOWS
from somaagent.sre.slo.promql import decimal_text
from somaagent.sre.slo.rules import (
    BURN_ALERT,
    EXHAUSTED_ALERT,
    LOW_ALERT,
    alert_annotations,
    alert_labels,
    dump_yaml,
    ratio_metric,
    rule_groups,
    service_file_name,
)
from somaagent.sre.slo.spec import LatencySLI, Matcher, RatioSLI, SLOSpec, UptimeSLI

__all__ = ["example_value", "render_rule_tests", "rule_test_files"]

_FALLBACKS = ("", "200", "example", "x", "ok", "GET")
_BURN_MINUTES = 70  # long enough for the 1d/2h alert's `for: 1h`, short of 3d/6h's 3h


def _sample_regex(pattern: str) -> str:
    """A short string that a simple regex probably accepts (checked by the caller)."""
    out: list[str] = []
    i = 0
    depth_skip = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            token = pattern[i + 1]
            i += 2
        elif char == "[":
            end = pattern.index("]", i + 1 if pattern[i + 1] != "]" else i + 2)
            body = pattern[i + 1 : end]
            token = "x" if body.startswith("^") else body[0]
            i = end + 1
        elif char == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(pattern[j], 0)
                j += 1
            group = pattern[i + 1 : j - 1].removeprefix("?:")
            token = _sample_regex(_first_alternative(group))
            i = j
        elif char == "|" and depth_skip == 0:
            break  # the first alternative is enough
        elif char == ".":
            token, i = "0", i + 1
        else:
            token, i = char, i + 1
        quantifier = pattern[i] if i < len(pattern) else ""
        if quantifier in ("?", "*"):
            i += 1
            token = ""
        elif quantifier == "+":
            i += 1
        out.append(token)
    return "".join(out)


def _first_alternative(pattern: str) -> str:
    depth = 0
    for index, char in enumerate(pattern):
        if char == "\\":
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "|" and depth == 0 and (index == 0 or pattern[index - 1] != "\\"):
            return pattern[:index]
    return pattern


def example_value(matchers: Sequence[Matcher]) -> str:
    """A label value that every matcher (all on one label) accepts.

    Raises:
        ValueError: none was found (a regex too intricate for the sampler).
    """
    candidates: list[str] = []
    for matcher in matchers:
        if matcher.op == "=":
            candidates.append(matcher.value)
        elif matcher.op == "=~":
            with contextlib.suppress(ValueError, IndexError):
                candidates.append(_sample_regex(matcher.value))
    candidates += [*_FALLBACKS, "500"]
    for value in candidates:
        if all(m.accepts(value) for m in matchers):
            return value
    shown = ", ".join(m.promql() for m in matchers)
    raise ValueError(f"cannot find a label value accepted by {shown}")


def _negated(matcher: Matcher) -> Matcher:
    op = {"=": "!=", "!=": "=", "=~": "!~", "!~": "=~"}[matcher.op]
    return Matcher(label=matcher.label, op=op, value=matcher.value)


def _labels(matchers: Sequence[Matcher]) -> dict[str, str]:
    by_label: dict[str, list[Matcher]] = {}
    for matcher in matchers:
        by_label.setdefault(matcher.label, []).append(matcher)
    return {label: example_value(group) for label, group in by_label.items()}


def _series(metric: str, labels: dict[str, str]) -> str:
    shown = [f'{k}="{v}"' for k, v in sorted(labels.items()) if v != ""]
    return metric + "{" + ", ".join(shown) + "}"


def _counter(per_minute: int, minutes: int) -> str:
    return f"0+{per_minute}x{minutes}"


def _inputs(slo: SLOSpec, *, bad_per: int, total_per: int, minutes: int) -> list[dict[str, str]]:
    """Input series with ``bad_per`` bad events in every ``total_per`` per minute."""
    sli = slo.sli
    good_per = total_per - bad_per
    if isinstance(sli, RatioSLI):
        base = [*sli.selector]
        good = _labels([*base, _negated(sli.bad[0]), *sli.bad[1:]])
        bad = _labels([*base, *sli.bad])
        series = [{"series": _series(sli.metric, good), "values": _counter(good_per, minutes)}]
        if bad != good:
            series.append(
                {"series": _series(sli.metric, bad), "values": _counter(bad_per, minutes)}
            )
        return series
    if isinstance(sli, LatencySLI):
        labels = _labels(sli.selector)
        bucket = {**labels, "le": decimal_text(sli.threshold)}
        return [
            {
                "series": _series(f"{sli.metric}_count", labels),
                "values": _counter(total_per, minutes),
            },
            {
                "series": _series(f"{sli.metric}_bucket", bucket),
                "values": _counter(good_per, minutes),
            },
        ]
    assert isinstance(sli, UptimeSLI)
    labels = _labels(sli.selector)
    # One sample a minute: all down, all up, or down once and then up.
    if bad_per == total_per:
        values = f"0x{minutes}"
    elif bad_per == 0:
        values = f"1x{minutes}"
    else:
        values = f"0 1x{minutes - 1}"
    return [{"series": _series(sli.metric, labels), "values": values}]


def _expected(slo: SLOSpec, alert: str, *, window: Any = None) -> dict[str, Any]:
    return {
        "exp_labels": alert_labels(slo, alert, window=window),
        "exp_annotations": alert_annotations(slo, alert, window=window),
    }


def _no_traffic(slo: SLOSpec) -> dict[str, Any]:
    inputs = _inputs(slo, bad_per=0, total_per=1, minutes=20)
    for item in inputs:  # the series exist but do not move
        item["values"] = "0x20" if slo.sli.kind != "uptime" else "1x20"
    if isinstance(slo.sli, UptimeSLI):
        inputs = []  # for uptime, "no traffic" means no target at all
    selector = f'{{slo="{slo.name}"}}'
    return {
        "name": f"{slo.name}: no traffic is no data, not NaN, and raises no alert",
        "interval": "1m",
        "input_series": inputs,
        "promql_expr_test": [
            {"expr": ratio_metric(w) + selector, "eval_time": "20m", "exp_samples": []}
            for w in ("5m", "1h", slo.window)
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": name, "exp_alerts": []}
            for name in (BURN_ALERT, LOW_ALERT, EXHAUSTED_ALERT)
        ],
    }


def _all_bad(slo: SLOSpec) -> dict[str, Any]:
    minutes = _BURN_MINUTES + 5
    pages = [w for w in BURN_WINDOWS if Decimal(1) / slo.error_budget > w.factor]
    firing = [w for w in pages if w.for_ in ("2m", "15m", "1h")]
    return {
        "name": f"{slo.name}: everything failing pages, then spends the whole budget",
        "interval": "1m",
        "input_series": _inputs(slo, bad_per=1, total_per=1, minutes=minutes),
        "promql_expr_test": [
            {
                "expr": f'{ratio_metric("5m")}{{slo="{slo.name}"}}',
                "eval_time": f"{_BURN_MINUTES}m",
                "exp_samples": [
                    {"labels": _series(ratio_metric("5m"), _slo_labels(slo)), "value": 1}
                ],
            }
        ],
        "alert_rule_test": [
            {
                "eval_time": f"{_BURN_MINUTES}m",
                "alertname": BURN_ALERT,
                "exp_alerts": [_expected(slo, BURN_ALERT, window=w) for w in firing],
            },
            {
                "eval_time": f"{_BURN_MINUTES}m",
                "alertname": LOW_ALERT,
                "exp_alerts": [_expected(slo, LOW_ALERT)],
            },
            {
                "eval_time": f"{_BURN_MINUTES}m",
                "alertname": EXHAUSTED_ALERT,
                "exp_alerts": [_expected(slo, EXHAUSTED_ALERT)],
            },
        ],
    }


def _nearly_spent(slo: SLOSpec) -> dict[str, Any]:
    # 95% of the budget: bad events are 0.95 × budget of all events, in whole numbers.
    share = slo.error_budget * Decimal("0.95")
    exponent = share.normalize().as_tuple().exponent
    total_per = 10 ** max(0, -exponent if isinstance(exponent, int) else 0)
    bad_per = int(share * total_per)
    minutes, expected = 30, Decimal("0.95")
    inputs = _inputs(slo, bad_per=bad_per, total_per=total_per, minutes=minutes)
    if isinstance(slo.sli, UptimeSLI):
        inputs, expected = _uptime_nearly_spent(slo, minutes)
    eval_at = f"{minutes}m"
    return {
        "name": f"{slo.name}: 95% of the error budget spent warns, and nothing else",
        "interval": "1m",
        "input_series": inputs,
        "promql_expr_test": [
            {
                # rounded: (total - good) / total carries binary noise (0.9499999999999983)
                "expr": f'round(slo:error_budget_consumed:ratio{{slo="{slo.name}"}}, 0.0001)',
                "eval_time": eval_at,
                "exp_samples": [
                    {
                        "labels": _series("", _slo_labels(slo)),
                        "value": float(expected.quantize(Decimal("0.0001"), ROUND_HALF_UP)),
                    }
                ],
            }
        ],
        "alert_rule_test": [
            {
                "eval_time": eval_at,
                "alertname": LOW_ALERT,
                "exp_alerts": [_expected(slo, LOW_ALERT)],
            },
            {"eval_time": eval_at, "alertname": EXHAUSTED_ALERT, "exp_alerts": []},
        ],
    }


def _uptime_nearly_spent(slo: SLOSpec, minutes: int) -> tuple[list[dict[str, str]], Decimal]:
    """Instances scraped once a minute, a few samples down: 90-100% of the budget spent.

    Spreading the samples over instances keeps the test short: one instance would need a
    thousand minutes of samples to spend 95% of a 99.9% budget with a single failed scrape.
    """
    assert isinstance(slo.sli, UptimeSLI)
    samples = minutes + 1
    for instances in range(1, 1001):
        for down in range(1, instances * samples):
            spent = Decimal(down) / (instances * samples * slo.error_budget)
            if spent >= Decimal("0.9"):
                break
        if Decimal("0.9") <= spent < 1:
            break
    else:  # pragma: no cover - budgets this small need another design of test
        raise ValueError(f"{slo.name}: no small uptime series spends 90-100% of the budget")
    labels = _labels(slo.sli.selector)
    series = []
    for index in range(instances):
        zeros = min(samples, max(0, down - index * samples))
        values = " ".join(["0"] * zeros + ["1"] * (samples - zeros))
        series.append(
            {
                "series": _series(slo.sli.metric, {**labels, "instance": f"i{index}"}),
                "values": values,
            }
        )
    return series, spent


def _slo_labels(slo: SLOSpec) -> dict[str, str]:
    return {"slo": slo.name, "service": slo.service}


def render_rule_tests(
    specs: Sequence[SLOSpec], rule_file: str, *, test_name: str = "rules.test.yaml"
) -> str:
    """A ``promtool test rules`` file for the rules of ``specs`` in ``rule_file``."""
    tests: list[dict[str, Any]] = []
    for slo in specs:
        tests += [_no_traffic(slo), _all_bad(slo), _nearly_spent(slo)]
    document = {
        "rule_files": [rule_file],
        "evaluation_interval": "1m",
        # promtool evaluates groups in no fixed order unless told: recordings must come
        # before the alerts that read them, or a test flips between runs
        "group_eval_order": [group["name"] for group in rule_groups(specs)],
        "tests": tests,
    }
    header = (
        "# Generated by `soma slo rules --tests` from the SLO specs; do not edit by hand.\n"
        f"# Run with: promtool test rules {test_name}\n"
    )
    return header + dump_yaml(document)


def rule_test_files(specs: Sequence[SLOSpec], *, rule_dir: str = "") -> dict[str, str]:
    """One test file per service's rule file: ``{"slo-gateway-api.test.yaml": "...", ...}``.

    Args:
        specs: the SLOs.
        rule_dir: where the rule files are, relative to the test files (``../rules``);
            empty when they sit side by side.
    """
    services = list(dict.fromkeys(slo.service for slo in specs))
    files: dict[str, str] = {}
    prefix = rule_dir.rstrip("/") + "/" if rule_dir and rule_dir != "." else ""
    for service in services:
        rule_file = service_file_name(service)
        mine = [slo for slo in specs if slo.service == service]
        test_name = rule_file.removesuffix(".yaml") + ".test.yaml"
        files[test_name] = render_rule_tests(mine, prefix + rule_file, test_name=test_name)
    return files
