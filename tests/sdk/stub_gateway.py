"""A small in-memory stand-in for the gateway, speaking the API of ``docs/api.md``.

It lets the SDK and CLI tests run before (and independently of) the real gateway: the same
routes, problem+json errors, ``x-request-id`` headers, cursor pagination and SSE events.
For tests it adds what a real server cannot be asked to do on cue:

* ``fail_next(n, status, retry_after=...)``: the next ``n`` requests (optionally only those to
  one path) answer with that problem, so retries can be watched;
* ``requests``: every request received, with its headers (``Idempotency-Key``...);
* message contents that steer a stream: ``!error`` (an ``error`` event), ``!truncate`` (the
  stream ends without ``message.completed``) and ``!drop`` (the connection is cut).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from somaagent import errors
from somaagent.types import (
    Conversation,
    ConversationCreate,
    Message,
    MessageCreate,
    MessageExchange,
    ModelInfo,
    Role,
    Usage,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ALICE_KEY = "soma_sk_test_alice_0123456789"
BOB_KEY = "soma_sk_test_bob_9876543210"
KEYS: dict[str, dict[str, str]] = {
    ALICE_KEY: {"key_id": "key_alice", "name": "alice", "tenant": "acme", "scope": "member"},
    BOB_KEY: {"key_id": "key_bob", "name": "bob", "tenant": "globex", "scope": "admin"},
}
DEFAULT_MODEL = "stub-echo-1"
MODELS = [
    ModelInfo(
        id=DEFAULT_MODEL,
        provider="stub",
        provider_model_id="echo",
        context_window=8192,
        max_output_tokens=1024,
        input_cost_per_mtok=0.5,
        output_cost_per_mtok=1.5,
    ),
    ModelInfo(
        id="stub-big",
        provider="stub",
        provider_model_id="big",
        context_window=128_000,
        input_cost_per_mtok=3.0,
        output_cost_per_mtok=15.0,
        available=False,
    ),
]


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the stub received it; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None
    path: str | None
    error: type[errors.APIError] | None = None


@dataclass
class _Tenant:
    conversations: dict[str, Conversation] = field(default_factory=dict)
    messages: dict[str, list[Message]] = field(default_factory=dict)
    sent: dict[str, MessageExchange] = field(default_factory=dict)  # by Idempotency-Key


def _problem(
    exc: errors.APIError, request_id: str | None, *, retry_after: float | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": exc.problem_type,
        "title": exc.title,
        "status": exc.status_code,
        "detail": exc.message,
        "request_id": request_id,
    }
    if exc.errors:
        body["errors"] = exc.errors
    headers = {}
    retry_after = retry_after if retry_after is not None else getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return JSONResponse(
        body, status_code=exc.status_code, media_type="application/problem+json", headers=headers
    )


def _identity(request: Request) -> dict[str, str]:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or key not in KEYS:
        raise errors.AuthenticationError("missing or invalid API key")
    return KEYS[key]


# Module level, because FastAPI resolves the (postponed) annotations in the module's globals.
Me = Annotated[dict[str, str], Depends(_identity)]
Limit = Annotated[int, Query(ge=1, le=100)]


def _sse(event: str, event_id: int, data: dict[str, Any]) -> str:
    return f"event: {event}\nid: {event_id}\ndata: {json.dumps(data)}\n\n"


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        kind, _, offset = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "o" and int(offset) >= 0:
            return int(offset)
    except ValueError:
        pass
    raise errors.BadRequestError(f"invalid cursor {cursor!r}")


class StubGateway:
    """The stand-in gateway: an ASGI application to serve or mount."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._tenants: dict[str, _Tenant] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._api = self._build_api()

    # -- test controls -------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        retry_after: float | None = None,
        path: str | None = None,
        error: type[errors.APIError] | None = None,
    ) -> None:
        """Answer the next ``count`` requests (to ``path`` only, if given) with ``status``, as
        the problem of ``error`` (default: the status's own class)."""
        with self._lock:
            self._faults.append(_Fault(status, count, retry_after, path, error))

    def reset(self) -> None:
        """Forget requests, faults and data."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._tenants.clear()

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests to ``path`` (and ``method``), oldest first."""
        return [r for r in self.requests if r.path == path and method in (None, r.method)]

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Record the request, apply a pending fault, add ``x-request-id``, then serve."""
        if scope["type"] != "http":
            await self._api(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex[:12]}"
        scope.setdefault("state", {})["request_id"] = request_id
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            self.requests.append(RecordedRequest(scope["method"], scope["path"], headers))
            fault = self._take_fault(scope["path"])

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        if fault is not None:
            cls = fault.error or errors.error_class_for_status(fault.status)
            exc = cls(f"injected {fault.status}", status_code=fault.status)
            response = _problem(exc, request_id, retry_after=fault.retry_after)
            await response(scope, receive, send_with_id)
            return
        await self._api(scope, receive, send_with_id)

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path is None or fault.path == path:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- the API -------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def _tenant(self, name: str) -> _Tenant:
        with self._lock:
            return self._tenants.setdefault(name, _Tenant())

    def _build_api(self) -> FastAPI:
        api = FastAPI()

        async def on_api_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, errors.APIError)
            return _problem(exc, getattr(request.state, "request_id", None))

        async def on_validation(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, RequestValidationError)
            details = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ]
            fields = ", ".join(".".join(map(str, d["loc"])) for d in details)
            error = errors.ValidationError(f"invalid request: {fields}", errors=details)
            return _problem(error, getattr(request.state, "request_id", None))

        async def on_http(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, StarletteHTTPException)
            cls = errors.error_class_for_status(exc.status_code)
            error = cls(str(exc.detail), status_code=exc.status_code)
            return _problem(error, getattr(request.state, "request_id", None))

        api.add_exception_handler(errors.APIError, on_api_error)
        api.add_exception_handler(RequestValidationError, on_validation)
        api.add_exception_handler(StarletteHTTPException, on_http)

        def find(me: dict[str, str], conversation_id: str) -> tuple[_Tenant, Conversation]:
            tenant = self._tenant(me["tenant"])
            if conversation_id not in tenant.conversations:
                raise errors.NotFoundError(f"conversation {conversation_id} not found")
            return tenant, tenant.conversations[conversation_id]

        @api.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @api.get("/v1/me")
        async def me(me: Me) -> dict[str, str]:
            return me

        @api.get("/v1/models")
        async def models(me: Me) -> dict[str, Any]:
            data = [
                {"object": "model", "created": 0, "owned_by": m.provider, **m.model_dump()}
                for m in MODELS
            ]
            return {"object": "list", "data": data}

        @api.post("/v1/conversations", status_code=201)
        async def create(body: ConversationCreate, me: Me) -> dict[str, Any]:
            now = datetime.now(UTC)
            conversation = Conversation(
                id=self._new_id("conv"), created_at=now, updated_at=now, **body.model_dump()
            )
            tenant = self._tenant(me["tenant"])
            tenant.conversations[conversation.id] = conversation
            tenant.messages[conversation.id] = []
            return conversation.model_dump(mode="json")

        @api.get("/v1/conversations")
        async def list_conversations(
            me: Me, limit: Limit = 20, cursor: str | None = None
        ) -> dict[str, Any]:
            items = list(reversed(self._tenant(me["tenant"]).conversations.values()))
            return _page(items, _decode_cursor(cursor), limit)

        @api.get("/v1/conversations/{conversation_id}")
        async def get(conversation_id: str, me: Me) -> dict[str, Any]:
            return find(me, conversation_id)[1].model_dump(mode="json")

        @api.delete("/v1/conversations/{conversation_id}", status_code=204)
        async def delete(conversation_id: str, me: Me) -> Response:
            tenant, _ = find(me, conversation_id)
            del tenant.conversations[conversation_id]
            del tenant.messages[conversation_id]
            return Response(status_code=204)

        @api.get("/v1/conversations/{conversation_id}/messages")
        async def list_messages(
            conversation_id: str, me: Me, limit: Limit = 20, cursor: str | None = None
        ) -> dict[str, Any]:
            tenant, _ = find(me, conversation_id)
            return _page(tenant.messages[conversation_id], _decode_cursor(cursor), limit)

        @api.post(
            "/v1/conversations/{conversation_id}/messages", status_code=201, response_model=None
        )
        async def send(
            conversation_id: str, body: MessageCreate, me: Me, request: Request
        ) -> dict[str, Any] | StreamingResponse:
            tenant, conversation = find(me, conversation_id)
            key = request.headers.get("idempotency-key")
            if key and key in tenant.sent and not body.stream:
                return tenant.sent[key].model_dump(mode="json")
            user = self._message(conversation, "user", body.content)
            tenant.messages[conversation_id].append(user)
            text = f"Echo: {body.content}"
            reply = self._message(
                conversation, "assistant", text, model=body.model or conversation.model
            )
            if body.stream:
                return StreamingResponse(
                    self._events(tenant, user, reply), media_type="text/event-stream"
                )
            tenant.messages[conversation_id].append(reply)
            exchange = MessageExchange(message=user, reply=reply)
            if key:
                tenant.sent[key] = exchange
            return exchange.model_dump(mode="json")

        return api

    def _message(
        self, conversation: Conversation, role: Role, content: str, *, model: str | None = None
    ) -> Message:
        fields: dict[str, Any] = {}
        if role == "assistant":
            words = len(content.split())
            fields = {
                "model": model or DEFAULT_MODEL,
                "provider": "stub",
                "usage": Usage(
                    prompt_tokens=words, completion_tokens=words, total_tokens=2 * words
                ),
                "cost_usd": 2 * words * 1e-6,
                "latency_ms": 12.5,
            }
        return Message(
            id=self._new_id("msg"),
            conversation_id=conversation.id,
            role=role,
            content=content,
            created_at=datetime.now(UTC),
            **fields,
        )

    async def _events(self, tenant: _Tenant, user: Message, reply: Message) -> AsyncIterator[str]:
        ids = itertools.count(1)
        yield ": stub gateway stream\n\n"  # a comment line, which clients must ignore
        yield _sse("message.created", next(ids), {"message": user.model_dump(mode="json")})
        words = reply.content.split(" ")
        for i, word in enumerate(words):
            delta = word if i == len(words) - 1 else word + " "
            yield _sse("message.delta", next(ids), {"delta": delta})
            if "!drop" in user.content and i == 1:
                raise RuntimeError("stub: connection dropped on purpose")
        if "!truncate" in user.content:
            return
        if "!error" in user.content:
            problem = {
                "type": errors.PROBLEM_BASE + errors.UpstreamError.slug,
                "title": errors.UpstreamError.title,
                "status": 502,
                "detail": "the model failed mid-stream",
            }
            yield _sse("error", next(ids), problem)
            return
        tenant.messages[user.conversation_id].append(reply)
        yield _sse("message.completed", next(ids), {"message": reply.model_dump(mode="json")})


def _page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    chunk = items[offset : offset + limit]
    has_more = offset + limit < len(items)
    return {
        "data": [item.model_dump(mode="json") for item in chunk],
        "next_cursor": _encode_cursor(offset + limit) if has_more else None,
        "has_more": has_more,
    }
