"""`soma slo prometheus`: the config and rules it writes, and a real Prometheus it runs that
scrapes a real gateway with the SLO rules loaded."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from somaagent.cli.slo import slo
from somaagent.errors import ConfigurationError
from somaagent.sre.slo import default_specs
from somaagent.sre.slo.local import GATEWAY_JOB, find_prometheus, write_config
from tests.fakes._server import free_port
from tests.sre._prometheus import serve_gateway, wait_for
from tests.sre.conftest import gateway_settings


def test_the_config_scrapes_the_gateway_job_the_slos_select(tmp_path: Path) -> None:
    config = write_config(tmp_path, gateway="127.0.0.1:8080", specs=default_specs())
    parsed = yaml.safe_load(config.read_text())
    (job,) = parsed["scrape_configs"]
    assert job["job_name"] == GATEWAY_JOB
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8080"]}]
    assert parsed["global"]["scrape_interval"] == "5s"
    assert parsed["rule_files"] == ["rules/*.yaml"]
    assert sorted(p.name for p in (tmp_path / "rules").iterdir()) == [
        "slo-constitution-service.yaml",
        "slo-gateway-api.yaml",
        "slo-memory-gateway.yaml",
        "slo-slm-service.yaml",
        "slo-workflows.yaml",
    ]


def test_an_edited_config_is_kept_unless_forced(tmp_path: Path) -> None:
    config = write_config(tmp_path, gateway="127.0.0.1:8080", specs=default_specs())
    config.write_text(config.read_text() + "# mine\n")
    write_config(tmp_path, gateway="127.0.0.1:9999", specs=default_specs())
    assert "# mine" in config.read_text() and "9999" not in config.read_text()
    write_config(tmp_path, gateway="127.0.0.1:9999", specs=default_specs(), force=True)
    assert "# mine" not in config.read_text() and "127.0.0.1:9999" in config.read_text()


def test_the_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    config = write_config(tmp_path, gateway="127.0.0.1:8080", specs=default_specs())
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("/rules/slo-") == 5  # it found and checked every rule file
    assert "SUCCESS" in checked.stdout


def test_a_missing_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("SOMA_PROMETHEUS_BIN", raising=False)
    with pytest.raises(ConfigurationError, match="apt-get install prometheus"):
        find_prometheus()
    monkeypatch.setenv("SOMA_PROMETHEUS_BIN", "/nonexistent/prometheus")
    with pytest.raises(ConfigurationError, match="not an executable"):
        find_prometheus()


def test_config_only_writes_and_starts_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        slo, ["prometheus", "--dir", str(tmp_path), "--gateway", "127.0.0.1:8081", "--config-only"]
    )
    assert result.exit_code == 0, result.output
    assert "127.0.0.1:8081" in (tmp_path / "prometheus.yml").read_text()
    assert not (tmp_path / "data").exists()
    bad = CliRunner().invoke(slo, ["prometheus", "--gateway", "nowhere", "--config-only"])
    assert bad.exit_code == 2 and "--gateway" in bad.output


@pytest.mark.slow
def test_soma_slo_prometheus_scrapes_the_gateway_with_the_rules_loaded(
    prometheus_bin: str, tmp_path: Path, fake_openai: Any
) -> None:
    settings = gateway_settings(tmp_path / "gw", fake_openai)
    with serve_gateway(settings) as gateway:
        listen = f"127.0.0.1:{free_port()}"
        code = "from somaagent.cli.slo import slo; slo()"
        args = ["prometheus", "--dir", str(tmp_path / "prom"), "--gateway", gateway.address]
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args, "--listen", listen, "--interval", "1s"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://{listen}"
        try:

            def query(promql: str) -> list[Any]:
                assert process.poll() is None, process.communicate()
                try:
                    body = httpx.get(f"{url}/api/v1/query", params={"query": promql}).json()
                except (httpx.HTTPError, ValueError):  # not up, or not ready (a text 503)
                    return []
                return list(body["data"]["result"])

            wait_for(lambda: query(f'up{{job="{GATEWAY_JOB}"}} == 1'), timeout=60, what="a scrape")
            groups = httpx.get(f"{url}/api/v1/rules").json()["data"]["groups"]
            assert len(groups) == 18 and all(
                rule["health"] != "err" for g in groups for rule in g["rules"]
            )
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
            assert process.returncode == 0, err
            assert f"Prometheus on {url}" in out + err
            assert (tmp_path / "prom" / "data").is_dir()  # the TSDB stays for the next run
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_config_follows_soma_base_url_when_no_gateway_is_given(tmp_path: Path) -> None:
    """`soma slo prometheus` with no flags scrapes the gateway the CLI talks to, so the
    README's bare command fits a gateway on any port."""
    env = {"SOMA_BASE_URL": "http://127.0.0.1:18123"}
    result = CliRunner().invoke(
        slo, ["prometheus", "--dir", str(tmp_path), "--config-only"], env=env
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == GATEWAY_JOB]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:18123"]
