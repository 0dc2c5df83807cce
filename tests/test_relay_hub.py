"""The relay hub's ticker: it beats, ends expired links and looks at this instance's own
commit notices, once a second; nothing one notice does may stop it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.relay import Committed
from sync_server.auth import SessionCache
from sync_server.relay.bus import MemoryBus
from sync_server.relay.hub import Hub
from sync_server.relay.metrics import RelayMetrics
from sync_server.store_pg import open_store

pytestmark = pytest.mark.anyio


async def test_a_notice_that_fails_does_not_stop_the_ticker(
    clean_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = Hub(
        engine=clean_engine,
        store=open_store(clean_engine, max_skew_ms=60_000),
        bus=MemoryBus(f"ticker_{uuid.uuid4().hex[:8]}"),
        sessions=SessionCache(),
        metrics=RelayMetrics(),
    )
    looked_at: asyncio.Queue[int] = asyncio.Queue()

    def committed(notice: Committed) -> None:
        looked_at.put_nowait(notice.seq)
        if notice.seq == 1:
            raise RuntimeError("a notice the hub cannot handle")

    async def next_looked_at() -> int:
        return await asyncio.wait_for(looked_at.get(), timeout=5)

    monkeypatch.setattr(hub, "_committed", committed)
    await hub.start()
    try:
        club = uuid.uuid4()
        hub._own_notices[-1] += [Committed(club, 1, None), Committed(club, 2, None)]
        assert [await next_looked_at(), await next_looked_at()] == [1, 2]
        # The next notice arrives a tick later: the ticker must still be there to look at it.
        hub._own_notices[-1].append(Committed(club, 3, None))
        assert await next_looked_at() == 3
    finally:
        await hub.close()
