"""Chaos Mesh manifests: every preset passes the strict CRD schema and the webhook rules;
unknown fields and webhook violations are refused, each field named."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.crds import CrdSchemas, ManifestError
from somaagent.sre.chaos.manifest import KINDS, check_manifest, render_manifest
from somaagent.sre.chaos.presets import PRESETS, get_preset

# Vendored with the tests (licence and provenance in the folder), so a fresh clone runs them.
CRDS = Path(__file__).resolve().parents[1] / "data" / "chaos-mesh"


@pytest.fixture(scope="module")
def schemas() -> CrdSchemas:
    return CrdSchemas(CRDS)


def _manifest(preset: str, schemas: CrdSchemas) -> dict[str, Any]:
    return copy.deepcopy(render_manifest(get_preset(preset), schemas=schemas))


def _problems(manifest: dict[str, Any], schemas: CrdSchemas | None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        check_manifest(manifest, schemas=schemas)
    return caught.value.problems


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_renders_a_valid_manifest(preset: str, schemas: CrdSchemas) -> None:
    experiment = PRESETS[preset]
    manifest = render_manifest(experiment, schemas=schemas)
    assert manifest["apiVersion"] == "chaos-mesh.org/v1alpha1"
    assert manifest["kind"] == KINDS[experiment.type]
    assert manifest["metadata"]["namespace"] == "somaagent"
    assert manifest["spec"]["selector"]["labelSelectors"] == experiment.target.labels
    assert manifest["spec"]["duration"]
    assert schemas.schema_errors(manifest) == []


def test_fault_parameters_land_where_chaos_mesh_reads_them(schemas: CrdSchemas) -> None:
    delay = _manifest("memory_gateway_latency", schemas)["spec"]
    assert delay["action"] == "delay" and delay["delay"]["latency"] == "100ms"
    loss = _manifest("vector_store_packet_loss", schemas)["spec"]
    assert loss["action"] == "loss" and loss["loss"]["loss"] == "10"
    cpu = _manifest("gateway_cpu_stress", schemas)["spec"]
    assert cpu["stressors"]["cpu"] == {"workers": 2, "load": 80}
    memory = _manifest("slm_memory_stress", schemas)["spec"]
    assert memory["stressors"]["memory"]["size"] == "70%"
    io = _manifest("clickhouse_io_delay", schemas)["spec"]
    assert io["action"] == "latency" and io["delay"] == "50ms" and io["volumePath"]
    pod = _manifest("gateway_pod_failure", schemas)["spec"]
    assert pod["action"] == "pod-failure" and pod["duration"] == "2m"


def test_unknown_fields_are_refused_at_any_depth(schemas: CrdSchemas) -> None:
    manifest = _manifest("gateway_cpu_stress", schemas)
    manifest["spec"]["stressor"] = {}
    manifest["spec"]["stressors"]["cpu"]["lod"] = 80
    manifest["spec"]["selector"]["labelSelector"] = {"a": "b"}
    manifest["extra"] = 1
    assert _problems(manifest, schemas) == [
        "extra: unknown field",
        "spec.selector.labelSelector: unknown field",
        "spec.stressor: unknown field",
        "spec.stressors.cpu.lod: unknown field",
    ]


def test_schema_types_enums_and_ranges_are_checked(schemas: CrdSchemas) -> None:
    manifest = _manifest("gateway_cpu_stress", schemas)
    manifest["spec"]["stressors"]["cpu"]["load"] = 150
    manifest["spec"]["mode"] = "some"
    problems = _problems(manifest, schemas)
    assert any(p.startswith("spec.stressors.cpu.load:") for p in problems)
    assert any(p.startswith("spec.mode:") for p in problems)
    delay = _manifest("memory_gateway_latency", schemas)
    delay["spec"]["delay"]["latency"] = "100 milliseconds"
    assert any(p.startswith("spec.delay.latency") for p in _problems(delay, schemas))


@pytest.mark.parametrize(
    ("preset", "edit", "expected"),
    [
        ("gateway_pod_failure", lambda s: s.pop("duration"), "spec.duration: required"),
        ("slm_memory_stress", lambda s: s.update(stressors={}), "at least one stressor"),
        (
            "gateway_cpu_stress",
            lambda s: s["stressors"]["cpu"].update(workers=0),
            "spec.stressors.cpu.workers: must be at least 1",
        ),
        ("gateway_cpu_stress", lambda s: s.update(mode="fixed"), "spec.value: required"),
        (
            "gateway_cpu_stress",
            lambda s: s.update(mode="fixed-percent", value="150"),
            "must be in (0,100]",
        ),
        ("gateway_cpu_stress", lambda s: s.update(mode="fixed", value="0"), "greater than 0"),
        ("memory_gateway_latency", lambda s: s.pop("delay"), "spec.delay: required"),
        (
            "vector_store_packet_loss",
            lambda s: s["loss"].update(loss="lots"),
            "spec.loss.loss: 'lots' is not a percentage",
        ),
        ("clickhouse_io_delay", lambda s: s.update(delay="soon"), "spec.delay: 'soon'"),
        (
            "slm_memory_stress",
            lambda s: s["stressors"]["memory"].update(size="lots"),
            "spec.stressors.memory.size",
        ),
        ("gateway_cpu_stress", lambda s: s.update(duration="-1m"), "spec.duration"),
    ],
)
def test_webhook_rules_are_enforced(preset: str, edit: Any, expected: str) -> None:
    manifest = copy.deepcopy(render_manifest(get_preset(preset)))
    edit(manifest["spec"])
    problems = _problems(manifest, None)
    assert any(expected in problem for problem in problems), problems


def test_partition_from_needs_a_target() -> None:
    manifest = copy.deepcopy(render_manifest(get_preset("memory_gateway_latency")))
    manifest["spec"] |= {"action": "partition", "direction": "both"}
    del manifest["spec"]["delay"]
    assert "spec.target: required for direction both" in _problems(manifest, None)


def test_metadata_rules() -> None:
    manifest = copy.deepcopy(render_manifest(get_preset("gateway_cpu_stress")))
    manifest["metadata"]["name"] = "Bad_Name"
    manifest["metadata"]["labels"]["bad key!"] = "x"
    manifest["metadata"]["uidd"] = "x"
    manifest["apiVersion"] = "chaos-mesh.org/v1"
    problems = _problems(manifest, None)
    assert "apiVersion: must be chaos-mesh.org/v1alpha1" in problems
    assert "metadata.uidd: unknown field" in problems
    assert any(p.startswith("metadata.name:") for p in problems)
    assert any(p.startswith("metadata.labels.bad key!") for p in problems)


def test_crd_folder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        CrdSchemas.locate(tmp_path / "absent")
    with pytest.raises(ConfigurationError, match=r"no chaos-mesh\.org CustomResourceDefinitions"):
        CrdSchemas.locate(tmp_path)
    assert CrdSchemas.locate(None) is None or os.environ.get("SOMA_CHAOS_CRDS")


def test_the_crd_schemas_alone_accept_unknown_fields(schemas: CrdSchemas) -> None:
    # Why the strict copy exists: the published schema would let a typo through.
    import yaml
    from jsonschema import Draft7Validator

    raw = yaml.safe_load((CRDS / "chaos-mesh.org_stresschaos.yaml").read_text())
    schema = raw["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    manifest = _manifest("gateway_cpu_stress", schemas)
    manifest["spec"]["stressors"]["cpu"]["lod"] = 80
    assert list(Draft7Validator(schema).iter_errors(manifest)) == []
    assert schemas.schema_errors(manifest) == ["spec.stressors.cpu.lod: unknown field"]


def test_a_partition_spec_renders_a_valid_manifest(schemas: CrdSchemas) -> None:
    from somaagent.sre.chaos.spec import load_experiment

    data = get_preset("memory_gateway_latency").model_dump(mode="json")
    data["name"] = "memory-partition"
    data["fault"] = {
        "type": "network_partition",
        "direction": "both",
        "peer": {"labels": {"app.kubernetes.io/name": "somaagent-qdrant"}, "mode": "all"},
    }
    manifest = render_manifest(load_experiment(data), schemas=schemas)
    assert manifest["kind"] == "NetworkChaos"
    assert manifest["spec"]["action"] == "partition"
    assert manifest["spec"]["target"]["selector"]["labelSelectors"] == {
        "app.kubernetes.io/name": "somaagent-qdrant"
    }
