"""The templates shipped with SomaAgent, and their loader.

Each ``*.prompt`` file here is YAML front matter and a Jinja2 body. The gateway loads and
compiles them at start; a tenant sees them as version 0 of their names until it saves its own
versions of the same name, which then win.
"""

from __future__ import annotations

from pathlib import Path

from somaagent.prompts.template import TemplateSpec, load_template_file

__all__ = ["DEFAULTS_DIR", "DEFAULT_NAMES", "load_defaults"]

DEFAULTS_DIR = Path(__file__).parent
DEFAULT_NAMES = (
    "default_assistant",
    "coding_assistant",
    "data_analyst",
    "rag_context",
    "few_shot_classification",
    "task_execution",
)


def load_defaults(directory: Path = DEFAULTS_DIR) -> dict[str, TemplateSpec]:
    """Read every ``*.prompt`` file in ``directory``, by template name.

    Raises:
        ValueError: a file is not a valid template (its path is in the message).
        ConfigurationError: PyYAML is not installed.
    """
    specs: dict[str, TemplateSpec] = {}
    for path in sorted(directory.glob("*.prompt")):
        try:
            spec = load_template_file(path)
        except ValueError as exc:
            raise ValueError(f"default template {path.name}: {exc}") from exc
        specs[spec.name] = spec
    return specs
