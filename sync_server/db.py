"""Async SQLAlchemy engines for the two supported databases.

SQLite is the embedded default for one club on a laptop; PostgreSQL runs a league. Both are
reached through the same `AsyncEngine`, and tables are defined without a schema so that one
`sync_server.tables.metadata` serves both (PostgreSQL maps them into its schema).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from sync_server.settings import Settings

__all__ = ["check_database", "create_engine", "dispose_engine"]

logger = logging.getLogger(__name__)

# Applied to every new SQLite connection. busy_timeout comes first so that switching to WAL
# waits for a competing writer instead of failing.
SQLITE_PRAGMAS: Final = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)

# Enough connections for the concurrent pushes of one worker; overflow connections were
# opened and closed again within seconds under load.
POSTGRES_POOL_SIZE: Final = 16
POSTGRES_MAX_OVERFLOW: Final = 4
# asyncpg prepares each statement once per connection, and PostgreSQL soon swaps in a generic
# plan chosen for whatever the tables held then. Prepared while `events` was empty, the
# record-state lookup kept a plan that walked the club's whole history on every push (13 ms
# per push, under the club lock). Custom plans cost a little planning per statement instead.
POSTGRES_SERVER_SETTINGS: Final = {"plan_cache_mode": "force_custom_plan"}


_READ_ONLY_OPTION: Final = "touchline_read_only"
_READ_ONLY: Final = {_READ_ONLY_OPTION: True}


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """Create the engine for `settings.database_url`; no connection is opened yet.

    `pooled=False` opens a connection per checkout and closes it at checkin. Pooled driver
    connections belong to the event loop that opened them, so an engine shared between
    loops (a test's loop and a test client's portal thread) must not pool.
    """
    pool_options: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if settings.is_sqlite:
        return _create_sqlite_engine(settings.database_url, pool_options)
    if pooled:
        pool_options.update(
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=POSTGRES_MAX_OVERFLOW,
            pool_pre_ping=True,
        )
    return create_async_engine(
        settings.database_url,
        # Tables carry no schema; every statement is rendered into the configured one.
        execution_options={"schema_translate_map": {None: settings.database_schema}},
        connect_args={"server_settings": dict(POSTGRES_SERVER_SETTINGS)},
        **pool_options,
    )


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: ``async with reading(engine) as conn``.

    On SQLite its transaction begins DEFERRED, so it reads the last committed state beside a
    writer (WAL) instead of queueing for the write lock as every other transaction here does.
    Never write through it: a deferred transaction that upgrades to writing can deadlock.
    """
    # The option is set on the connection, before its first statement begins the
    # transaction; a derived engine per call cost ~25 µs on every request's token check.
    async with engine.connect() as conn:
        await conn.execution_options(**_READ_ONLY)
        yield conn


DISPOSE_TIMEOUT_S: Final = 3.0
"""How long closing the pool's connections may take at shutdown before they are dropped."""


async def dispose_engine(engine: AsyncEngine, timeout_s: float = DISPOSE_TIMEOUT_S) -> None:
    """Close the engine's pooled connections, politely but within ``timeout_s``.

    Closing a connection sends a ROLLBACK and waits for the answer: a database that stopped
    answering without closing the socket (a hung host, a partition dropping packets) would
    hold a shutting-down server forever, until an orchestrator killed it. After the time
    limit the pool is dropped and the process's exit closes the sockets."""
    if not await closed_in_time(engine.dispose(), "its connections", timeout_s):
        await engine.dispose(close=False)


async def closed_in_time(
    closing: Awaitable[None], what: str, timeout_s: float = DISPOSE_TIMEOUT_S
) -> bool:
    """Await a polite close of database connections; False (logged) when the database did
    not answer within ``timeout_s``, and the caller drops them instead."""
    try:
        async with asyncio.timeout(timeout_s):
            await closing
    except TimeoutError:
        logger.warning(
            "the database did not answer while %s were closed (%.0f s); dropping them",
            what,
            timeout_s,
        )
        return False
    return True


async def check_database(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query (used by the readiness probe)."""
    async with reading(engine) as connection:
        await connection.execute(text("SELECT 1"))


def _create_sqlite_engine(database_url: str, pool_options: dict[str, Any]) -> AsyncEngine:
    database = make_url(database_url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        _ensure_parent_directory(Path(database))

    engine = create_async_engine(database_url, **pool_options)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the driver (which would BEGIN DEFERRED lazily)
        # so that the "begin" hook below decides how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # A DEFERRED transaction that reads and then writes must upgrade its lock; two of them
        # doing that at once deadlock and one fails with SQLITE_BUSY regardless of
        # busy_timeout. Taking the write lock up front makes writers queue instead. Reads
        # (see `reading`) skip the queue: every request's token check is one, and queueing
        # it behind pushes put seconds on the tail of both.
        if connection.get_execution_options().get(_READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _ensure_parent_directory(database: Path) -> None:
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # Not fatal here: connecting will fail with SQLite's own error, which the readiness
        # probe reports, and the server can still answer /health.
        logger.warning("cannot create directory for SQLite database %s: %s", database, exc)
