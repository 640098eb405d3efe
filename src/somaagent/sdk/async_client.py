"""The asynchronous client: the twin of :mod:`somaagent.sdk.client`, awaiting its I/O."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

import anyio
import httpx

from somaagent.errors import APIError, SomaAgentError
from somaagent.sdk._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    APICall,
    BaseClient,
    RetryCallback,
    check_event_stream,
    connection_error,
    error_from_response,
    parse_result,
    title_from,
)
from somaagent.sdk._capsules import AsyncCapsules
from somaagent.sdk._conversations import (
    AsyncConversations,
    delete_conversation_call,
    send_message_call,
)
from somaagent.sdk._faults import AsyncFaults
from somaagent.sdk._feedback import (
    FeedbackResult,
    RouteReport,
    RouteTrainResult,
    feedback_call,
    route_report_call,
    route_train_call,
)
from somaagent.sdk._identity import Identity, me_call
from somaagent.sdk._memory import AsyncEmbeddings, AsyncMemory
from somaagent.sdk._models import AsyncModels
from somaagent.sdk._prompts import AsyncPrompts
from somaagent.sdk._routing import PolicyLike, route_call
from somaagent.sdk._streaming import AsyncMessageStream
from somaagent.sdk._workflows import AsyncWorkflows
from somaagent.types import MessageExchange, RouteDecision

T = TypeVar("T")


class AsyncClient(BaseClient):
    """An asynchronous client of the SomaAgent gateway, the twin of :class:`Client`.

    ::

        async with AsyncClient() as client:  # SOMA_API_KEY, SOMA_BASE_URL from the environment
            conversation = await client.conversations.create(title="Support")
            exchange = await client.conversations.send_message(conversation.id, "Hello")
            print(exchange.reply.content)

    Args:
        api_key: the API key; defaults to ``SOMA_API_KEY``, then the key ``soma login``
            stored.
        base_url: the gateway's URL; defaults to ``SOMA_BASE_URL``, then the URL ``soma login``
            stored, else ``http://127.0.0.1:8080``.
        timeout: seconds (or an ``httpx.Timeout``) allowed for each request.
        max_retries: how many times a retryable failure is retried.
        on_retry: called with a :class:`~somaagent.sdk._base.RetryEvent` before each retry's
            wait (``event.describe()`` reads "rate limited, retrying in 2 s").
        http_client: an ``httpx.AsyncClient`` to send through (a proxy, an
            ``httpx.ASGITransport``); the client takes it over and closes it in :meth:`aclose`.

    Raises:
        ConfigurationError: when no API key is given, set in the environment or stored.
    """

    capsules: AsyncCapsules
    conversations: AsyncConversations
    models: AsyncModels
    prompts: AsyncPrompts
    workflows: AsyncWorkflows
    memory: AsyncMemory
    embeddings: AsyncEmbeddings

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        on_retry: RetryCallback | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            on_retry=on_retry,
        )
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self.capsules = AsyncCapsules(self)
        self.conversations = AsyncConversations(self)
        self.models = AsyncModels(self)
        self.prompts = AsyncPrompts(self)
        self.memory = AsyncMemory(self)
        self.embeddings = AsyncEmbeddings(self)
        self.faults = AsyncFaults(self)
        self.workflows = AsyncWorkflows(self)

    async def me(self) -> Identity:
        """The API key's identity: ``key_id``, ``name``, ``tenant`` and ``scope``."""
        return await self._call(me_call())

    @overload
    async def chat(
        self,
        content: str,
        *,
        conversation_id: str | None = ...,
        model: str | None = ...,
        policy: PolicyLike | None = ...,
        collection: str | None = ...,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        stream: Literal[False] = ...,
    ) -> MessageExchange: ...

    @overload
    async def chat(
        self,
        content: str,
        *,
        conversation_id: str | None = ...,
        model: str | None = ...,
        policy: PolicyLike | None = ...,
        collection: str | None = ...,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        stream: Literal[True],
    ) -> AsyncMessageStream: ...

    async def chat(
        self,
        content: str,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        policy: PolicyLike | None = None,
        collection: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = False,
    ) -> MessageExchange | AsyncMessageStream:
        """Send one message, in a new conversation unless ``conversation_id`` is given.

        When the gateway refuses the first message of a new conversation (a message over the
        size limit, a bad field), the conversation made for it is deleted again, so a refused
        call leaves nothing behind.

        Args:
            content: the user's message.
            conversation_id: the conversation to continue; a new one (titled after the
                message, with ``model`` as its default) is created when omitted.
            model: the model to answer with (a registry name, or ``auto`` for the router).
            policy: a routing policy for the router to apply (see :meth:`route`); with
                one, ``model`` must be ``auto`` or left out.
            collection: a memory collection to ground the answer in.
            max_tokens: the most tokens the reply may have.
            temperature: sampling temperature, 0 to 2.
            stream: return an :class:`AsyncMessageStream` instead of waiting for the reply.
        """
        created: str | None = None
        if conversation_id is None:
            created = (await self.conversations.create(title_from(content), model=model)).id
            conversation_id = created
        call = send_message_call(
            conversation_id,
            content,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            idempotency_key=None,
            stream=stream,
            policy=policy,
            collection=collection,
        )

        # A refused first message leaves nothing behind: the conversation made for it goes.
        async def forget() -> None:
            if created is not None:
                await self._forget(created)

        if stream:
            return self._stream(call, on_refused=forget)
        try:
            return await self._call(call)
        except APIError:
            await forget()
            raise

    async def route(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        policy: PolicyLike | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
    ) -> RouteDecision:
        """Explain which model the router would choose, and why; no model is called.

        ::

            from somaagent.types import RoutingPolicy

            policy = RoutingPolicy(max_cost_usd=0.01)
            decision = await client.route("Prove that sqrt(2) is irrational", policy=policy)
            print(decision.model, decision.reason)
            for candidate in decision.candidates:
                print(candidate.model, candidate.predicted_quality, candidate.why)

        Args:
            prompt: the prompt to route; give it or ``messages``, not both.
            messages: a conversation to route instead: ``{"role": ..., "content": ...}``
                mappings, roles ``system``, ``user`` and ``assistant``.
            policy: what to ask of the router: a :class:`~somaagent.types.RoutingPolicy`, or a
                mapping of its fields (checked by the gateway).
            max_tokens: the most tokens the answer may have (it bounds the cost estimate).
            stream: route as for a streamed answer (only models that stream are eligible).

        Returns:
            The chosen model, the reason, and every candidate with its predicted quality,
            estimated cost and latency, and why it was or was not chosen.

        Raises:
            ValidationError: an unknown or invalid policy field, a policy no model meets, or a
                prompt longer than every context window; ``errors`` names the field.
        """
        call = route_call(
            prompt, messages=messages, policy=policy, max_tokens=max_tokens, stream=stream
        )
        return await self._call(call)

    async def feedback(
        self,
        answer_id: str,
        rating: Literal["up", "down"] | None = None,
        *,
        score: float | None = None,
        comment: str | None = None,
    ) -> FeedbackResult:
        """Tell the router how a routed answer did: ``rating`` up/down or a ``score`` (0-1).

        ::

            exchange = await client.chat("Summarise this contract...", model="auto")
            await client.feedback(exchange.reply.id, "up")

        Args:
            answer_id: the reply's message id, or a chat completion's id.
            rating: ``"up"`` (1) or ``"down"`` (0); give it or ``score``.
            score: a score from 0 to 1.
            comment: a note kept with the rating.

        Raises:
            NotFoundError: no routed answer of this tenant has the id.
            ValidationError: neither or both of ``rating`` and ``score``.
        """
        return await self._call(feedback_call(answer_id, rating, score=score, comment=comment))

    async def route_train(self) -> RouteTrainResult:
        """Fit the router's heads on this tenant's feedback; promoted only if they predict
        held-out feedback better.

        Raises:
            ValidationError: not enough rated answers yet (the message says how many).
        """
        return await self._call(route_train_call())

    async def route_report(self) -> RouteReport:
        """This tenant's routing: per-model win rates, savings realised, its heads."""
        return await self._call(route_report_call())

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._http.is_closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, call: APICall[T]) -> T:
        response = await self._send(call)
        return parse_result(call, response)

    def _stream(
        self,
        call: APICall[Any],
        *,
        on_refused: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncMessageStream:
        async def open_stream() -> httpx.Response:
            try:
                return await self._send(call)
            except APIError:
                if on_refused is not None:
                    await on_refused()
                raise

        return AsyncMessageStream(open_stream, base_url=self.base_url)

    async def _forget(self, conversation_id: str) -> None:
        """Delete a conversation made for a message the gateway refused; best effort."""
        with contextlib.suppress(SomaAgentError):
            await self._call(delete_conversation_call(conversation_id))

    async def _send(self, call: APICall[Any]) -> httpx.Response:
        """Send ``call``, retrying as the policy says; a streamed answer is left open."""
        args = self._request_args(call)  # once: retries reuse the same Idempotency-Key
        attempt = 0
        while True:
            cause: Exception | None = None
            error: SomaAgentError
            try:
                request = self._http.build_request(**args)
                response = await self._http.send(request, stream=call.stream)
                if not response.is_success:
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
            except httpx.TransportError as exc:
                cause, error = exc, connection_error(exc, base_url=self.base_url)
            else:
                if response.is_success:
                    if call.stream:
                        await _check_stream(response)
                    return response
                error = error_from_response(response)
            delay = self._retry_delay(attempt, error)
            if delay is None:
                raise error from cause
            await self._sleep(delay)
            attempt += 1

    async def _sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


async def _check_stream(response: httpx.Response) -> None:
    try:
        check_event_stream(response)
    except SomaAgentError:
        await response.aclose()
        raise
