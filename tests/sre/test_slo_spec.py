"""SLO specs: the nine defaults, and errors that name the field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from somaagent.errors import ConfigurationError
from somaagent.sre.slo import LatencySLI, RatioSLI, SLOSpec, UptimeSLI, default_specs, load_specs
from somaagent.sre.slo.spec import Matcher, format_duration, parse_duration, parse_specs

GOOD = """
slos:
  - name: api-availability
    service: api
    objective: 99.9
    sli:
      kind: ratio
      metric: requests_total
      bad: ['code=~"5.."']
"""


def _error_locs(text: str) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        parse_specs(text)
    return [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]


def test_the_nine_default_slos() -> None:
    specs = {s.name: s for s in default_specs()}
    assert {name: (s.service, s.objective) for name, s in specs.items()} == {
        "gateway-availability": ("gateway-api", Decimal("99.9")),
        "gateway-latency": ("gateway-api", Decimal("95")),
        "gateway-error-rate": ("gateway-api", Decimal("99.9")),
        "slm-availability": ("slm-service", Decimal("99.5")),
        "slm-latency": ("slm-service", Decimal("99")),
        "memory-availability": ("memory-gateway", Decimal("99.9")),
        "memory-latency": ("memory-gateway", Decimal("95")),
        "constitution-availability": ("constitution-service", Decimal("99.95")),
        "workflow-success": ("workflows", Decimal("99")),
    }
    assert all(s.window == "30d" and s.window_seconds == 30 * 86400 for s in specs.values())
    latency = {n: s.sli for n, s in specs.items() if isinstance(s.sli, LatencySLI)}
    assert {n: sli.threshold for n, sli in latency.items()} == {
        "gateway-latency": Decimal("0.2"),
        "slm-latency": Decimal("2"),
        "memory-latency": Decimal("0.1"),
    }
    assert isinstance(specs["gateway-availability"].sli, UptimeSLI)
    assert isinstance(specs["gateway-error-rate"].sli, RatioSLI)
    workflow = specs["workflow-success"].sli
    assert isinstance(workflow, RatioSLI)
    assert workflow.metric == "soma_workflow_runs_finished_total"
    assert [str(m) for m in workflow.selector] == ['status!="cancelled"']
    assert [str(m) for m in workflow.bad] == ['status="failed"']


def test_objective_and_budget_are_exact_decimals() -> None:
    (spec,) = parse_specs(GOOD)
    assert spec.objective == Decimal("99.9")  # not 99.900000000000005684...
    assert spec.error_budget == Decimal("0.001")
    assert spec.target == Decimal("0.999")
    assert spec.budget_seconds == Decimal("2592")  # 43.2 minutes of 30 days
    assert [s.window for s in parse_specs(GOOD.replace("objective: 99.9", "objective: 99.95"))]


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (("objective: 99.9", "objective: 100"), "slos.0.objective"),
        (("objective: 99.9", "objective: 0"), "slos.0.objective"),
        (("objective: 99.9", "objective: -5"), "slos.0.objective"),
        (("objective: 99.9", "objective: 99.9\n    target: 1"), "slos.0.target"),
        (("objective: 99.9", "objective: 99.9\n    window: -5m"), "slos.0.window"),
        (("objective: 99.9", "objective: 99.9\n    window: 0d"), "slos.0.window"),
        (("name: api-availability", "name: API Availability"), "slos.0.name"),
        (("kind: ratio", "kind: ratios"), "slos.0.sli"),
        (("bad: ['code=~\"5..\"']", "bad: ['code=~5..']"), "slos.0.sli.ratio.bad.0"),
        (("bad: ['code=~\"5..\"']", "bad: ['code=~\"5(..\"']"), "slos.0.sli.ratio.bad.0"),
        (("bad: ['code=~\"5..\"']", "bad: []"), "slos.0.sli.ratio.bad"),
        (("metric: requests_total", "metric: 'requests-total'"), "slos.0.sli.ratio.metric"),
        (
            ("metric: requests_total", "metric: requests_total\n      color: red"),
            "slos.0.sli.ratio.color",
        ),
    ],
)
def test_invalid_specs_name_the_field(change: tuple[str, str], loc: str) -> None:
    assert loc in _error_locs(GOOD.replace(*change))


def test_latency_needs_a_positive_threshold_and_the_histograms_base_name() -> None:
    text = """
slos:
  - name: fast
    service: api
    objective: 95
    sli: {kind: latency, metric: request_seconds_bucket, threshold: -1}
"""
    assert set(_error_locs(text)) == {
        "slos.0.sli.latency.metric",
        "slos.0.sli.latency.threshold",
    }


def test_duplicate_names_and_empty_files_are_refused() -> None:
    doubled = GOOD + GOOD.split("slos:\n", 1)[1]
    with pytest.raises(ValidationError, match="repeated: api-availability"):
        parse_specs(doubled)
    assert _error_locs("slos: []") == ["slos"]


def test_files_that_cannot_be_read_or_parsed(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read SLO specs"):
        load_specs(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("slos: [", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_specs(broken)


def test_matchers_parse_render_and_match() -> None:
    matcher = Matcher.model_validate('http_route=~"/v1/memory(/.*)?"')
    assert (matcher.label, matcher.op, matcher.value) == ("http_route", "=~", "/v1/memory(/.*)?")
    assert matcher.promql() == 'http_route=~"/v1/memory(/.*)?"'
    assert matcher.accepts("/v1/memory/search") and not matcher.accepts("/v1/memoryx")
    quoted = Matcher.model_validate(r'path="a\"b\\c"')
    assert quoted.value == 'a"b\\c'
    assert quoted.promql() == r'path="a\"b\\c"'
    assert Matcher.model_validate('error_type!=""').accepts("Timeout")
    with pytest.raises(ValidationError, match="__name__"):
        Matcher.model_validate('__name__="x"')


def test_durations() -> None:
    assert parse_duration("30d") == 2_592_000
    assert parse_duration("1h30m") == 5_400
    assert parse_duration("2w") == 1_209_600
    assert format_duration(2_592_000) == "30d"
    assert format_duration(5_400) == "1h30m"
    for bad in ("", "-5m", "5", "5ms", "0s", "1.5h"):
        with pytest.raises(ValueError, match="not a positive duration"):
            parse_duration(bad)


def test_specs_are_frozen() -> None:
    spec = default_specs()[0]
    with pytest.raises(ValidationError):
        spec.objective = Decimal(50)  # type: ignore[misc]
    assert isinstance(spec, SLOSpec)
