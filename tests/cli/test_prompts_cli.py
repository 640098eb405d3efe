"""``soma prompts`` against the real gateway on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from somaagent.cli import main
from somaagent.cli.prompts import prompts
from tests.cli.conftest import Invoke
from tests.fakes.fixtures import FakeVendor
from tests.prompts.served import Running, serve_gateway

SUMMARY = """\
---
role: system
description: Summarise documents
variables:
  audience: {type: string, default: engineers}
  points: {type: integer, default: 3}
  topics: {type: list, default: []}
---
Summarise for {{ audience }} in {{ points }} points.
{% for topic in topics %}
- cover {{ topic }}
{% endfor %}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Running]:
    with serve_gateway(tmp_path_factory.mktemp("gateway"), fake_openai) as running:
        yield running


@pytest.fixture(autouse=True)
def _wired(served: Running, monkeypatch: pytest.MonkeyPatch, config_dir: Path) -> None:
    """The CLI pointed at the served gateway, with ``soma prompts`` registered."""
    monkeypatch.setenv("SOMA_API_KEY", served.admin_key)
    monkeypatch.setenv("SOMA_BASE_URL", served.base_url)
    if "prompts" not in main.commands:  # until the CLI registers the group itself
        main.add_command(prompts)


def test_push_render_label_roll_back_and_diff(invoke: Invoke, tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "cli_summary.prompt").write_text(SUMMARY)
    (folder / "cli_ask.md").write_text("Any questions?\n")
    pushed = invoke("prompts", "push", str(folder))
    assert pushed.exit_code == 0, pushed.output
    assert "cli_ask@1 saved" in pushed.stdout and "cli_summary@1 saved" in pushed.stdout
    again = invoke("prompts", "push", str(folder))
    assert "cli_summary@1 unchanged" in again.stderr

    rendered = invoke(
        "prompts", "render", "cli_summary", "--var", "points=5", "--var", 'topics=["cost"]'
    )
    assert rendered.exit_code == 0, rendered.output
    assert rendered.stdout == "Summarise for engineers in 5 points.\n- cover cost\n"
    assert "cli_summary@1 (system," in rendered.stderr and "tokens" in rendered.stderr

    (folder / "cli_summary.prompt").write_text(SUMMARY.replace("Summarise", "Briefly summarise"))
    assert "cli_summary@2 saved" in invoke("prompts", "push", str(folder)).stdout
    labelled = invoke("prompts", "label", "cli_summary", "production", "2")
    assert labelled.exit_code == 0, labelled.output
    # The result is printed once (it used to be followed by the label list saying it again).
    assert labelled.stdout.strip() == "✓ cli_summary:production → version 2"
    assert "production" not in labelled.stderr
    production = invoke("prompts", "render", "cli_summary:production", "--json")
    assert json.loads(production.stdout)["content"].startswith("Briefly summarise")

    rolled = invoke("prompts", "label", "cli_summary", "production", "1", "--expect", "2")
    assert rolled.exit_code == 0, rolled.output
    after = invoke("prompts", "render", "cli_summary:production")
    assert after.stdout.startswith("Summarise for engineers")
    stale = invoke("prompts", "label", "cli_summary", "production", "2", "--expect", "2")
    assert stale.exit_code == 1 and "points at version 1" in stale.stderr

    diff = invoke("prompts", "diff", "cli_summary", "production", "latest")
    assert diff.exit_code == 0, diff.output
    assert "--- cli_summary@1" in diff.stdout
    assert "-Summarise for {{ audience }}" in diff.stdout
    assert "+Briefly summarise for {{ audience }}" in diff.stdout
    as_json = json.loads(invoke("prompts", "diff", "cli_summary", "--json").stdout)
    assert (as_json["from_version"], as_json["to_version"]) == (1, 2)

    labels = invoke("prompts", "label", "cli_summary", "--json")
    assert json.loads(labels.stdout)["labels"] == {"production": 1}
    removed = invoke("prompts", "label", "cli_summary", "production", "--delete")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.strip() == "✓ removed cli_summary:production"
    listed = invoke("prompts", "label", "cli_summary")
    assert listed.exit_code == 0 and "cli_summary has no labels" in listed.stderr


def test_list_show_and_versions(invoke: Invoke, tmp_path: Path) -> None:
    source = tmp_path / "cli_show.prompt"
    source.write_text(SUMMARY)
    assert invoke("prompts", "push", str(source)).exit_code == 0
    listed = invoke("prompts", "list", "--json", "--limit", "100")
    names = {p["name"]: p for p in json.loads(listed.stdout)["data"]}
    assert names["cli_show"]["latest_version"] == 1
    assert names["rag_context"]["source"] == "default"
    table = invoke("prompts", "list", "--limit", "100")
    assert "cli_show" in table.stdout and "default" in table.stdout

    shown = invoke("prompts", "show", "cli_show@1")
    assert shown.exit_code == 0, shown.output
    assert "points: integer, default 3" in shown.stdout
    assert "Summarise for {{ audience }}" in shown.stdout
    raw = invoke("prompts", "show", "cli_show", "--raw")
    copy = tmp_path / "copy" / "cli_show.prompt"
    copy.parent.mkdir()
    copy.write_text(raw.stdout)
    assert "cli_show@1 unchanged" in invoke("prompts", "push", str(copy)).stderr
    forced = invoke("prompts", "push", str(copy), "--force", "--json")
    assert json.loads(forced.stdout)[0] | {"created_at": None} == json.loads(forced.stdout)[0] | {
        "version": 2,
        "created": True,
        "created_at": None,
    }
    assert "shipped default" in invoke("prompts", "versions", "rag_context").stdout
    versions = json.loads(invoke("prompts", "versions", "cli_show", "--json").stdout)
    assert [v["version"] for v in versions["data"]] == [2, 1]


def test_a_chain_renders_each_message_under_its_role(invoke: Invoke) -> None:
    result = invoke(
        "prompts",
        "render",
        "default_assistant",
        "rag_context",
        "--var",
        "question=Why?",
        "--var",
        "context=Because.",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("[system]\nYou are SomaAgent")
    assert "\n[user]\nAnswer the question" in result.stdout
    assert "default_assistant@default (system" in result.stderr


def test_bad_templates_and_variables_are_reported(invoke: Invoke, tmp_path: Path) -> None:
    broken = tmp_path / "cli_broken.prompt"
    broken.write_text("---\nrole: user\n---\nfine\n{{ oops }")
    result = invoke("prompts", "push", str(broken))
    assert result.exit_code == 1
    assert "line 2, column 9" in result.stderr and "HTTP 422" in result.stderr
    assert invoke("prompts", "show", "cli_broken").exit_code == 3

    invalid = tmp_path / "cli_invalid.prompt"
    invalid.write_text("---\nrole: robot\n---\nx")
    assert "cli_invalid.prompt" in invoke("prompts", "push", str(invalid)).stderr

    (tmp_path / "cli_vars.prompt").write_text(SUMMARY)
    invoke("prompts", "push", str(tmp_path / "cli_vars.prompt"))
    wrong = invoke("prompts", "render", "cli_vars", "--var", "points=many")
    assert wrong.exit_code == 2 and "points='many' is not an integer" in wrong.stderr
    extra = invoke("prompts", "render", "cli_vars", "--var", "mood=happy")
    assert extra.exit_code == 1 and "'mood' is not a variable" in extra.stderr
    assert invoke("prompts", "render", "cli_vars", "--var", "oops").exit_code == 2
    assert invoke("prompts", "render", "nope").exit_code == 3
    assert invoke("prompts", "label", "cli_vars", "production").exit_code == 2
