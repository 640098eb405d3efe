"""``batch_chat``: many prompts through the router, a few at a time, each item its own step.

Items run as a sliding pool of ``concurrency`` (the next item starts as soon as any one ends, so
one slow answer holds up no window); each item is its own step keyed by its index, and results
are taken in index order, so a replay after a crash reads every finished item's checkpoint and
writes the same events. An item's step retries transient failures, and an item
whose input the router refuses (an unknown model, a policy no model meets) is recorded as a
failed item rather than failing the run. The run's output counts items and cost; the per-item
results are a JSONL file at ``GET /v1/workflow-runs/{id}/result``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from somaagent.errors import APIError, WorkflowStepError
from somaagent.llm.base import ChatMessage
from somaagent.workflows.engine import RunContext, StepPolicy, WorkflowTypeSpec
from somaagent.workflows.ports import CHAT, ChatCompleter, transient

MAX_ITEMS = 10_000
ITEM_STEP = "item-"
POLICY = StepPolicy(max_attempts=3, interval_s=0.5, backoff=2.0, retry_on=transient)


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class BatchItem(BaseModel):
    """One prompt: text, or messages; optionally a model, a routing policy, a template."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=200)
    prompt: str | None = Field(default=None, max_length=100_000)
    messages: list[ChatTurn] | None = None
    model: str | None = None
    policy: dict[str, Any] | None = None
    template: str | None = Field(default=None, description="a prompt template to render first")
    variables: dict[str, Any] = Field(default_factory=dict)
    max_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _has_a_prompt(self) -> BatchItem:
        if self.prompt is None and not self.messages and self.template is None:
            raise ValueError("give prompt, messages or template")
        return self

    def chat_messages(self) -> list[ChatMessage]:
        turns: list[ChatMessage] = [
            {"role": m.role, "content": m.content} for m in self.messages or []
        ]
        if self.prompt is not None:
            turns.append({"role": "user", "content": self.prompt})
        return turns


class BatchChatInput(BaseModel):
    """The items (one JSONL line each) and how many run at once."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_ITEMS)
    concurrency: int = Field(default=4, ge=1, le=64)
    model: str | None = Field(default=None, description="for items that name none")
    policy: dict[str, Any] | None = Field(default=None, description="for items that name none")


def _chat(ctx: RunContext) -> ChatCompleter:
    chat: ChatCompleter = ctx.services[CHAT]
    return chat


async def run(ctx: RunContext, body: BatchChatInput) -> dict[str, Any]:
    items = body.items

    def call(index: int, item: BatchItem) -> Any:
        async def go() -> dict[str, Any]:
            base = {"index": index, "id": item.id}
            model = item.model or (None if item.policy else body.model)
            policy = item.policy or (None if item.model else body.policy)
            try:
                answer = await _chat(ctx).complete(
                    ctx.tenant,
                    item.chat_messages(),
                    model=model,
                    policy=policy,
                    template=item.template,
                    variables=item.variables,
                    max_tokens=item.max_tokens,
                )
            except APIError as exc:
                if transient(exc):
                    raise
                return {**base, "error": {"type": exc.problem_type, "message": exc.message}}
            return {**base, **answer}

        return go

    succeeded = failed = 0
    cost = 0.0
    results = ctx.pool(
        lambda i: f"{ITEM_STEP}{i + 1}",
        [call(i, item) for i, item in enumerate(items)],
        concurrency=body.concurrency,
        policy=POLICY,
        summary=_summary,
        cost=lambda r: r.get("cost_usd"),
    )
    async for index, result in results:
        if isinstance(result, WorkflowStepError) or "error" in result:
            failed += 1
        else:
            succeeded += 1
            cost += float(result.get("cost_usd") or 0.0)
        done = index + 1
        # Progress every `concurrency` items of the finished prefix: the same events on replay.
        if done % body.concurrency == 0 or done == len(items):
            await ctx.emit(
                "run.progress",
                done=done,
                total=len(items),
                unit="items",
                succeeded=succeeded,
                failed=failed,
            )
    return {
        "items": len(items),
        "succeeded": succeeded,
        "failed": failed,
        "cost_usd": round(cost, 10),
        "result": f"/v1/workflow-runs/{ctx.run_id}/result",
    }


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']['message']}"
    return f"{result.get('model')}: {result.get('content', '')}"


SPEC = WorkflowTypeSpec(
    name="batch_chat",
    input_model=BatchChatInput,
    run=run,
    description="Many prompts through the router with a concurrency limit; per-item results "
    "as a JSONL file and the total cost.",
    result_steps=ITEM_STEP,
)
