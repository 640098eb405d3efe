"""The resources, end to end against the stub gateway, through both twins."""

from __future__ import annotations

import pytest

from somaagent import AsyncClient, Client, Conversation, Message, NotFoundError


def test_conversation_lifecycle(client: Client) -> None:
    created = client.conversations.create(
        "Support", system_prompt="Be brief.", model="stub-echo-1", metadata={"ticket": 42}
    )
    assert isinstance(created, Conversation)
    assert created.title == "Support"
    assert created.metadata == {"ticket": 42}
    assert client.conversations.get(created.id) == created
    client.conversations.delete(created.id)
    with pytest.raises(NotFoundError):
        client.conversations.get(created.id)


def test_create_sends_only_what_was_given(client: Client) -> None:
    conversation = client.conversations.create()
    assert conversation.title is None
    assert conversation.metadata == {}


def test_list_pages_newest_first_with_cursors(client: Client) -> None:
    ids = [client.conversations.create(f"c{i}").id for i in range(5)]
    first = client.conversations.list(limit=2)
    assert [c.id for c in first.data] == ids[::-1][:2]
    assert first.has_more
    assert first.next_cursor
    seen = [c.id for c in first.data]
    cursor: str | None = first.next_cursor
    while cursor:
        page = client.conversations.list(limit=2, cursor=cursor)
        seen += [c.id for c in page.data]
        cursor = page.next_cursor
    assert seen == ids[::-1]
    assert not page.has_more


def test_send_message_returns_the_exchange(client: Client) -> None:
    conversation = client.conversations.create()
    exchange = client.conversations.send_message(
        conversation.id, "ping", model="stub-big", max_tokens=10, temperature=0.2
    )
    assert exchange.message.role == "user"
    assert exchange.message.content == "ping"
    assert exchange.reply.role == "assistant"
    assert exchange.reply.model == "stub-big"
    assert exchange.reply.usage is not None and exchange.reply.usage.total_tokens > 0
    assert exchange.reply.cost_usd is not None


def test_messages_page_oldest_first(client: Client) -> None:
    conversation = client.conversations.create()
    for text in ("one", "two", "three"):
        client.conversations.send_message(conversation.id, text)
    page = client.conversations.messages(conversation.id, limit=4)
    assert all(isinstance(m, Message) for m in page.data)
    assert [m.content for m in page.data] == ["one", "Echo: one", "two", "Echo: two"]
    assert page.has_more and page.next_cursor
    rest = client.conversations.messages(conversation.id, limit=4, cursor=page.next_cursor)
    assert [m.content for m in rest.data] == ["three", "Echo: three"]
    assert not rest.has_more


def test_models_list(client: Client) -> None:
    models = client.models.list()
    assert [m.id for m in models] == ["stub-echo-1", "stub-big"]
    assert models[0].input_cost_per_mtok == 0.5
    assert models[1].available is False


def test_me(client: Client) -> None:
    assert client.me() == {
        "key_id": "key_alice",
        "name": "alice",
        "tenant": "acme",
        "scope": "member",
    }


def test_chat_creates_a_conversation_when_none_is_given(client: Client) -> None:
    exchange = client.chat("What is SomaAgent?\nSecond line", model="stub-big")
    conversation = client.conversations.get(exchange.reply.conversation_id)
    assert conversation.title == "What is SomaAgent?"
    assert conversation.model == "stub-big"
    again = client.chat("And then?", conversation_id=conversation.id)
    assert again.reply.conversation_id == conversation.id
    assert len(client.conversations.list().data) == 1


@pytest.mark.anyio
async def test_async_conversation_lifecycle(async_client: AsyncClient) -> None:
    created = await async_client.conversations.create("Async", metadata={"a": 1})
    assert (await async_client.conversations.get(created.id)) == created
    exchange = await async_client.conversations.send_message(created.id, "hi")
    assert exchange.reply.content == "Echo: hi"
    page = await async_client.conversations.messages(created.id)
    assert [m.role for m in page.data] == ["user", "assistant"]
    listed = await async_client.conversations.list(limit=1)
    assert [c.id for c in listed.data] == [created.id]
    await async_client.conversations.delete(created.id)
    with pytest.raises(NotFoundError):
        await async_client.conversations.get(created.id)


@pytest.mark.anyio
async def test_async_models_me_and_chat(async_client: AsyncClient) -> None:
    assert len(await async_client.models.list()) == 2
    assert (await async_client.me())["tenant"] == "acme"
    exchange = await async_client.chat("hello")
    assert exchange.reply.content == "Echo: hello"
