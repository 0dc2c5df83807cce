"""Engine settings that the store's correctness or speed depends on."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from sync_server.db import create_engine
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
