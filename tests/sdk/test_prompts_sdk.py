"""``client.prompts`` (both twins) against the real gateway on loopback."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from somaagent import AsyncClient, Client
from somaagent.errors import ConflictError, NotFoundError, ValidationError
from somaagent.sdk._prompts import AsyncPrompts, Prompts
from somaagent.types.templates import TemplateSpec
from tests.fakes.fixtures import FakeVendor
from tests.prompts.served import MODEL, Running, serve_gateway

SUPPORT = """\
---
role: system
description: Support agent
variables:
  product: {type: string}
  tone: {type: string, default: warm}
---
You support {{ product }} customers. Be {{ tone }}.
"""

QUESTION = """\
---
variables:
  question: {type: string}
---
Customer asks: {{ question }}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Running]:
    with serve_gateway(tmp_path_factory.mktemp("gateway"), fake_openai) as running:
        yield running


@pytest.fixture
def client(served: Running) -> Iterator[Client]:
    with Client(api_key=served.admin_key, base_url=served.base_url, max_retries=0) as client:
        yield client


@pytest.fixture
async def async_client(served: Running) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        api_key=served.admin_key, base_url=served.base_url, max_retries=0
    ) as client:
        yield client


def prompts_of(client: Client) -> Prompts:
    """``client.prompts``, or the resource built by hand until the client carries it."""
    resource = getattr(client, "prompts", None)
    return resource if isinstance(resource, Prompts) else Prompts(client)


def async_prompts_of(client: AsyncClient) -> AsyncPrompts:
    resource = getattr(client, "prompts", None)
    return resource if isinstance(resource, AsyncPrompts) else AsyncPrompts(client)


def write_folder(root: Path, prefix: str) -> Path:
    folder = root / "prompts"
    folder.mkdir()
    (folder / f"{prefix}support.prompt").write_text(SUPPORT)
    (folder / f"{prefix}question.md").write_text(QUESTION)
    (folder / "README.txt").write_text("plain text is a template too, named README")
    return folder


def test_the_prompt_journey(client: Client, tmp_path: Path, fake_openai: FakeVendor) -> None:
    prompts = prompts_of(client)
    folder = write_folder(tmp_path, "sync_")
    pushed = prompts.push(folder)
    assert [(p.version.name, p.version.version, p.created) for p in pushed] == [
        ("README", 1, True),
        ("sync_question", 1, True),
        ("sync_support", 1, True),
    ]
    assert all(p.path is not None and p.path.parent == folder for p in pushed)
    again = prompts.push(folder)
    assert [p.created for p in again] == [False, False, False]

    rendered = prompts.render("sync_support", {"product": "SomaAgent"})
    assert rendered.content == "You support SomaAgent customers. Be warm."
    assert rendered.tokens is not None and rendered.model == MODEL

    (folder / "sync_support.prompt").write_text(SUPPORT.replace("Be {{ tone }}.", "Be {{ tone }}!"))
    (second,) = [p for p in prompts.push(folder) if p.created]
    assert second.version.version == 2
    assert prompts.set_label("sync_support", "production", 2).labels == {"production": 2}

    # Start a conversation with the production prompt as its system message.
    system = prompts.render("sync_support:production", {"product": "SomaAgent"})
    conversation = client.conversations.create("Help", system_prompt=system.content, model=MODEL)
    fake_openai.clear()
    client.conversations.send_message(conversation.id, "Hi")
    sent = fake_openai.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": system.content}

    # Roll back, and see what changed.
    prompts.set_label("sync_support", "production", 1, expected_version=2)
    assert prompts.render("sync_support:production", {"product": "X"}).content.endswith("warm.")
    diff = prompts.diff("sync_support", "production", "latest")
    assert (diff.from_version, diff.to_version, diff.changed) == (1, 2, True)
    assert "-You support {{ product }} customers. Be {{ tone }}." in diff.diff
    assert prompts.labels("sync_support").labels == {"production": 1}
    assert [v.version for v in prompts.versions("sync_support").data] == [2, 1]
    assert prompts.get("sync_support", label="production").version == 1
    assert prompts.get("sync_support@2").to_spec().body.endswith("Be {{ tone }}!\n")

    chain = prompts.render_chain(
        ["sync_support:production", "sync_question"],
        {"product": "SomaAgent", "question": "Where is my invoice?"},
    )
    assert chain.as_messages()[1] == {
        "role": "user",
        "content": "Customer asks: Where is my invoice?",
    }
    assert chain.total_tokens is not None

    names = {p.name for p in prompts.list(limit=100).data}
    assert {"sync_support", "sync_question", "rag_context"} <= names
    prompts.delete_label("sync_support", "production")
    with pytest.raises(NotFoundError):
        prompts.get("sync_support:production")


def test_errors_come_back_as_the_shared_exceptions(client: Client) -> None:
    prompts = prompts_of(client)
    with pytest.raises(ValidationError) as caught:
        prompts.create("sync_broken", "line one\n{% if x %}", variables={"x": {"type": "any"}})
    assert (caught.value.errors[0]["line"], caught.value.errors[0]["column"]) == (2, 11)
    with pytest.raises(NotFoundError):
        prompts.get("sync_broken")
    created = prompts.create("sync_cas", "v1", role="system", description="d", metadata={"a": 1})
    assert (created.version, created.role, created.metadata) == (1, "system", {"a": 1})
    prompts.create("sync_cas", "v2")
    prompts.set_label("sync_cas", "staging", 1, expected_version=0)
    with pytest.raises(ConflictError):
        prompts.set_label("sync_cas", "staging", 2, expected_version=0)
    with pytest.raises(ValidationError) as missing:
        prompts.render("sync_cas", {"nope": 1})
    assert missing.value.errors[0]["loc"] == ["body", "variables", "nope"]


def test_a_bad_file_stops_the_push_before_anything_is_sent(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a_fine.prompt").write_text("fine")
    (folder / "b_bad.prompt").write_text("---\nrole: robot\n---\nx")
    with pytest.raises(ValueError, match=r"b_bad\.prompt"):
        prompts_of(client).push(folder)
    with pytest.raises(NotFoundError):
        prompts_of(client).get("a_fine")
    with pytest.raises(FileNotFoundError):
        prompts_of(client).push(tmp_path / "missing")


@pytest.mark.anyio
async def test_the_async_twin(async_client: AsyncClient, tmp_path: Path) -> None:
    prompts = async_prompts_of(async_client)
    pushed = await prompts.push(write_folder(tmp_path, "async_"))
    assert {p.version.name for p in pushed} >= {"async_support", "async_question"}
    spec = TemplateSpec(name="async_inline", body="Hi {{ who }}", variables=[{"name": "who"}])
    (inline,) = await prompts.push(spec)
    assert inline.created and inline.path is None
    await prompts.create("async_inline", "Hello {{ who }}", variables=[{"name": "who"}])
    await prompts.set_label("async_inline", "production", 1)
    assert (await prompts.render("async_inline:production", {"who": "A"})).content == "Hi A"
    await prompts.set_label("async_inline", "production", 2)
    assert (await prompts.render("async_inline:production", {"who": "A"})).content == "Hello A"
    assert (await prompts.diff("async_inline")).from_version == 1
    assert (await prompts.labels("async_inline")).labels == {"production": 2}
    assert (await prompts.get("async_inline", version=1)).body == "Hi {{ who }}"
    assert len((await prompts.versions("async_inline", limit=1)).data) == 1
    assert (await prompts.list(limit=1)).has_more
    chain = await prompts.render_chain(["default_assistant", "async_inline"], {"who": "B"})
    assert [m.role for m in chain.messages] == ["system", "user"]
    await prompts.delete_label("async_inline", "production")
    with pytest.raises(NotFoundError):
        await prompts.render("async_inline:production")


def _signature(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_twins_have_the_same_methods_and_parameters() -> None:
    def public(cls: type[Any]) -> dict[str, Any]:
        return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_")}

    sync, async_ = public(Prompts), public(AsyncPrompts)
    assert set(sync) == set(async_)
    for name, method in sync.items():
        assert _signature(method) == _signature(async_[name]), name
        assert inspect.iscoroutinefunction(async_[name]), name


def test_the_prompt_resources_load_no_server_code() -> None:
    code = (
        "import sys, somaagent.sdk._prompts; "
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'jinja2', 'yaml', 'somaagent.gateway', "
        "'somaagent.llm', 'somaagent.cli') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
