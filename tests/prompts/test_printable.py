"""``{{ ... }}`` prints data, never an object's repr with a memory address (issue 14)."""

from __future__ import annotations

import re

import pytest

from somaagent.errors import ValidationError
from somaagent.prompts.engine import PromptEngine
from somaagent.prompts.template import TemplateSpec


def render(body: str) -> str:
    engine = PromptEngine()
    spec = TemplateSpec.model_validate({"name": "t", "role": "user", "body": body})
    return engine.render(engine.compile(spec), {})


@pytest.mark.parametrize(
    "body",
    [
        "{{ cycler('a') }}",
        "{{ cycler('a').next }}",
        "{{ joiner(',') }}",
        "{{ namespace(x=1) }}",
        "{{ [cycler('a')] }}",
        "{{ {'k': joiner()} }}",
        "{{ range }}",
    ],
)
def test_objects_are_not_printed(body: str) -> None:
    with pytest.raises(ValidationError) as caught:
        render(body)
    assert caught.value.status_code == 422
    assert caught.value.errors[0]["loc"] == ["template", "t"]
    assert not re.search(r"0x[0-9a-f]{6,}", caught.value.message)


def test_helpers_still_work_and_data_prints() -> None:
    body = (
        "{% set c = cycler('a', 'b') %}{% set ns = namespace(n=2) %}"
        "{{ c.next() }}{{ c.next() }}{{ c.current }} {{ ns.n }} {{ [1, 'x', none] }}"
        " {{ {'k': 1.5} }} {{ range(2) }}"
    )
    assert render(body) == "aba 2 [1, 'x', None] {'k': 1.5} range(0, 2)"
