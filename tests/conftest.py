"""Shared test configuration: Hypothesis profiles, the anyio backend, databases and Redis.

Database tests run against SQLite always and PostgreSQL whenever it is reachable at
TEST_DATABASE_URL. An unreachable PostgreSQL skips those tests loudly, except under CI=true,
where it fails them: CI must never go green without having run them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server.app import create_app
from sync_server.db import create_engine
from sync_server.migrate import upgrade_to_head_async
from sync_server.settings import Settings
from sync_server.tables import metadata

hypothesis_settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", max_examples=100, deadline=None, print_blob=True)
hypothesis_settings.register_profile("long", max_examples=100_000, deadline=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

IN_CI: Final = os.environ.get("CI", "").strip().lower() == "true"
TEST_DATABASE_URL: Final = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TEST_REDIS_URL: Final = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_START: Final = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START: Final = (
    'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
)
# One schema per test session, so parallel or aborted sessions never see each other's rows.
SESSION_SCHEMA: Final = f"t_{secrets.token_hex(6)}"
TEST_SECRET_KEY: Final = "test-secret-key-that-is-long-enough-for-hs256"
PROBE_TIMEOUT_S: Final = 3.0


@dataclass
class _ServiceProbe:
    """Whether an external service answered, probed once per session."""

    name: str
    url: str
    start_command: str
    problem: str | None = None
    probed: bool = False

    @property
    def reachable(self) -> bool:
        return self.probed and self.problem is None

    def unreachable_message(self) -> str:
        return (
            f"{self.name} UNREACHABLE at {self.url} ({self.problem}); its tests did not run. "
            f"Start it with: {self.start_command}"
        )

    def require(self) -> None:
        """Skip (or under CI=true, fail) the requesting test when the service is down."""
        if self.problem is None:
            return
        if IN_CI:
            pytest.fail(f"CI=true: {self.unreachable_message()}", pytrace=False)
        pytest.skip(self.unreachable_message())


def _postgres_dsn(url: str) -> str:
    """The SQLAlchemy URL as a libpq-style DSN that asyncpg accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _probe_postgres(probe: _ServiceProbe) -> None:
    async def connect() -> None:
        connection = await asyncpg.connect(_postgres_dsn(probe.url), timeout=PROBE_TIMEOUT_S)
        await connection.close()

    try:
        # Runs before any test, so no event loop exists yet in this thread.
        asyncio.run(connect())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        probe.problem = f"{type(exc).__name__}: {exc}"
    probe.probed = True


def _probe_redis(probe: _ServiceProbe) -> None:
    # A raw RESP exchange, so the tests need no Redis client library to know it is there.
    parts = urlsplit(probe.url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=PROBE_TIMEOUT_S
        ) as sock:
            if parts.password:
                password = unquote(parts.password).encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password))
                if not sock.recv(64).startswith(b"+OK"):
                    raise ConnectionError("AUTH refused")
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
            if not reply.startswith(b"+PONG"):
                raise ConnectionError(f"unexpected reply to PING: {reply!r}")
    except OSError as exc:
        probe.problem = f"{type(exc).__name__}: {exc}"
    probe.probed = True


POSTGRES = _ServiceProbe("PostgreSQL", TEST_DATABASE_URL, POSTGRES_START)
REDIS = _ServiceProbe("Redis", TEST_REDIS_URL, REDIS_START)


def pytest_sessionstart(session: pytest.Session) -> None:
    _probe_postgres(POSTGRES)
    _probe_redis(REDIS)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for probe in (POSTGRES, REDIS):
        if probe.reachable:
            lines.append(f"{probe.name}: {probe.url} (reachable)")
        else:
            lines.append(f"!!! {probe.unreachable_message()}")
    lines.append(f"PostgreSQL test schema: {SESSION_SCHEMA}")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for probe in (POSTGRES, REDIS):
        if probe.probed and probe.problem is not None:
            terminalreporter.write_sep("!", probe.unreachable_message(), red=True, bold=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not POSTGRES.reachable:
        return

    async def drop_session_schema() -> None:
        connection = await asyncpg.connect(_postgres_dsn(POSTGRES.url), timeout=PROBE_TIMEOUT_S)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{SESSION_SCHEMA}" CASCADE')
        finally:
            await connection.close()

    # All fixtures (and the anyio runner) are finished by now, so a fresh loop is safe.
    asyncio.run(drop_session_schema())


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session scope lets session-scoped async fixtures (the migrated engine) share one loop.
    return "asyncio"


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL: a fresh SQLite file, or TEST_DATABASE_URL for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'touchline.db'}"
    POSTGRES.require()
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """Test-environment settings for `database_url` (PostgreSQL: this session's schema)."""
    env = {"DATABASE_URL": database_url, "ENVIRONMENT": "test", "SECRET_KEY": TEST_SECRET_KEY}
    if not database_url.startswith("sqlite"):
        env["DATABASE_SCHEMA"] = SESSION_SCHEMA
    return Settings.from_env(env)


@pytest.fixture(scope="session")
async def migrated_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated to head (once per database per session).

    Unpooled: Litestar's AsyncTestClient runs the app in a portal thread with its own event
    loop, and a pooled driver connection must never move between loops. So passing this
    engine to `create_app(settings, engine=...)` under AsyncTestClient is safe.
    """
    await upgrade_to_head_async(settings)
    engine = create_engine(settings, pooled=False)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def clean_engine(migrated_engine: AsyncEngine) -> AsyncEngine:
    """The migrated engine with every table emptied, so each test starts from nothing."""
    async with migrated_engine.begin() as connection:
        # Children before parents, so foreign keys never block a delete.
        for table in reversed(metadata.sorted_tables):
            await connection.execute(table.delete())
    return migrated_engine


@pytest.fixture
async def client(
    settings: Settings, clean_engine: AsyncEngine
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app with default settings on an emptied database, behind Litestar's test client."""
    async with AsyncTestClient(create_app(settings, engine=clean_engine)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def redis_url() -> str:
    """TEST_REDIS_URL once a raw PING has been answered."""
    REDIS.require()
    return TEST_REDIS_URL
