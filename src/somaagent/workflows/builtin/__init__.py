"""The workflow types every gateway has: ``document_ingest``, ``batch_chat`` and the reserved
``agent_run``."""

from __future__ import annotations

from somaagent.workflows.builtin import agent_run, batch_chat, document_ingest
from somaagent.workflows.engine import WorkflowRegistry


def builtin_registry() -> WorkflowRegistry:
    """A registry holding the built-in types."""
    registry = WorkflowRegistry()
    for module in (document_ingest, batch_chat, agent_run):
        registry.register(module.SPEC)
    return registry


__all__ = ["builtin_registry"]
