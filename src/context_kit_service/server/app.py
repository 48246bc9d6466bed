"""The FastAPI app factory: middleware, error handlers, lifespan and routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langserve import add_routes

from context_kit_service import __version__
from context_kit_service.checkpointer import open_checkpointer, pruning
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.writes import WriteRefused, recover_interrupted
from context_kit_service.server import routes_ai, routes_assist, routes_health
from context_kit_service.server.docs import install_docs
from context_kit_service.server.errors import install_error_handlers
from context_kit_service.server.health import HealthChecker
from context_kit_service.server.middleware import (
    LOOPBACK_HOSTS,
    AuthMiddleware,
    BodyLimitMiddleware,
    CrossSiteMiddleware,
    GraphBodyMiddleware,
    RequestContextMiddleware,
)
from context_kit_service.server.openapi import install_openapi
from context_kit_service.server.stalled_clients import StalledClientMiddleware
from context_kit_service.server.state import ServiceState
from context_kit_service.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def mount_graphs(app: FastAPI, state: ServiceState) -> None:
    """Every served graph's LangServe routes; the server's own config keys are added to
    each request's config (clients cannot set them)."""

    async def add_server_config(config: dict[str, Any], request: Request) -> dict[str, Any]:
        return dict(state.run_config(cast(RunnableConfig, config)))

    for served in state.served.values():
        add_routes(app, served, path=served.spec.path, per_req_config_modifier=add_server_config)


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """Added outermost last: request ids wrap everything, then auth, then the Host and
    content-type checks, then CORS, then the size cap, then the check of LangServe bodies."""
    app.add_middleware(GraphBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    hosts = LOOPBACK_HOSTS | {settings.host.strip("[]").lower(), *settings.allowed_hosts}
    app.add_middleware(CrossSiteMiddleware, hosts=frozenset(h.lower() for h in hosts))
    if settings.auth_token is not None:
        app.add_middleware(
            AuthMiddleware,
            token=settings.auth_token.get_secret_value(),
            cors_origins=frozenset(settings.cors_origins),
        )
    app.add_middleware(StalledClientMiddleware, stall_s=settings.stream_stall_s)
    app.add_middleware(RequestContextMiddleware)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Changes a crash interrupted finished first; the checkpointer, open for the service's
    life, attached to the threaded graphs and pruned in the background; repositories watched
    for changes while the service runs."""
    state: ServiceState = app.state.service
    state.settings.data_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(finish_interrupted_writes, state.settings)
    async with (
        open_checkpointer(state.settings) as checkpointer,
        pruning(checkpointer, state.settings),
    ):
        state.attach(checkpointer)
        repositories.watch(True)
        try:
            yield
        finally:
            repositories.watch(False)
            state.attach(None)


def finish_interrupted_writes(settings: Settings) -> None:
    """Roll the write journal forward or back (a full or read-only disk is logged: the next
    write finishes it, and /health says what is wrong)."""
    defaults = [settings.repo_path] if settings.repo_path is not None else []
    try:
        recover_interrupted(settings.data_dir, *defaults)
    except (OSError, WriteRefused) as exc:
        logger.warning("interrupted writes not finished at start: %s", exc)


def create_app(
    settings: Settings | None = None,
    *,
    health: HealthChecker | None = None,
    chat_model: BaseChatModel | None = None,
    embeddings: Embeddings | None = None,
) -> FastAPI:
    """Build the service. Cheap: models and indexes load lazily, on first use.

    `chat_model` and `embeddings` replace the configured providers for every graph (tests,
    evals, embedding the service in another program).
    """
    settings = settings or get_settings()
    state = ServiceState(
        settings=settings,
        health=health or HealthChecker(settings),
        chat_model=chat_model,
        embeddings=embeddings,
    )

    app = FastAPI(
        title="context-kit-service",
        version=__version__,
        description="LangGraph agent orchestration sidecar of the context-kit desktop app.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    install_error_handlers(app)
    app.include_router(routes_health.router)
    app.include_router(routes_ai.router)
    app.include_router(routes_assist.router)
    mount_graphs(app, state)
    install_openapi(app, with_token=settings.auth_token is not None)
    install_docs(app)
    add_middleware(app, settings)
    return app
