from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server.db import create_engine
from sync_server.migrate import head_revision, upgrade_to_head_async
from sync_server.settings import Settings
from sync_server.tables import metadata

pytestmark = pytest.mark.anyio

EXPECTED_TABLES = {*metadata.tables, "alembic_version"}


@pytest.fixture
async def fresh_settings(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings for an empty database of the same kind (PostgreSQL: a new, dropped schema)."""
    if settings.is_sqlite:
        yield dataclasses.replace(
            settings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        )
        return
    fresh = dataclasses.replace(settings, database_schema=f"{settings.database_schema}_fresh")
    try:
        yield fresh
    finally:
        engine = create_engine(settings)
        async with engine.begin() as connection:
            await connection.execute(
                text(f'DROP SCHEMA IF EXISTS "{fresh.database_schema}" CASCADE')
            )
        await engine.dispose()


def _table_names(connection: Connection, schema: str | None) -> set[str]:
    return set(inspect(connection).get_table_names(schema=schema))


def _revision(connection: Connection, schema: str | None) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return context.get_current_revision()


async def test_upgrade_creates_every_table_and_is_idempotent(fresh_settings: Settings) -> None:
    await upgrade_to_head_async(fresh_settings)
    await upgrade_to_head_async(fresh_settings)  # already at head: must be a no-op

    engine = create_engine(fresh_settings)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(_table_names, fresh_settings.database_schema)
            revision = await connection.run_sync(_revision, fresh_settings.database_schema)
            if not fresh_settings.is_sqlite:
                public = await connection.run_sync(_table_names, "public")
                assert public.isdisjoint(metadata.tables), "tables leaked into public"
    finally:
        await engine.dispose()

    assert tables == EXPECTED_TABLES
    assert revision == head_revision(fresh_settings)


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences: list[Any] = compare_metadata(context, metadata)
    return differences


async def test_migration_matches_table_definitions(
    migrated_engine: AsyncEngine, settings: Settings
) -> None:
    async with migrated_engine.connect() as connection:
        if not settings.is_sqlite:
            # Reflection looks at the default schema; point it at the migrated one.
            await connection.execute(text(f'SET search_path TO "{settings.database_schema}"'))
        differences = await connection.run_sync(_schema_differences)
        await connection.rollback()

    assert differences == []
