"""The six shipped templates load, compile and render."""

from __future__ import annotations

from typing import Any

import pytest

from somaagent.prompts.defaults import DEFAULT_NAMES, load_defaults
from somaagent.prompts.engine import PromptEngine

SAMPLES: dict[str, dict[str, Any]] = {
    "default_assistant": {"instructions": "Answer in French."},
    "coding_assistant": {"language": "Python", "constraints": ["no new dependencies"]},
    "data_analyst": {"domain": "retail"},
    "rag_context": {
        "question": "What is the refund window?",
        "context": "Refunds are accepted within 30 days.",
        "sources": ["policy.md"],
    },
    "few_shot_classification": {
        "text": "The app crashes on start",
        "labels": ["bug", "feature", "question"],
        "examples": [{"text": "Please add dark mode", "label": "feature"}],
    },
    "task_execution": {
        "task": "Summarise the report",
        "steps": ["Read it", "List the findings"],
        "output_format": "three bullet points",
    },
}

EXPECTED = {
    "default_assistant": ("system", "Answer in French."),
    "coding_assistant": ("system", "specialising in Python"),
    "data_analyst": ("system", "working in retail"),
    "rag_context": ("user", "[1] policy.md"),
    "few_shot_classification": ("user", "Label: feature\n\nText: The app crashes on start"),
    "task_execution": ("user", "2. List the findings"),
}


def test_the_six_defaults_ship() -> None:
    defaults = load_defaults()
    assert set(defaults) == set(DEFAULT_NAMES) == set(SAMPLES)
    assert all(spec.description for spec in defaults.values())
    rag = {v.name for v in defaults["rag_context"].variables}
    assert {"context", "question", "sources"} <= rag


@pytest.mark.parametrize("name", DEFAULT_NAMES)
def test_each_default_renders(engine: PromptEngine, name: str) -> None:
    spec = load_defaults()[name]
    compiled = engine.compile(spec)
    role, fragment = EXPECTED[name]
    assert spec.role == role
    text = engine.render(compiled, SAMPLES[name])
    assert fragment in text
    assert "{{" not in text and "{%" not in text
    assert "\n\n\n" not in text  # block tags leave no runs of blank lines


@pytest.mark.parametrize("name", DEFAULT_NAMES)
def test_each_default_renders_with_only_its_required_variables(
    engine: PromptEngine, name: str
) -> None:
    spec = load_defaults()[name]
    required = {v.name: SAMPLES[name].get(v.name, "x") for v in spec.variables if v.required}
    assert engine.render(engine.compile(spec), required)
