"""``/v1/conversations`` and their messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from somaagent import types
from somaagent.chat.events import TurnEvent
from somaagent.gateway.auth import CurrentPrincipal, State
from somaagent.gateway.headers import route_headers
from somaagent.gateway.problems import problem_body, to_api_error
from somaagent.gateway.streaming import SSE_HEADERS, SSE_MEDIA_TYPE, sse_event

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_conversation(
    body: types.ConversationCreate, who: CurrentPrincipal, state: State
) -> types.Conversation:
    return await state.conversations.create(who, body)


@router.get("")
async def list_conversations(
    who: CurrentPrincipal, state: State, limit: Limit = 20, cursor: Cursor = None
) -> types.Page[types.Conversation]:
    return await state.conversations.list_page(who, limit=limit, cursor=cursor)


@router.get("/{conversation_id}")
async def get_conversation(
    conversation_id: str, who: CurrentPrincipal, state: State
) -> types.Conversation:
    return await state.conversations.get(who, conversation_id)


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(
    conversation_id: str, who: CurrentPrincipal, state: State
) -> Response:
    await state.conversations.delete(who, conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=types.MessageExchange,
    responses={201: {"content": {SSE_MEDIA_TYPE: {}}}},
)
async def send_message(
    conversation_id: str,
    body: types.MessageCreate,
    who: CurrentPrincipal,
    state: State,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> types.MessageExchange | StreamingResponse:
    """Send a user message and get the model's reply (SSE when ``stream`` is true)."""
    if body.stream:
        events, route = await state.turns.stream(
            who, conversation_id, body, idempotency_key=idempotency_key
        )
        return StreamingResponse(
            _sse(events),
            status_code=200,
            media_type=SSE_MEDIA_TYPE,
            headers={**SSE_HEADERS, **route_headers(route)},
        )
    exchange, route = await state.turns.send(
        who, conversation_id, body, idempotency_key=idempotency_key
    )
    response.headers.update(route_headers(route))
    return exchange


async def _sse(events: AsyncIterator[TurnEvent]) -> AsyncIterator[bytes]:
    """A turn's events as Server-Sent Events, numbered from 1; a failure as its problem."""
    async with aclosing(events) as turn:  # type: ignore[type-var]
        event_id = 0
        async for event in turn:
            event_id += 1
            data = event.data
            if event.error is not None:
                data = problem_body(to_api_error(event.error), None)
            yield sse_event(event.name, data, event_id)


@router.get("/{conversation_id}/messages")
async def list_messages(
    conversation_id: str,
    who: CurrentPrincipal,
    state: State,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> types.Page[types.Message]:
    return await state.conversations.messages(who, conversation_id, limit=limit, cursor=cursor)
