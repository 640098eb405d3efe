"""``soma slo``: offline rules and dashboards, status tables and JSON, bad specs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from somaagent.cli.slo import slo
from tests.sre._prometheus import Prometheus, start_prometheus


@pytest.fixture(scope="module")
def prometheus(prometheus_bin: str) -> Iterator[Prometheus]:
    with start_prometheus({}) as server:
        yield server


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(slo, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_rules_print_offline() -> None:
    code, out, _ = _run("rules")
    assert code == 0
    groups = yaml.safe_load(out)["groups"]
    assert len(groups) == 18  # two per SLO
    assert groups[0]["name"] == "slo:gateway-availability:recordings"


def test_rules_and_tests_written_to_folders(tmp_path: Path) -> None:
    rules, tests = tmp_path / "rules", tmp_path / "tests"
    code, out, _ = _run("rules", "--out", str(rules), "--tests-out", str(tests))
    assert code == 0 and "wrote 10 files" in out  # rules and tests for 5 services
    assert sorted(p.name for p in rules.iterdir())[0] == "slo-constitution-service.yaml"
    test_file = yaml.safe_load((tests / "slo-gateway-api.test.yaml").read_text())
    assert test_file["rule_files"] == ["../rules/slo-gateway-api.yaml"]


def test_tests_need_the_rules_folder(tmp_path: Path) -> None:
    code, _, err = _run("rules", "--tests-out", str(tmp_path))
    assert code == 1
    assert "--tests-out needs --out" in err


def test_dashboards_written(tmp_path: Path) -> None:
    code, _, _ = _run("dashboards", "--out", str(tmp_path))
    assert code == 0
    boards = sorted(tmp_path.glob("*.json"))
    assert len(boards) == 5  # one per service
    assert all(json.loads(p.read_text())["panels"] for p in boards)


def test_a_bad_spec_file_names_the_field(tmp_path: Path) -> None:
    specs = tmp_path / "slos.yaml"
    specs.write_text(
        "slos:\n  - {name: x, service: y, objective: 100, sli: {kind: uptime}}\n",
        encoding="utf-8",
    )
    code, _, err = _run("rules", "--specs", str(specs))
    assert code == 1
    assert "slos.0.objective" in err and "less than 100" in err


def test_status_json_with_prometheus_down() -> None:
    code, out, _ = _run("status", "--json", "--prometheus", "http://127.0.0.1:9")
    assert code == 0
    statuses = json.loads(out)
    assert [s["status"] for s in statuses] == ["unknown"] * 9
    assert statuses[0]["error"].startswith("Prometheus at http://127.0.0.1:9 is unreachable")


def test_status_table_reads_the_url_from_the_environment(prometheus: Prometheus) -> None:
    code, out, err = _run("status", env={"SOMA_PROMETHEUS_URL": prometheus.url})
    assert code == 0, err
    lines = [line for line in out.splitlines() if "no-data" in line]
    assert len(lines) == 9
    assert "constitution-availability" in out and "99.95% / 30d" in out
    assert "no events in the last 30d" in out
