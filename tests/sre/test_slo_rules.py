"""Generated rules and dashboards: promtool accepts and tests them, deploy/ holds the current
ones, and the numbers in them are exact."""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from somaagent.sre.slo import SLOSpec, default_specs
from somaagent.sre.slo.dashboards import dashboard_files
from somaagent.sre.slo.promql import decimal_text, le_matcher
from somaagent.sre.slo.rules import render_rules, rule_files
from somaagent.sre.slo.ruletests import example_value, rule_test_files
from somaagent.sre.slo.spec import Matcher

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NO_PROMTOOL = "promtool is not installed (Debian: apt-get install prometheus)"


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip(NO_PROMTOOL)
    return binary


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def _write(directory: Path, files: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / name for name in files]


def test_promtool_accepts_the_generated_rules(promtool: str, tmp_path: Path) -> None:
    paths = _write(tmp_path, rule_files(default_specs()))
    single = tmp_path / "all.yaml"
    single.write_text(render_rules(default_specs()), encoding="utf-8")
    result = _run(promtool, "check", "rules", *map(str, paths), str(single))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 6  # 5 service files and all.yaml


def test_promtool_unit_tests_pass(promtool: str, tmp_path: Path) -> None:
    specs = default_specs()
    _write(tmp_path / "rules", rule_files(specs))
    tests = _write(tmp_path / "tests", rule_test_files(specs, rule_dir="../rules"))
    # one promtool per file, side by side: the files are independent
    runs = [
        subprocess.Popen(
            [promtool, "test", "rules", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in tests
    ]
    outputs = []
    for run in runs:
        with run:  # read every run to the end before asserting, so no pipe is left open
            output, _ = run.communicate(timeout=120)
        outputs.append((run.returncode, output))
    for returncode, output in outputs:
        assert returncode == 0, output
        assert "SUCCESS" in output


def test_promtool_fails_a_rule_test_that_is_wrong(promtool: str, tmp_path: Path) -> None:
    # The generated tests can fail: break the 14.4x page and promtool must say so.
    specs = default_specs()[:1]
    rules = render_rules(specs).replace("> 0.0144", "> 1.5")  # a ratio never gets there
    (tmp_path / "slo-gateway-api.yaml").write_text(rules, encoding="utf-8")
    tests = _write(tmp_path, rule_test_files(specs))
    result = _run(promtool, "test", "rules", *map(str, tests))
    assert result.returncode != 0
    assert "SLOErrorBudgetBurn" in result.stdout + result.stderr


def test_deploy_holds_what_the_generator_makes_now() -> None:
    specs = default_specs()
    expected = {
        DEPLOY / "prometheus" / "rules" / name: text for name, text in rule_files(specs).items()
    }
    expected |= {
        DEPLOY / "prometheus" / "tests" / name: text
        for name, text in rule_test_files(specs, rule_dir="../rules").items()
    }
    expected |= {DEPLOY / "grafana" / name: text for name, text in dashboard_files(specs).items()}
    stale = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
    regenerate = (
        "soma slo rules --out deploy/prometheus/rules --tests-out deploy/prometheus/tests; "
        "soma slo dashboards --out deploy/grafana"
    )
    assert not stale, f"regenerate with: {regenerate}"
    on_disk = {*DEPLOY.glob("prometheus/rules/*"), *DEPLOY.glob("prometheus/tests/*")}
    on_disk |= set(DEPLOY.glob("grafana/*"))
    assert on_disk == set(expected), "files in deploy/ that the generator no longer makes"


def test_deploy_prometheus_config_is_valid(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 rule files found" in result.stdout


def test_deploy_manifests_carry_the_chaos_selector_labels() -> None:
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = {d["kind"]: d for d in documents}
    assert {"Namespace", "ConfigMap", "Deployment", "Service"} <= set(kinds)
    deployment = kinds["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/name"] == "somaagent-gateway"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert all(d["metadata"].get("namespace", "somaagent") == "somaagent" for d in documents)
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / resource).exists(), resource
    (rules,) = [g for g in kustomization["configMapGenerator"] if g["name"].endswith("rules")]
    # the ConfigMap mounted as Prometheus's rules holds every generated rule file
    assert sorted(rules["files"]) == sorted(
        f"prometheus/rules/{name}" for name in rule_files(default_specs())
    )


def test_the_deployed_gateway_settings_load_and_leave_the_fault_points_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from somaagent.gateway.settings import Settings

    configmap = yaml.safe_load((DEPLOY / "k8s" / "gateway-configmap.yaml").read_text())
    for name, value in configmap["data"].items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 8080 and str(settings.data_dir) == "/data"
    assert not settings.fault_points_enabled  # in a cluster, chaos comes from Chaos Mesh


def test_thresholds_are_exact_and_no_ratio_can_be_nan() -> None:
    text = render_rules(default_specs())
    assert "> 0.0144\n" in text  # 14.4 x 0.001, not 0.014400000000000001
    assert "> 0.0072\n" in text  # 14.4 x 0.0005 (99.95%)
    assert "vector(0.9995)" in text and "vector(0.0005)" in text
    assert "e-" not in text and "0000000001" not in text
    groups = yaml.safe_load(text)["groups"]
    ratios = [r for g in groups for r in g["rules"] if r.get("record", "").startswith("slo:sli")]
    assert len(ratios) == 9 * 8
    assert all(" > 0)" in r["expr"] for r in ratios)  # no division by zero traffic


def test_every_alert_carries_slo_service_and_severity() -> None:
    groups = yaml.safe_load(render_rules(default_specs()))["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert len(alerts) == 9 * 6
    assert all({"slo", "service", "severity"} <= set(a["labels"]) for a in alerts)
    burn = [a for a in alerts if a["alert"] == "SLOErrorBudgetBurn"]
    assert {(a["labels"]["long_window"], a["labels"]["severity"], a["for"]) for a in burn} == {
        ("1h", "critical", "2m"),
        ("6h", "critical", "15m"),
        ("1d", "warning", "1h"),
        ("3d", "warning", "3h"),
    }


def test_numbers_in_promql_are_plain_decimals() -> None:
    spec = SLOSpec.model_validate(
        {"name": "a", "service": "b", "objective": 99.95, "sli": {"kind": "uptime"}}
    )
    assert decimal_text(spec.error_budget) == "0.0005"
    assert decimal_text(Decimal("1E+1")) == "10"
    assert decimal_text(Decimal("0.0000001")) == "0.0000001"


def test_bucket_bounds_match_how_exporters_write_them() -> None:
    # prometheus_client writes le="0.2" and le="2.0"; other exporters write le="2".
    assert le_matcher(Decimal("0.2")) == r'le=~"0\\.2"'
    assert le_matcher(Decimal("2")) == r'le=~"2|2\\.0"'


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        (['http_route=~"/v1/memory(/.*)?"'], "/v1/memory"),
        (['code=~"5.."'], "500"),
        (['error_type!=""'], "200"),
        (['route!~"/metrics|/healthz"'], ""),
        (['route=~"/v1/(constitution|policy)(/.*)?"'], "/v1/constitution"),
        (['route=~"/v1/conversations/[^/]+/messages"'], "/v1/conversations/x/messages"),
    ],
)
def test_example_label_values_for_rule_tests(matchers: list[str], expected: str) -> None:
    parsed = [Matcher.model_validate(m) for m in matchers]
    assert example_value(parsed) == expected


def test_one_dashboard_per_service_reading_the_recorded_series() -> None:
    files = dashboard_files(default_specs())
    assert sorted(files) == [
        "slo-constitution-service.json",
        "slo-gateway-api.json",
        "slo-memory-gateway.json",
        "slo-slm-service.json",
        "slo-workflows.json",
    ]
    board = json.loads(files["slo-gateway-api.json"])
    assert board["uid"] == "soma-slo-gateway-api"
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [
        "gateway-availability: 99.9% over 30d",
        "gateway-latency: 95% over 30d",
        "gateway-error-rate: 99.9% over 30d",
    ]
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert 'slo:error_budget_remaining:ratio{slo="gateway-latency"}' in exprs
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
