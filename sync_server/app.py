"""The one application factory, used by the CLI, `uvicorn --factory` and the tests."""

from __future__ import annotations

import gc
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.config.app import AppConfig
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server import __version__
from sync_server.auth import Principal, SessionCache, build_jwt_auth, principal_of
from sync_server.db import create_engine, dispose_engine
from sync_server.http_caching import ETagMiddleware
from sync_server.http_hardening import harden_app
from sync_server.logs import configure_logging
from sync_server.problems import exception_handlers
from sync_server.ratelimit import RateLimiter, RateLimitMiddleware, open_rate_limiter
from sync_server.records import Records
from sync_server.relay.bus import open_bus
from sync_server.relay.hub import Hub
from sync_server.relay.metrics import RelayMetrics
from sync_server.routes import api_docs, health, viewer_pages
from sync_server.routes import auth as auth_routes
from sync_server.routes import clubs as club_routes
from sync_server.routes import events as event_routes
from sync_server.routes import live as live_routes
from sync_server.routes import matches as match_routes
from sync_server.routes import share as share_routes
from sync_server.routes import sync as sync_routes
from sync_server.routes import teams as team_routes
from sync_server.runtime import tune_collector
from sync_server.settings import Settings
from sync_server.store import ChangeStore
from sync_server.store_pg import PostgresChangeStore, open_store

__all__ = ["app_from_env", "configure_logging", "create_app"]


class _EngineLifespan:
    """Owns the engine for the app's lifetime unless the caller passed one in.

    An engine passed to `create_app` belongs to the caller (tests share one across apps)
    and is not disposed here.
    """

    def __init__(
        self, settings: Settings, engine: AsyncEngine | None, sessions: SessionCache
    ) -> None:
        self._settings = settings
        self._given = engine
        self._engine = engine
        self._store = self._make_store(engine) if engine is not None else None
        self._limiter: RateLimiter | None = None
        self._sessions = sessions
        self._hub: Hub | None = None

    def _make_store(self, engine: AsyncEngine) -> ChangeStore:
        return open_store(engine, max_skew_ms=self._settings.max_clock_skew_ms)

    @asynccontextmanager
    async def __call__(self, _app: Litestar) -> AsyncIterator[None]:
        self._limiter = open_rate_limiter(self._settings.redis_url)
        try:
            if self._given is not None:
                assert self._store is not None
                try:
                    async with self._relay():
                        yield
                finally:
                    await self._store.close()
                return
            self._engine = create_engine(self._settings)
            self._store = self._make_store(self._engine)
            try:
                async with self._relay():
                    yield
            finally:
                await self._store.close()
                await dispose_engine(self._engine)
                self._engine = None
                self._store = None
        finally:
            await self._limiter.close()
            self._limiter = None

    @asynccontextmanager
    async def _relay(self) -> AsyncIterator[None]:
        assert self._engine is not None and self._store is not None
        settings = self._settings
        bus = open_bus(
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            channel=relay_channel(settings),
        )
        metrics = RelayMetrics()
        if isinstance(self._store, PostgresChangeStore):
            metrics.sync.watch_push_writes(self._store.pushes_by_path)
        self._hub = Hub(
            engine=self._engine,
            store=self._store,
            bus=bus,
            sessions=self._sessions,
            metrics=metrics,
            heartbeat_s=settings.relay_heartbeat_s,
        )
        await self._hub.start()
        try:
            yield
        finally:
            await self._hub.close()
            self._hub = None

    async def provide_hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the relay exists only while the app is running")
        return self._hub

    async def provide(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the database engine exists only while the app is running")
        return self._engine

    async def provide_store(self) -> ChangeStore:
        if self._store is None:
            raise RuntimeError("the change store exists only while the app is running")
        return self._store

    def limiter(self) -> RateLimiter:
        if self._limiter is None:
            raise RuntimeError("the rate limiter exists only while the app is running")
        return self._limiter

    async def provide_limiter(self) -> RateLimiter:
        return self.limiter()


def _freeze_startup_objects() -> None:
    # Everything allocated at start-up lives for the whole process; moving it out of the
    # collector's generations keeps full collections (and their pauses) short.
    gc.freeze()


def relay_channel(settings: Settings) -> str:
    """The bus channel of one deployment: instances on one database (and schema) share it."""
    schema = re.sub(r"[^a-z0-9_]", "_", (settings.database_schema or "").lower())
    # Bus channel names are PostgreSQL identifiers: at most 63 bytes.
    return ("touchline" + (f"_{schema}" if schema else ""))[:63]


def create_app(settings: Settings, *, engine: AsyncEngine | None = None) -> Litestar:
    """Build the Litestar app; handlers receive `settings` and `engine` by injection."""
    sessions = SessionCache()
    engine_lifespan = _EngineLifespan(settings, engine, sessions)

    async def provide_settings() -> Settings:
        return settings

    async def provide_principal(request: Request[Principal, Any, Any]) -> Principal:
        return principal_of(request)

    async def provide_records(
        engine: NamedDependency[AsyncEngine], store: NamedDependency[ChangeStore]
    ) -> Records:
        return Records(engine=engine, store=store)

    route_handlers: list[ControllerRouterHandler] = [
        *health.ROUTES,
        api_docs.assets_router(),
        auth_routes.router,
        club_routes.router,
        share_routes.router,
        sync_routes.router,
        team_routes.router,
        match_routes.router,
        event_routes.router,
        *live_routes.ROUTES,
        viewer_pages.router,
    ]
    jwt_auth = build_jwt_auth(settings, engine_lifespan.provide, sessions)

    async def provide_sessions() -> SessionCache:
        return sessions

    rate_limit = RateLimitMiddleware(
        engine_lifespan.limiter, limit_per_minute=settings.rate_limit_per_minute
    )

    def limit_before_auth(config: AppConfig) -> AppConfig:
        # Outermost of the app's middleware: a flood of forged tokens is limited before any
        # token is checked against the database.
        config.middleware.insert(0, rate_limit)
        # Innermost: tags the handler's own bytes, before compression.
        config.middleware.append(ETagMiddleware())
        return config

    app = Litestar(
        route_handlers=route_handlers,
        dependencies={
            "settings": Provide(provide_settings, use_cache=True),
            "engine": Provide(engine_lifespan.provide),
            "store": Provide(engine_lifespan.provide_store),
            "rate_limiter": Provide(engine_lifespan.provide_limiter),
            "principal": Provide(provide_principal),
            "records": Provide(provide_records),
            "sessions": Provide(provide_sessions, use_cache=True),
            "hub": Provide(engine_lifespan.provide_hub),
        },
        on_app_init=[jwt_auth.on_app_init, limit_before_auth],
        lifespan=[engine_lifespan],
        # Tests build many short-lived apps; freezing would pin each one's garbage.
        on_startup=[] if settings.environment == "test" else [_freeze_startup_objects],
        exception_handlers=exception_handlers(),
        # Bodies beyond the cap answer 413 before they are read in full (PROTOCOL.md §8).
        request_max_body_size=settings.max_body_bytes,
        # A pull page of a 150-event match is 64 KB as JSON and 9 KB gzipped: worth the
        # fraction of a millisecond on a phone's data plan. Small answers go as they are.
        compression_config=CompressionConfig(
            backend="brotli",
            minimum_size=1024,
            brotli_quality=5,
            brotli_gzip_fallback=True,
            gzip_compress_level=6,
            # A stream of live events must leave as each one happens, not when a block fills.
            exclude_opt_key="no_buffering",
        ),
        cors_config=(
            CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None
        ),
        openapi_config=OpenAPIConfig(
            title="Touchline sync server",
            version=__version__,
            path="/schema",
            render_plugins=[api_docs.swagger_plugin()],
        ),
        # Logging is the process's business (see sync_server.cli), not the app's: an app
        # that reconfigured the root logger would also clobber pytest's log capture.
        logging_config=None,
        debug=False,
    )
    return harden_app(app, hsts=settings.environment == "production")


def app_from_env() -> Litestar:
    """Factory for `uvicorn sync_server.app:app_from_env --factory`."""
    settings = Settings.from_env(os.environ)
    configure_logging(logging.INFO, settings.log_format)
    app = create_app(settings)
    tune_collector()
    return app
