"""Run the Alembic migrations in `sync_server/migrations` without an alembic.ini.

The Alembic `Config` is built in code and carries the `Settings` to env.py, so the CLI, the
tests and the container all migrate with the same configuration as the server itself.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server.db import reading
from sync_server.settings import Settings

__all__ = [
    "alembic_config",
    "database_revision",
    "head_revision",
    "newest_revision",
    "upgrade_to_head",
    "upgrade_to_head_async",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# Alembic's own bookkeeping table, described here so the engine's schema translation places
# it in the configured schema as it does every other table.
_VERSIONS: Final = Table("alembic_version", MetaData(), Column("version_num", String(32)))


def alembic_config(settings: Settings) -> Config:
    """An Alembic config pointing at our migrations, carrying `settings` for env.py."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def upgrade_to_head(settings: Settings) -> None:
    """Upgrade the database to the newest revision; a no-op when it is already there.

    Call from synchronous code only: env.py runs its own event loop.
    """
    command.upgrade(alembic_config(settings), "head")


async def upgrade_to_head_async(settings: Settings) -> None:
    """`upgrade_to_head` for callers already inside an event loop (tests, app start-up)."""
    # env.py needs an event loop of its own, which a worker thread can give it.
    await asyncio.to_thread(upgrade_to_head, settings)


def head_revision(settings: Settings) -> str:
    """The newest revision id among the migration scripts."""
    del settings  # the scripts are the package's own, whatever the database
    return newest_revision()


@functools.cache
def newest_revision() -> str:
    """The newest revision id among the migration scripts (read once per process)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


async def database_revision(engine: AsyncEngine) -> str | None:
    """The revision the database was migrated to; None before the first migration."""
    async with reading(engine) as conn:
        if not await conn.run_sync(_has_versions):
            return None
        return await conn.scalar(select(_VERSIONS.c.version_num))


def _has_versions(connection: Connection) -> bool:
    # The inspector does not apply the schema translation: name the schema it maps to.
    translate = connection.get_execution_options().get("schema_translate_map") or {}
    return inspect(connection).has_table(_VERSIONS.name, schema=translate.get(None))
