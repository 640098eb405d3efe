"""``client.conversations``: conversations and their messages.

The calls (paths, parameters, bodies, parsers) are built once here; :class:`Conversations` and
:class:`AsyncConversations` only send them through their client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import AsyncSender, SyncSender, drop_none, model_parser, no_content
from somaagent.sdk._routing import PolicyLike, policy_body
from somaagent.sdk._streaming import AsyncMessageStream, MessageStream
from somaagent.types import Conversation, Message, MessageExchange, Page

__all__ = [
    "AsyncConversations",
    "Conversations",
    "create_conversation_call",
    "delete_conversation_call",
    "get_conversation_call",
    "list_conversations_call",
    "list_messages_call",
    "send_message_call",
]


def _conversation_path(conversation_id: str, suffix: str = "") -> str:
    if not conversation_id:
        raise ValueError("conversation_id must be a non-empty string")
    return f"/v1/conversations/{quote(conversation_id, safe='')}{suffix}"


def create_conversation_call(
    title: str | None,
    *,
    system_prompt: str | None,
    model: str | None,
    metadata: dict[str, Any] | None,
    prompt: str | None = None,
    variables: dict[str, Any] | None = None,
) -> APICall[Conversation]:
    invocation = {"name": prompt, "variables": variables or {}} if prompt is not None else None
    body = drop_none(
        title=title, system_prompt=system_prompt, prompt=invocation, model=model, metadata=metadata
    )
    return APICall("POST", "/v1/conversations", model_parser(Conversation), json=body)


def get_conversation_call(conversation_id: str) -> APICall[Conversation]:
    return APICall("GET", _conversation_path(conversation_id), model_parser(Conversation))


def list_conversations_call(*, limit: int, cursor: str | None) -> APICall[Page[Conversation]]:
    params = {"limit": limit, "cursor": cursor}
    return APICall("GET", "/v1/conversations", model_parser(Page[Conversation]), params=params)


def delete_conversation_call(conversation_id: str) -> APICall[None]:
    return APICall("DELETE", _conversation_path(conversation_id), no_content)


def list_messages_call(
    conversation_id: str, *, limit: int, cursor: str | None
) -> APICall[Page[Message]]:
    path = _conversation_path(conversation_id, "/messages")
    params = {"limit": limit, "cursor": cursor}
    return APICall("GET", path, model_parser(Page[Message]), params=params)


def send_message_call(
    conversation_id: str,
    content: str,
    *,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    idempotency_key: str | None,
    stream: bool,
    policy: PolicyLike | None = None,
    collection: str | None = None,
) -> APICall[MessageExchange]:
    body = drop_none(
        content=content,
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        policy=policy_body(policy),
        collection=collection,
    )
    if stream:
        body["stream"] = True
    return APICall(
        "POST",
        _conversation_path(conversation_id, "/messages"),
        model_parser(MessageExchange),
        json=body,
        idempotency_key=idempotency_key,
        stream=stream,
    )


class Conversations:
    """``client.conversations``: conversations and their messages."""

    def __init__(self, client: SyncSender) -> None:
        self._client = client

    def create(
        self,
        title: str | None = None,
        *,
        system_prompt: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        prompt: str | None = None,
        variables: dict[str, Any] | None = None,
    ) -> Conversation:
        """Create a conversation.

        Args:
            title: a title to list it by.
            system_prompt: the system prompt of every exchange in it.
            model: its default model (a registry name or ``auto``).
            metadata: free-form JSON metadata.
            prompt: a stored template (``name``, ``name@version`` or ``name:label``) to
                render as the system prompt instead of ``system_prompt``.
            variables: the template's variables.
        """
        call = create_conversation_call(
            title,
            system_prompt=system_prompt,
            model=model,
            metadata=metadata,
            prompt=prompt,
            variables=variables,
        )
        return self._client._call(call)

    def get(self, conversation_id: str) -> Conversation:
        """Fetch one conversation; :class:`~somaagent.errors.NotFoundError` if unknown."""
        return self._client._call(get_conversation_call(conversation_id))

    def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[Conversation]:
        """One page of conversations, newest first; pass ``next_cursor`` back as ``cursor``."""
        return self._client._call(list_conversations_call(limit=limit, cursor=cursor))

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its messages."""
        self._client._call(delete_conversation_call(conversation_id))

    def send_message(
        self,
        conversation_id: str,
        content: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        idempotency_key: str | None = None,
        policy: PolicyLike | None = None,
        collection: str | None = None,
    ) -> MessageExchange:
        """Send a user message and wait for the assistant's reply.

        Args:
            conversation_id: the conversation to add to.
            content: the user's message.
            model: a model for this message (a registry name or ``auto``).
            max_tokens: the most tokens the reply may have.
            temperature: sampling temperature, 0 to 2.
            idempotency_key: reuse a key to make a repeated send safe; one is made otherwise,
                and kept across the SDK's own retries.
            policy: a routing policy for the router to apply: a
                :class:`~somaagent.types.RoutingPolicy` or a mapping of its fields. It asks the
                router to choose, so ``model`` must be ``auto`` or left out.
            collection: a memory collection to ground the answer in; the reply's ``sources``
                say what it cites.
        """
        call = send_message_call(
            conversation_id,
            content,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            idempotency_key=idempotency_key,
            stream=False,
            policy=policy,
            collection=collection,
        )
        return self._client._call(call)

    def stream_message(
        self,
        conversation_id: str,
        content: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        idempotency_key: str | None = None,
        policy: PolicyLike | None = None,
        collection: str | None = None,
    ) -> MessageStream:
        """Send a user message and stream the reply as Server-Sent Events.

        Takes the arguments of :meth:`send_message`. The request is sent when the stream is
        entered or first read; use it as a context manager.
        """
        call = send_message_call(
            conversation_id,
            content,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            idempotency_key=idempotency_key,
            stream=True,
            policy=policy,
            collection=collection,
        )
        return self._client._stream(call)

    def messages(
        self, conversation_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> Page[Message]:
        """One page of a conversation's messages, oldest first."""
        call = list_messages_call(conversation_id, limit=limit, cursor=cursor)
        return self._client._call(call)


class AsyncConversations:
    """``client.conversations`` of :class:`AsyncClient`; see :class:`Conversations`."""

    def __init__(self, client: AsyncSender) -> None:
        self._client = client

    async def create(
        self,
        title: str | None = None,
        *,
        system_prompt: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        prompt: str | None = None,
        variables: dict[str, Any] | None = None,
    ) -> Conversation:
        """Create a conversation; see :meth:`Conversations.create`."""
        call = create_conversation_call(
            title,
            system_prompt=system_prompt,
            model=model,
            metadata=metadata,
            prompt=prompt,
            variables=variables,
        )
        return await self._client._call(call)

    async def get(self, conversation_id: str) -> Conversation:
        """Fetch one conversation; :class:`~somaagent.errors.NotFoundError` if unknown."""
        return await self._client._call(get_conversation_call(conversation_id))

    async def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[Conversation]:
        """One page of conversations, newest first; pass ``next_cursor`` back as ``cursor``."""
        return await self._client._call(list_conversations_call(limit=limit, cursor=cursor))

    async def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its messages."""
        await self._client._call(delete_conversation_call(conversation_id))

    async def send_message(
        self,
        conversation_id: str,
        content: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        idempotency_key: str | None = None,
        policy: PolicyLike | None = None,
        collection: str | None = None,
    ) -> MessageExchange:
        """Send a user message and wait for the reply; see :meth:`Conversations.send_message`."""
        call = send_message_call(
            conversation_id,
            content,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            idempotency_key=idempotency_key,
            stream=False,
            policy=policy,
            collection=collection,
        )
        return await self._client._call(call)

    def stream_message(
        self,
        conversation_id: str,
        content: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        idempotency_key: str | None = None,
        policy: PolicyLike | None = None,
        collection: str | None = None,
    ) -> AsyncMessageStream:
        """Send a user message and stream the reply; use with ``async with``.

        Not a coroutine: the request is sent when the stream is entered or first read.
        """
        call = send_message_call(
            conversation_id,
            content,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            idempotency_key=idempotency_key,
            stream=True,
            policy=policy,
            collection=collection,
        )
        return self._client._stream(call)

    async def messages(
        self, conversation_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> Page[Message]:
        """One page of a conversation's messages, oldest first."""
        call = list_messages_call(conversation_id, limit=limit, cursor=cursor)
        return await self._client._call(call)
