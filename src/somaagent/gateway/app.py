"""The app factory: ``create_app(settings)`` builds a gateway; start-up migrates the
database and, on the very first start, creates an admin API key and shows it once."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from somaagent._version import __version__
from somaagent.accounts import keys
from somaagent.accounts.usage import UsageLedger
from somaagent.chat import idempotency
from somaagent.chat.completions import ChatCompletions
from somaagent.chat.conversations import ConversationService
from somaagent.chat.grounding import ground
from somaagent.chat.providers import ProviderPool
from somaagent.chat.turns import ChatTurns
from somaagent.db.engine import make_engine, make_sessionmaker, migrate
from somaagent.gateway import faults, problems
from somaagent.gateway.metrics import Metrics
from somaagent.gateway.middleware import GatewayMiddleware
from somaagent.gateway.ratelimit import RateLimiter
from somaagent.gateway.routes import capsules as capsule_routes
from somaagent.gateway.routes import conversations, health, me, openai_compat, route, slo
from somaagent.gateway.routes import embeddings as embedding_routes
from somaagent.gateway.routes import faults as fault_routes
from somaagent.gateway.routes import feedback as feedback_routes
from somaagent.gateway.routes import memory as memory_routes
from somaagent.gateway.routes import prompts as prompt_routes
from somaagent.gateway.routes import workflows as workflow_routes
from somaagent.gateway.routing import routing_services
from somaagent.gateway.services import memory_service, provider_config
from somaagent.gateway.settings import Settings
from somaagent.gateway.state import GatewayState
from somaagent.http import aclose_client
from somaagent.llm.fallback import FallbackConfig
from somaagent.llm.registry import ModelRegistry
from somaagent.prompts.service import PromptService

AdminKeyCallback = Callable[[str], None]


def _show_admin_key(secret: str) -> None:
    # Printed once to the terminal that started the server; never logged.
    print(
        "\nSomaAgent created the first admin API key. It is shown only this once:\n\n"
        f"    {secret}\n\n"
        "Use it with: soma login --api-key <key>   (or export SOMA_API_KEY=<key>)\n",
        file=sys.stderr,
        flush=True,
    )


def create_app(
    settings: Settings | None = None, *, on_admin_key: AdminKeyCallback | None = None
) -> FastAPI:
    """Build a gateway app. ``on_admin_key`` receives the first admin key (default: print)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Each resource's close is registered as it is made, so a start-up that fails half-way
        # (a bad setting, an unreachable database) still closes what it opened, newest first.
        cleanup = contextlib.AsyncExitStack()
        try:
            await _start(app, cleanup)
        except BaseException:
            await cleanup.aclose()
            raise
        # Everything made at start lives as long as the app: move it out of the collector's
        # way. Full collections otherwise took ~25% of the CPU at 32 connections and made the
        # p95 tail (bench/results/gateway_overhead.md).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await cleanup.aclose()

    async def _start(app: FastAPI, cleanup: contextlib.AsyncExitStack) -> None:
        engine = make_engine(settings.resolved_database_url)
        cleanup.push_async_callback(engine.dispose)
        cleanup.push_async_callback(aclose_client)
        cleanup.push_async_callback(idempotency.stop_heartbeats)  # before the engine goes
        await migrate(engine)
        sessions = make_sessionmaker(engine)
        prompts = PromptService(sessions)
        factory = getattr(app.state, "memory_factory", None)
        memory = (
            factory(settings, sessions) if callable(factory) else memory_service(settings, sessions)
        )
        cleanup.push_async_callback(memory.aclose)
        # chunks an interrupted indexing run left behind must not be served (issue 14)
        await memory.repair()
        if settings.bootstrap_admin_key:
            async with sessions() as session:
                if await keys.count_active_admin_keys(session) == 0:
                    _, secret = await keys.create_key(
                        session,
                        name="admin (first start)",
                        tenant=keys.DEFAULT_TENANT,
                        scope="admin",
                    )
                    (on_admin_key or _show_admin_key)(secret)
        registry = ModelRegistry.load(settings.models_file)
        pool = ProviderPool(provider_config(settings), registry)
        cleanup.push_async_callback(pool.aclose)
        fault_points = None
        if settings.fault_points_enabled:
            fault_points = faults.fault_points_for(metrics)
            faults.install(fault_points, memory=memory, pool=pool)
        router, route_feedback = await routing_services(
            settings, registry, sessions, adapter_for=pool.adapter
        )
        cleanup.push_async_callback(route_feedback.aclose)  # shadow judgements in flight
        usage = UsageLedger(sessions)
        usage.start()
        cleanup.push_async_callback(usage.aclose)
        conversation_store = ConversationService(
            sessions,
            pool,
            prompts,
            lambda: app.state.gateway.memory,
            max_history=settings.max_history_messages,
        )
        # one fallback config for conversation turns and OpenAI-style completions alike
        fallback = FallbackConfig(attempt_timeout_s=settings.provider_timeout_s)
        app.state.gateway = GatewayState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            metrics=metrics,
            pool=pool,
            rate_limiter=RateLimiter(settings.rate_limit_per_minute),
            prompts=prompts,
            memory=memory,
            router=router,
            usage=usage,
            conversations=conversation_store,
            turns=ChatTurns(
                conversation_store,
                pool,
                router,
                usage,
                metrics,
                default_max_tokens=settings.default_max_tokens,
                fallback=fallback,
                grounder=lambda *args, **kwargs: ground(
                    app.state.gateway.memory, *args, prompts=prompts, **kwargs
                ),
                outcomes=route_feedback,
            ),
            completions=ChatCompletions(
                pool,
                router,
                usage,
                metrics,
                prompts,
                fallback=fallback,
                outcomes=route_feedback,
            ),
            faults=fault_points,
        )
        app.state.gateway.route_feedback = route_feedback
        app.state.gateway.workflows = await workflow_routes.open_workflows(app.state.gateway)
        if app.state.gateway.workflows is not None:
            cleanup.push_async_callback(app.state.gateway.workflows.aclose)

    app = FastAPI(
        title="SomaAgent",
        version=__version__,
        description="One gateway for many language models.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(GatewayMiddleware, metrics=metrics, max_body=settings.max_request_bytes)
    for module in (  # the hot OpenAI-compatible path first: routers are tried in order
        openai_compat,
        health,
        me,
        conversations,
        prompt_routes,
        route,
        feedback_routes,
        slo,
        memory_routes,
        embedding_routes,
        fault_routes,
        workflow_routes,
        capsule_routes,
    ):
        app.include_router(module.router)
    return app
