"""What an operator watches besides the relay: sync traffic, conflicts, the log, the pool.

Counters live in the app's one registry (the relay's, ``RelayMetrics.registry``), so
``/metrics`` renders everything in one answer. The change log's size and the database pool
are read when ``/metrics`` is scraped, not kept up to date on every request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server import tables
from sync_server.store import Announcement

__all__ = ["SyncMetrics"]

logger = logging.getLogger(__name__)

# A scrape must answer even when the database hangs; the gauges then keep their last value.
SCRAPE_TIMEOUT_S: Final = 2.0


class SyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pushes = Counter(
            "touchline_sync_pushes",
            "Change sets pushed, by transport (http, ws) and outcome (applied: some changes "
            "were new; duplicate: all had been stored; refused: a 4xx answer).",
            ["transport", "outcome"],
            registry=registry,
        )
        self.pulls = Counter("touchline_sync_pulls", "Pull requests answered.", registry=registry)
        self.changes_pulled = Counter(
            "touchline_sync_changes_pulled",
            "Changes delivered by pulls.",
            registry=registry,
        )
        self.changes_committed = Counter(
            "touchline_changes_committed",
            "Changes added to the change log (pushes, REST writes, reinstated values).",
            registry=registry,
        )
        self.conflicts = Counter(
            "touchline_conflicts",
            "Conflicts recorded in the ledger (concurrent writes to one field).",
            registry=registry,
        )
        self.log_entries = Gauge(
            "touchline_change_log_entries",
            "Entries in the change log, all clubs together (read at scrape time).",
            registry=registry,
        )
        self.pool = Gauge(
            "touchline_db_pool_connections",
            "Database connections of this instance's pool: in use, idle, and the pool size.",
            ["state"],
            registry=registry,
        )

        self._registry = registry

    def watch_push_writes(self, writes: Mapping[str, int]) -> None:
        """Report the store's push writes by path (``PostgresChangeStore.pushes_by_path``)."""
        self._registry.register(_PushWrites(writes))

    def committed(self, commit: Announcement) -> None:
        """Count one commit (the store's announcement of it)."""
        self.changes_committed.inc(commit.seq - commit.after)
        if commit.conflicts:
            self.conflicts.inc(len(commit.conflicts))

    async def sample(self, engine: AsyncEngine) -> None:
        """Read the gauges that are only worth reading when someone looks."""
        pool = engine.pool
        for state, reading in (("in_use", "checkedout"), ("idle", "checkedin"), ("size", "size")):
            read = getattr(pool, reading, None)
            if callable(read):
                self.pool.labels(state).set(read())
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_S), engine.connect() as conn:
                # Each club's log_seq is its last server sequence: their sum counts the log
                # without scanning it (compaction would make it an upper bound).
                total = await conn.scalar(
                    select(func.coalesce(func.sum(tables.clubs.c.log_seq), 0))
                )
        except (TimeoutError, SQLAlchemyError, OSError) as error:
            logger.warning("metrics: could not read the change log size: %s", error)
            return
        self.log_entries.set(int(total or 0))


class _PushWrites(Collector):
    """How the PostgreSQL store wrote its pushes, read from its own counts when scraped."""

    def __init__(self, writes: Mapping[str, int]) -> None:
        self._writes = writes

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "touchline_sync_push_writes",
            "Pushes written by the PostgreSQL store, by path: head (in one round trip, from "
            "what this instance knew of the club), locked (read and written under the club's "
            "lock), stale (a head another writer had moved on: rewritten under the lock).",
            labels=["path"],
        )
        for path in ("head", "locked", "stale"):
            family.add_metric([path], self._writes.get(path, 0))
        yield family
