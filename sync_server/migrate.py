"""Run the Alembic migrations in `sync_server/migrations` without an alembic.ini.

The Alembic `Config` is built in code and carries the `Settings` to env.py, so the CLI, the
tests and the container all migrate with the same configuration as the server itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from sync_server.settings import Settings

__all__ = ["alembic_config", "head_revision", "upgrade_to_head", "upgrade_to_head_async"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"


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
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head
