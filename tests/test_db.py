"""Engine settings that the store's correctness or speed depends on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import anyio
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server import tables
from sync_server.db import create_engine, reading
from sync_server.settings import Settings

pytestmark = pytest.mark.anyio


async def test_engine_connects_with_the_documented_session_settings(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            if settings.is_sqlite:
                assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
                assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
            else:
                # A generic plan prepared on an empty table scanned a club's whole history.
                mode = (await conn.execute(text("SHOW plan_cache_mode"))).scalar()
                assert mode == "force_custom_plan"
    finally:
        await engine.dispose()


async def test_reads_do_not_queue_behind_a_writer(clean_engine: AsyncEngine) -> None:
    # Every request's token check is a read: on SQLite it must not wait for the write lock
    # a push holds (before `reading`, it waited up to busy_timeout, seconds under load).
    async with clean_engine.begin() as writer:
        await writer.execute(
            tables.clubs.insert().values(id=uuid.uuid4(), log_seq=0, created_at=datetime.now(UTC))
        )
        with anyio.fail_after(2):
            async with reading(clean_engine) as reader:
                count = (
                    await reader.execute(select(func.count()).select_from(tables.clubs))
                ).scalar_one()
        assert count == 0  # the writer has not committed
