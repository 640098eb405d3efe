"""Start, stop, pause and status through the official Kubernetes client, against a local
stand-in API server that speaks the custom-objects REST paths and checks the CRD schemas."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from somaagent.sre.chaos.injectors import KubernetesInjector
from somaagent.sre.chaos.kube import ChaosMeshClient, KubernetesError
from somaagent.sre.chaos.manifest import PAUSE_ANNOTATION, render_manifest
from somaagent.sre.chaos.presets import PRESETS, get_preset
from somaagent.sre.chaos.runner import run_experiment
from tests.fakes._server import run_asgi
from tests.fakes.k8s_api import FakeKubernetes
from tests.sre.test_chaos_manifest import CRDS

NS = "somaagent"


@pytest.fixture(scope="module")
def k8s_server() -> Iterator[tuple[FakeKubernetes, str]]:
    fake = FakeKubernetes(CRDS)
    with run_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake_k8s(
    k8s_server: tuple[FakeKubernetes, str],
) -> Iterator[tuple[FakeKubernetes, ChaosMeshClient]]:
    fake, url = k8s_server
    fake.objects.clear()
    fake.requests.clear()
    with ChaosMeshClient.connect(host=url) as client:
        yield fake, client


def test_start_status_pause_resume_stop(fake_k8s: tuple[FakeKubernetes, ChaosMeshClient]) -> None:
    fake, client = fake_k8s
    manifest = render_manifest(get_preset("memory_gateway_latency"))
    created = client.create(manifest)
    assert created["metadata"]["uid"]
    assert ("networkchaos", NS, "memory-gateway-latency") in fake.objects

    status = client.status("NetworkChaos", "memory-gateway-latency", NS)
    assert status.phase == "running" and not status.paused

    paused = client.pause("NetworkChaos", "memory-gateway-latency", NS)
    assert paused.phase == "paused" and paused.paused
    stored = fake.objects[("networkchaos", NS, "memory-gateway-latency")]
    assert stored["metadata"]["annotations"][PAUSE_ANNOTATION] == "true"

    resumed = client.resume("NetworkChaos", "memory-gateway-latency", NS)
    assert resumed.phase == "running"
    assert PAUSE_ANNOTATION not in stored_annotations(fake)

    assert [s.name for s in client.list(NS)] == ["memory-gateway-latency"]
    assert client.delete("NetworkChaos", "memory-gateway-latency", NS) is True
    assert client.delete("NetworkChaos", "memory-gateway-latency", NS) is False
    assert client.list(NS) == []

    paths = {(method, path.rsplit("/", 1)[-1]) for method, path, _ in fake.requests}
    assert ("POST", "networkchaos") in paths and ("DELETE", "memory-gateway-latency") in paths
    patches = [ct for method, _, ct in fake.requests if method == "PATCH"]
    assert patches == ["application/merge-patch+json"] * 2


def stored_annotations(fake: FakeKubernetes) -> dict[str, str]:
    obj = fake.objects[("networkchaos", NS, "memory-gateway-latency")]
    annotations: dict[str, str] = obj["metadata"].get("annotations", {})
    return annotations


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_is_accepted_by_the_api(
    preset: str, fake_k8s: tuple[FakeKubernetes, ChaosMeshClient]
) -> None:
    _, client = fake_k8s
    manifest = render_manifest(PRESETS[preset])
    client.create(manifest)
    assert client.status(manifest["kind"], manifest["metadata"]["name"], NS).phase == "running"


def test_api_errors_are_typed(fake_k8s: tuple[FakeKubernetes, ChaosMeshClient]) -> None:
    _, client = fake_k8s
    manifest = render_manifest(get_preset("gateway_cpu_stress"))
    client.create(manifest)
    with pytest.raises(KubernetesError, match="already exists") as conflict:
        client.create(manifest)
    assert conflict.value.status_code == 409 and conflict.value.reason == "AlreadyExists"

    typo = render_manifest(get_preset("slm_memory_stress"))
    typo["spec"]["stressors"]["memroy"] = {"workers": 1}
    with pytest.raises(KubernetesError, match=r'unknown field "spec\.stressors\.memroy"') as strict:
        client.create(typo)
    assert strict.value.status_code == 400

    wrong = render_manifest(get_preset("gateway_pod_failure"))
    wrong["spec"]["mode"] = "several"
    with pytest.raises(KubernetesError, match="is invalid") as invalid:
        client.create(wrong)
    assert invalid.value.status_code == 422

    with pytest.raises(KubernetesError) as missing:
        client.status("PodChaos", "absent", NS)
    assert missing.value.status_code == 404


def test_an_unreachable_api_is_a_clear_error() -> None:
    with (
        ChaosMeshClient.connect(host="http://127.0.0.1:9", timeout=2) as client,
        pytest.raises(KubernetesError, match="unreachable"),
    ):
        client.list(NS)


def test_a_kubernetes_run_creates_then_deletes_the_object(
    fake_k8s: tuple[FakeKubernetes, ChaosMeshClient],
) -> None:
    fake, client = fake_k8s
    experiment = get_preset("gateway_pod_failure")
    seen: list[int] = []

    def querier(expr: str) -> float:
        seen.append(len(fake.objects))  # the object exists exactly while the fault is on
        return 1.0

    hold = timedelta(seconds=0.3)
    injector = KubernetesInjector(experiment, client, duration=hold)
    assert injector.manifest["spec"]["duration"] == "300ms"
    report = run_experiment(
        experiment, injector, querier, interval=timedelta(seconds=0.1), duration=hold
    )
    assert report.mode == "kubernetes" and report.verdict == "passed"
    assert report.injected and report.rolled_back
    assert fake.objects == {}
    assert 1 in seen and seen[0] == 0 and seen[-1] == 0
    created = [r for r in fake.requests if r[0] == "POST"]
    assert created and created[0][1].endswith("/namespaces/somaagent/podchaos")


def test_connect_without_configuration_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from somaagent.errors import ConfigurationError

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigurationError, match="no Kubernetes configuration"):
        ChaosMeshClient.connect(kubeconfig=str(tmp_path / "absent"))


def test_the_cli_shows_pauses_resumes_and_stops_experiments(
    fake_k8s: tuple[FakeKubernetes, ChaosMeshClient],
    k8s_server: tuple[FakeKubernetes, str],
    tmp_path: Path,
) -> None:
    import json

    from click.testing import CliRunner

    from somaagent.cli.chaos import chaos

    fake, client = fake_k8s
    url = k8s_server[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: me, user: {}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: me}}]\n"
    )
    client.create(render_manifest(get_preset("memory_gateway_latency")))
    runner = CliRunner()
    where = ["--kubeconfig", str(kubeconfig)]

    listed = runner.invoke(chaos, ["status", *where, "--json"])
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.output)
    assert (item["kind"], item["name"], item["paused"]) == (
        "NetworkChaos",
        "memory-gateway-latency",
        False,
    )
    paused = runner.invoke(chaos, ["pause", "memory_gateway_latency", *where, "--json"])
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.output)["paused"] is True
    assert fake.objects  # still there, only paused
    resumed = runner.invoke(chaos, ["resume", "memory_gateway_latency", *where, "--json"])
    assert json.loads(resumed.output)["paused"] is False
    table = runner.invoke(chaos, ["status", *where])
    assert "memory-gateway-latency" in table.output and "NetworkChaos" in table.output
    absent = runner.invoke(chaos, ["pause", "gateway_pod_failure", *where])
    assert absent.exit_code == 3 and "no running experiment gateway-pod-failure" in absent.output
    stopped = runner.invoke(chaos, ["stop", *where, "--json"])
    assert json.loads(stopped.output) == {"stopped": ["NetworkChaos/memory-gateway-latency"]}
    assert fake.objects == {}
    empty = runner.invoke(chaos, ["status", *where])
    assert "no experiment in somaagent" in empty.output
