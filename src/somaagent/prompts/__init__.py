"""Prompt templates: sandboxed Jinja2, versions and labels, validation, chains, defaults.

The spec and wire models (:mod:`.template`, :mod:`.schemas`) import only pydantic, so the SDK
and the CLI can use them; the engine, the store and the service (Jinja2, SQLAlchemy) load
only when one of their names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from somaagent.prompts.template import (
    PromptRef,
    TemplateSpec,
    VariableSpec,
    load_template_file,
    parse_ref,
    parse_template_text,
)

if TYPE_CHECKING:
    from somaagent.prompts._guard import RenderLimits
    from somaagent.prompts.engine import PromptEngine
    from somaagent.prompts.service import PromptService

__all__ = [
    "PromptEngine",
    "PromptRef",
    "PromptService",
    "RenderLimits",
    "TemplateSpec",
    "VariableSpec",
    "load_template_file",
    "parse_ref",
    "parse_template_text",
]

_LAZY = {
    "PromptEngine": "somaagent.prompts.engine",
    "PromptService": "somaagent.prompts.service",
    "RenderLimits": "somaagent.prompts._guard",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
