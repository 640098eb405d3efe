"""PromptService on a real SQLite database: concurrency, token counts, messages, start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from somaagent.db import Tenant
from somaagent.db.engine import make_engine, make_sessionmaker, migrate
from somaagent.errors import ConflictError, NotFoundError, ValidationError
from somaagent.llm.registry import ModelRegistry
from somaagent.prompts.service import PromptService
from somaagent.prompts.template import TemplateSpec

pytestmark = pytest.mark.anyio

TENANT = "acme"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[PromptService]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'soma.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        session.add(Tenant(id=TENANT))
        await session.commit()
    try:
        yield PromptService(sessions)
    finally:
        await engine.dispose()


def greeting(body: str = "Hello {{ who }}") -> TemplateSpec:
    return TemplateSpec.model_validate(
        {"name": "greeting", "role": "system", "body": body, "variables": [{"name": "who"}]}
    )


@pytest.mark.parametrize("savers", [8, 24])
async def test_concurrent_saves_get_distinct_consecutive_versions(
    service: PromptService, savers: int
) -> None:
    """Every save lands, however many race for the next number: a loser retries (each loss
    means another save went through)."""
    versions: list[int] = []

    async def save(i: int) -> None:
        version, created = await service.create(TENANT, greeting(f"v{i} {{{{ who }}}}"))
        assert created
        versions.append(version.version)

    async with anyio.create_task_group() as group:
        for i in range(savers):
            group.start_soon(save, i)
    assert sorted(versions) == list(range(1, savers + 1))


async def test_concurrent_compare_and_set_lets_one_writer_win(service: PromptService) -> None:
    for _ in range(3):
        await service.create(TENANT, greeting())
    await service.set_label(TENANT, "greeting", "production", 1)
    outcomes: list[str] = []

    async def move(to: int) -> None:
        try:
            await service.set_label(TENANT, "greeting", "production", to, expected_version=1)
            outcomes.append(f"moved to {to}")
        except ConflictError:
            outcomes.append("conflict")

    async with anyio.create_task_group() as group:
        group.start_soon(move, 2)
        group.start_soon(move, 3)
    assert sorted(outcomes)[0] == "conflict" and len(outcomes) == 2
    labels = (await service.labels(TENANT, "greeting")).labels
    assert outcomes.count("conflict") == 1 and f"moved to {labels['production']}" in outcomes


async def test_render_counts_tokens_for_a_model_and_locates_errors(
    service: PromptService,
) -> None:
    await service.create(TENANT, greeting())
    model = ModelRegistry.load(None).get("gpt-4o-mini")
    rendered = await service.render(TENANT, "greeting", {"who": "Ada"}, model=model)
    assert (rendered.content, rendered.role, rendered.model) == ("Hello Ada", "system", model.name)
    assert rendered.tokens == 2
    assert rendered.as_message() == {"role": "system", "content": "Hello Ada"}
    with pytest.raises(ValidationError) as caught:
        await service.render(TENANT, "greeting", {}, loc=("body", "prompt", "variables"))
    assert caught.value.errors[0]["loc"] == ["body", "prompt", "variables", "who"]


async def test_render_messages_gives_a_chat_message_list(service: PromptService) -> None:
    await service.create(TENANT, greeting())
    messages = await service.render_messages(
        TENANT,
        ["greeting", "task_execution"],
        {"who": "Ada", "task": "Say hi"},
    )
    assert messages[0] == {"role": "system", "content": "Hello Ada"}
    assert messages[1]["role"] == "user" and messages[1]["content"].startswith("Task: Say hi")


async def test_unknown_things_are_not_found(service: PromptService) -> None:
    with pytest.raises(NotFoundError, match="'nope' not found"):
        await service.render(TENANT, "nope")
    await service.create(TENANT, greeting())
    with pytest.raises(NotFoundError, match="no version 4"):
        await service.get(TENANT, "greeting@4")
    with pytest.raises(NotFoundError, match="no label 'staging'"):
        await service.get(TENANT, "greeting:staging")
    with pytest.raises(NotFoundError):
        await service.get("another-tenant", "greeting")


async def test_nothing_is_saved_from_a_template_that_does_not_compile(
    service: PromptService,
) -> None:
    with pytest.raises(ValidationError):
        await service.create(TENANT, greeting("{{ who "))
    with pytest.raises(NotFoundError):
        await service.get(TENANT, "greeting")


def test_a_broken_default_fails_at_start() -> None:
    broken = TemplateSpec(name="broken", body="{% if %}")
    with pytest.raises(ValidationError, match="broken"):
        PromptService(None, defaults={"broken": broken})  # type: ignore[arg-type]


async def test_error_locations_follow_the_callers_request(service: PromptService) -> None:
    with pytest.raises(ValidationError) as caught:
        await service.render(TENANT, "bad ref!", ref_loc=("body", "prompt", "name"))
    assert caught.value.errors[0]["loc"] == ["body", "prompt", "name"]
