from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import exc as sql_errors
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server import __version__
from sync_server.app import create_app
from sync_server.migrate import newest_revision
from sync_server.problems import PROBLEM_MEDIA_TYPE, database_unavailable
from sync_server.settings import Settings

pytestmark = pytest.mark.anyio

SECRET = "test-secret-key-that-is-long-enough-for-hs256"


async def test_health(settings: Settings, migrated_engine: AsyncEngine) -> None:
    async with AsyncTestClient(create_app(settings, engine=migrated_engine)) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_database_answers(
    settings: Settings, migrated_engine: AsyncEngine
) -> None:
    async with AsyncTestClient(create_app(settings, engine=migrated_engine)) as client:
        response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "revision": newest_revision()}


async def test_not_ready_on_a_database_that_was_not_migrated(tmp_path: Path) -> None:
    # The database answers, but serving on an old schema would answer 500s.
    settings = Settings(
        secret_key=SECRET,
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
    )
    async with AsyncTestClient(create_app(settings)) as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    problem = response.json()
    assert problem["type"] == "/problems/database-not-migrated"
    assert "sync-server migrate" in problem["detail"]


async def test_app_creates_and_disposes_its_own_engine(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        response = await client.get("/ready")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "unreachable",
    [
        pytest.param("postgresql+asyncpg://postgres@127.0.0.1:1/test", id="postgres-port-1"),
        pytest.param("sqlite-under-a-file", id="sqlite-unwritable-path"),
    ],
)
async def test_not_ready_when_database_is_unreachable(tmp_path: Path, unreachable: str) -> None:
    if unreachable == "sqlite-under-a-file":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the database directory should be")
        settings = Settings(
            secret_key=SECRET,
            environment="test",
            database_url=f"sqlite+aiosqlite:///{blocker / 'data' / 'touchline.db'}",
        )
    else:
        settings = Settings(
            secret_key=SECRET,
            environment="test",
            database_url=unreachable,
            database_schema="grassroots",
        )

    async with AsyncTestClient(create_app(settings)) as client:
        health = await client.get("/health")
        response = await client.get("/ready")

    assert health.status_code == 200
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert problem["type"] == "/problems/database-unavailable"
    assert problem["status"] == 503
    assert "127.0.0.1" not in problem["detail"]  # no connection details leak


async def test_openapi_schema(settings: Settings, migrated_engine: AsyncEngine) -> None:
    async with AsyncTestClient(create_app(settings, engine=migrated_engine)) as client:
        response = await client.get("/schema/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["info"] == {"title": "Touchline sync server", "version": __version__}
    assert {"/health", "/ready"} <= set(schema["paths"])


async def test_cors_only_when_configured(settings: Settings, migrated_engine: AsyncEngine) -> None:
    origin = "https://coach.example"
    with_cors = Settings(
        secret_key=SECRET,
        environment="test",
        database_url=settings.database_url,
        database_schema=settings.database_schema,
        cors_origins=(origin,),
    )
    preflight = {"origin": origin, "access-control-request-method": "GET"}

    async with AsyncTestClient(create_app(with_cors, engine=migrated_engine)) as client:
        allowed = await client.options("/health", headers=preflight)
    async with AsyncTestClient(create_app(settings, engine=migrated_engine)) as client:
        plain = await client.get("/health", headers={"origin": origin})

    assert allowed.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in plain.headers


async def test_schema_page_loads_its_assets_from_the_server(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        page = await client.get("/schema")
        assert page.status_code == 200
        assert "/schema-assets/swagger-ui-bundle.js" in page.text
        assert "https://" not in page.text  # nothing from a CDN
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
            assert (await client.get(f"/schema-assets/{asset}")).status_code == 200


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        ("57P03", True),  # the database system is starting up / shutting down
        ("57P01", True),  # terminating connection due to administrator command
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("23505", False),  # a unique violation: a bug here, not an outage
        ("42P01", False),  # undefined table
    ],
)
def test_database_errors_that_mean_retry_later_are_told_apart(
    sqlstate: str, unavailable: bool
) -> None:
    error = sql_errors.DBAPIError("SELECT 1", None, _DriverError(sqlstate))
    assert database_unavailable(error) is unavailable
    assert database_unavailable(sql_errors.OperationalError("SELECT 1", None, Exception()))
    assert database_unavailable(ConnectionRefusedError())
    invalidated = sql_errors.DBAPIError(
        "SELECT 1", None, _DriverError("XX000"), connection_invalidated=True
    )
    assert database_unavailable(invalidated)
