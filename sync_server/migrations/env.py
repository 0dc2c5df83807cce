"""Alembic environment: run migrations online over the server's own async engine.

The `Settings` come from `config.attributes["settings"]` (set by `sync_server.migrate`), so
migrations use exactly the engine configuration the server uses: SQLite pragmas and
`BEGIN IMMEDIATE`, or PostgreSQL with its schema translate map.
"""

from __future__ import annotations

import asyncio
from typing import Final

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from sync_server.db import create_engine
from sync_server.settings import Settings
from sync_server.tables import metadata

# Serialises concurrent `sync-server migrate` runs from several instances on one PostgreSQL
# database (an arbitrary constant shared by every Touchline instance).
MIGRATION_LOCK_KEY: Final = 0x70C4112E


def _settings() -> Settings:
    settings = context.config.attributes.get("settings")
    if not isinstance(settings, Settings):
        raise RuntimeError(
            "migrations need Settings in config.attributes; run them with `sync-server migrate`"
        )
    return settings


def _run_migrations(connection: Connection, schema: str | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_postgres(connection: AsyncConnection, schema: str) -> None:
    quoted = connection.dialect.identifier_preparer.quote_schema(schema)
    await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    await connection.commit()
    try:
        await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
        await connection.commit()
        await connection.run_sync(_run_migrations, schema)
        await connection.commit()
    finally:
        await connection.execute(
            text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
        await connection.commit()


async def _run_async_migrations(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            if settings.is_sqlite:
                await connection.run_sync(_run_migrations, None)
                await connection.commit()
            elif settings.database_schema is None:
                raise RuntimeError("PostgreSQL migrations need Settings.database_schema")
            else:
                await _run_on_postgres(connection, settings.database_schema)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
asyncio.run(_run_async_migrations(_settings()))
