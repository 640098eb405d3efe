"""Template specs, their file format, and prompt references."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from somaagent.prompts.template import (
    PromptRef,
    TemplateSpec,
    dump_template_text,
    iter_template_files,
    load_template_file,
    parse_ref,
    parse_template_text,
)

FRONT_MATTER = """\
---
role: system
description: Greets
variables:
  who: {type: string, description: whom}
  times: {type: integer, default: 1}
metadata: {owner: me}
---
Hello {{ who }}
"""


def test_front_matter_files_give_spec_and_body() -> None:
    spec = parse_template_text(FRONT_MATTER, name="greet", source="greet.prompt")
    assert spec.name == "greet"
    assert spec.role == "system"
    assert spec.body == "Hello {{ who }}\n"
    assert [(v.name, v.type, v.required, v.default) for v in spec.variables] == [
        ("who", "string", True, None),
        ("times", "integer", False, 1),
    ]
    assert spec.metadata == {"owner": "me"}


def test_a_file_round_trips_through_its_canonical_text() -> None:
    spec = parse_template_text(FRONT_MATTER, name="greet", source="greet.prompt")
    text = dump_template_text(spec)
    assert text.startswith("---\nname: greet\nrole: system\n")
    assert parse_template_text(text, name="other", source="x.prompt") == spec


def test_yaml_json_and_plain_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("role: user\nbody: 'Hi {{ x }}'\nvariables: [{name: x}]\n")
    (tmp_path / "b.json").write_text('{"name": "bee", "body": "B"}')
    (tmp_path / "c.md").write_text("no front matter, just {{ '{{' }} text")
    (tmp_path / ".hidden.prompt").write_text("x")
    (tmp_path / "notes.py").write_text("x")
    files = list(iter_template_files(tmp_path))
    assert [f.name for f in files] == ["a.yaml", "b.json", "c.md"]
    specs = [load_template_file(f) for f in files]
    assert [s.name for s in specs] == ["a", "bee", "c"]
    assert specs[0].variables[0].name == "x"
    assert specs[2].body.startswith("no front matter")
    assert list(iter_template_files(tmp_path / "a.yaml")) == [tmp_path / "a.yaml"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\nrole: [\n---\nbody", "invalid YAML"),
        ("---\n- a\n---\nbody", "must be a YAML mapping"),
        ("---\nbody: x\n---\nbody", "follows the front matter"),
        ("---\nrole: robot\n---\nbody", "role"),
        ("---\ncolour: red\n---\nbody", "colour"),
    ],
)
def test_bad_files_are_value_errors_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_template_text(text, name="t", source="t.prompt")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ([{"name": "x"}, {"name": "x"}], "declared twice"),
        ([{"name": "loop"}], "reserved"),
        ([{"name": "1x"}], "pattern"),
        ([{"name": "n", "type": "integer", "default": "one"}], "not an integer"),
        ([{"name": "n", "required": True, "default": 1, "type": "integer"}], "cannot be required"),
        ([{"name": "n", "type": "decimal"}], "type"),
        ([{"name": "n", "colour": "red"}], "colour"),
    ],
)
def test_specs_forbid_bad_declarations(variables: list[dict[str, object]], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        TemplateSpec.model_validate({"name": "t", "body": "b", "variables": variables})


@pytest.mark.parametrize("name", ["a@b", "a:b", "a/b", "", "-a", "x" * 129])
def test_names_that_would_clash_with_references_are_refused(name: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        TemplateSpec(name=name, body="b")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("greet", PromptRef("greet")),
        ("greet@3", PromptRef("greet", version=3)),
        ("greet:production", PromptRef("greet", label="production")),
        ("rag_context.v2:staging-eu", PromptRef("rag_context.v2", label="staging-eu")),
    ],
)
def test_references(ref: str, expected: PromptRef) -> None:
    assert parse_ref(ref) == expected
    assert str(parse_ref(ref)) == ref


@pytest.mark.parametrize("ref", ["greet@", "greet@x", "greet:", "greet:Prod", "a@1:b", "@1"])
def test_bad_references(ref: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_ref(ref)
