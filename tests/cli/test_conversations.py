"""``soma conversations list`` and ``show``."""

from __future__ import annotations

import json

import pytest

from somaagent import Client, Conversation, Message, Page
from tests.cli.conftest import Invoke
from tests.sdk.stub_gateway import ALICE_KEY


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch, base_url: str, config_dir: object) -> None:
    monkeypatch.setenv("SOMA_API_KEY", ALICE_KEY)
    monkeypatch.setenv("SOMA_BASE_URL", base_url)


def test_list_json(invoke: Invoke, base_url: str) -> None:
    with Client(api_key=ALICE_KEY, base_url=base_url) as client:
        ids = [client.conversations.create(f"c{i}").id for i in range(3)]
    result = invoke("conversations", "list", "--json", "--limit", "2")
    assert result.exit_code == 0, result.output
    page = Page[Conversation].model_validate_json(result.stdout)
    assert [c.id for c in page.data] == ids[::-1][:2]
    assert page.has_more and page.next_cursor
    rest = invoke("conversations", "list", "--json", "--cursor", page.next_cursor)
    assert [c["id"] for c in json.loads(rest.stdout)["data"]] == ids[:1]


def test_list_table(invoke: Invoke, base_url: str) -> None:
    with Client(api_key=ALICE_KEY, base_url=base_url) as client:
        conversation = client.conversations.create("Quarterly report")
    result = invoke("conversations", "list")
    assert result.exit_code == 0, result.output
    assert conversation.id in result.stdout
    assert "Quarterly report" in result.stdout
    assert "Title" in result.stdout


def test_list_says_when_there_is_nothing(invoke: Invoke) -> None:
    result = invoke("conversations", "list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no conversations" in result.stderr


def test_list_limit_is_checked(invoke: Invoke) -> None:
    result = invoke("conversations", "list", "--limit", "0")
    assert result.exit_code == 2


def test_show_prints_every_message(invoke: Invoke, base_url: str) -> None:
    with Client(api_key=ALICE_KEY, base_url=base_url) as client:
        conversation = client.conversations.create("Chat", system_prompt="Be kind.")
        for i in range(3):
            client.conversations.send_message(conversation.id, f"question {i}")
    result = invoke("conversations", "show", conversation.id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Chat" in out and "system: Be kind." in out
    assert out.index("question 0") < out.index("Echo: question 0") < out.index("question 2")
    assert "stub-echo-1" in out


def test_show_json_follows_every_page(invoke: Invoke, base_url: str) -> None:
    with Client(api_key=ALICE_KEY, base_url=base_url) as client:
        conversation = client.conversations.create()
        for i in range(51):  # 102 messages: more than one page of 100
            client.conversations.send_message(conversation.id, str(i))
    result = invoke("conversations", "show", conversation.id, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["conversation"]["id"] == conversation.id
    messages = [Message.model_validate(m) for m in body["messages"]]
    assert len(messages) == 102
    assert messages[-1].content == "Echo: 50"


def test_show_unknown_exits_3(invoke: Invoke) -> None:
    result = invoke("conversations", "show", "conv_missing")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: conversation conv_missing not found")
