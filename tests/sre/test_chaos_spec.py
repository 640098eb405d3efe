"""Chaos experiment specs and presets: seven types, seven presets, errors that name the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.duration import format_duration, parse_duration
from somaagent.sre.chaos.presets import PRESETS, get_preset
from somaagent.sre.chaos.spec import ChaosType, load_experiment

EXPECTED = {
    "gateway_pod_failure": (ChaosType.POD_FAILURE, timedelta(minutes=2)),
    "slm_service_failure": (ChaosType.POD_FAILURE, timedelta(minutes=3)),
    "memory_gateway_latency": (ChaosType.NETWORK_DELAY, timedelta(minutes=5)),
    "vector_store_packet_loss": (ChaosType.NETWORK_LOSS, timedelta(minutes=3)),
    "gateway_cpu_stress": (ChaosType.CPU_STRESS, timedelta(minutes=10)),
    "slm_memory_stress": (ChaosType.MEMORY_STRESS, timedelta(minutes=5)),
    "clickhouse_io_delay": (ChaosType.IO_DELAY, timedelta(minutes=5)),
}


def _valid() -> dict[str, object]:
    return get_preset("memory_gateway_latency").model_dump(mode="json")


def test_the_seven_presets_have_their_fault_and_duration() -> None:
    assert {k: (v.type, v.duration) for k, v in PRESETS.items()} == EXPECTED
    assert get_preset("memory_gateway_latency").fault.latency == timedelta(milliseconds=100)  # type: ignore[union-attr]
    assert get_preset("vector_store_packet_loss").fault.loss == 10  # type: ignore[union-attr]
    assert get_preset("gateway_cpu_stress").fault.load == 80  # type: ignore[union-attr]
    assert get_preset("slm_memory_stress").fault.percent == 70  # type: ignore[union-attr]
    assert get_preset("clickhouse_io_delay").fault.delay == timedelta(milliseconds=50)  # type: ignore[union-attr]


def test_every_preset_targets_the_agreed_labels_and_has_probes() -> None:
    for experiment in PRESETS.values():
        assert experiment.target.namespace == "somaagent"
        assert experiment.target.labels["app.kubernetes.io/name"].startswith("somaagent-")
        assert experiment.hypothesis.probes
        for probe in experiment.hypothesis.probes:
            assert probe.query and 0 < probe.threshold <= 1


def test_the_presets_use_every_type_but_partition() -> None:
    # Seven types, seven presets: two presets are pod failures, none is a partition (a
    # partition experiment is written as a spec; see test_chaos_manifest).
    types = {experiment.type for experiment in PRESETS.values()}
    assert types == set(ChaosType) - {ChaosType.NETWORK_PARTITION}


def test_a_preset_round_trips_through_yaml(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_valid()), encoding="utf-8")
    assert load_experiment(path) == get_preset("memory_gateway_latency")


def test_an_unknown_field_is_an_error_naming_it() -> None:
    data = _valid()
    data["fault"] = {"type": "network_delay", "latency": "100ms", "latnecy": "1s"}
    with pytest.raises(ConfigurationError, match=r"fault\.latnecy: Extra inputs"):
        load_experiment(data)
    data = _valid()
    data["colour"] = "red"
    with pytest.raises(ConfigurationError, match=r"colour"):
        load_experiment(data)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"duration": "-5m"}, "duration: must not be negative"),
        ({"duration": "0s"}, "duration: must be greater than 0"),
        ({"duration": "five minutes"}, "duration: 'five minutes' is not a duration"),
        ({"fault": {"type": "network_delay", "latency": "-1ms"}}, "fault.latency"),
        ({"fault": {"type": "network_loss", "loss": 120}}, "fault.loss"),
        ({"fault": {"type": "cpu_stress", "load": 0}}, "fault.load"),
        ({"fault": {"type": "memory_stress", "percent": 101}}, "fault.percent"),
        (
            {"fault": {"type": "network_partition", "direction": "both"}},
            "fault: direction 'both' needs a peer",
        ),
        ({"target": {"labels": {"a": "b"}, "mode": "fixed"}}, "target: mode 'fixed' needs a value"),
        ({"target": {"labels": {"a": "b"}, "namespace": "Bad_NS"}}, "target.namespace"),
        ({"name": "Not A Name"}, "name:"),
        (
            {"local": {"dependency": "x", "listen": "nowhere", "upstream": "1.2.3.4:5"}},
            "local.listen",
        ),
    ],
)
def test_invalid_specs_name_the_field(patch: dict[str, object], field: str) -> None:
    data = _valid() | patch
    with pytest.raises(ConfigurationError) as caught:
        load_experiment(data)
    assert field in str(caught.value)


def test_a_network_fault_needs_a_local_target() -> None:
    data = _valid()
    del data["local"]
    with pytest.raises(ConfigurationError, match="needs `local`"):
        load_experiment(data)


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="gateway_pod_failure"):
        get_preset("nope")
    assert get_preset("gateway-cpu-stress") is PRESETS["gateway_cpu_stress"]


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_experiment(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [b", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not YAML"):
        load_experiment(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("100ms", 0.1), ("2m", 120), ("1h30m", 5400), ("1.5s", 1.5), ("250us", 0.00025), (3, 3)],
)
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"), [(120, "2m"), (0.1, "100ms"), (5400, "1h30m"), (61.5, "1m1s500ms")]
)
def test_durations_format_as_go(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)
