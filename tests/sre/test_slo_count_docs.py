"""Every place that says how many SLOs ship by default says the real count (``defaults.yaml``):
the CLI's help, the module docstrings behind ``GET /v1/slo`` and ``soma slo``, and the README."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

import somaagent.cli.slo as cli_slo
import somaagent.gateway.routes.slo as route_slo
import somaagent.sre.slo.spec as spec
import somaagent.sre.slo.tracker as tracker
from somaagent.cli import main
from somaagent.sre.slo.spec import default_specs

WORDS = {7: "seven", 8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}
README = Path(__file__).resolve().parents[2] / "README.md"
# "nine SLOs", "the nine default SLOs", "the nine shipped defaults", "the nine defaults"
COUNTED = re.compile(
    r"\b(seven|eight|nine|ten|eleven|twelve) (?:(?:default|shipped) )?(?:SLOs?|defaults)\b",
    re.IGNORECASE,
)


def counts_in(text: str) -> set[str]:
    return {word.lower() for word in COUNTED.findall(" ".join(text.split()))}


def test_the_default_count_is_said_alike_everywhere() -> None:
    word = WORDS[len(default_specs())]
    help_text = CliRunner().invoke(main, ["slo", "report", "--help"]).output
    texts = {
        "soma slo report --help": help_text,
        "cli/slo.py": cli_slo.__doc__ or "",
        "routes/slo.py": route_slo.__doc__ or "",
        "spec.load_specs": spec.load_specs.__doc__ or "",
        "tracker.py": tracker.__doc__ or "",
        "README.md": README.read_text(encoding="utf-8"),
    }
    found = {where: counts_in(text) for where, text in texts.items()}
    assert all(found.values()), found  # each place states a count
    assert all(said == {word} for said in found.values()), found
