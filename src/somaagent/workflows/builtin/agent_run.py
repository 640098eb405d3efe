"""``agent_run``: reserved for agents (a later release), so its name and input are stable now.

Starting it is a 422 with the problem type ``workflow-type-unavailable`` saying so; nothing runs
and no run is recorded.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from somaagent.errors import WorkflowTypeUnavailableError
from somaagent.workflows.engine import RunContext, WorkflowTypeSpec

NOTE = "agents arrive in a later release; agent_run is reserved for them and cannot run yet"


class AgentRunInput(BaseModel):
    """An agent and what to ask it."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, description="the agent's name")
    input: dict[str, Any] = Field(default_factory=dict)


async def run(ctx: RunContext, body: AgentRunInput) -> Any:
    raise WorkflowTypeUnavailableError(NOTE)


SPEC = WorkflowTypeSpec(
    name="agent_run",
    input_model=AgentRunInput,
    run=run,
    description="Run an agent durably (reserved: agents arrive in a later release).",
    unavailable=NOTE,
)
