"""The change store's PostgreSQL fast path: the push's statements straight through asyncpg.

SQLAlchemy's execution machinery cost about 130 µs for each small statement of a push and
processed every parameter of every batched row in Python; raw asyncpg takes about 30 µs and
encodes arrays in C. Changes the server records inside a caller's SQLAlchemy transaction run
on the asyncpg connection underneath it; pushes run on a pool of their own.

A push under the club's lock is four round trips: ``BEGIN`` with the lock, one read (the
club's head, the device's cursor and the touched records' states), one write (log entries,
records, conflicts, the club's head and the device's cursor, as one statement of
data-modifying CTEs) and ``COMMIT``. When this instance wrote the club last it already knows
what the read would return (``club_heads``): the push is then planned on that and written in
one round trip, a single statement that takes the club's lock itself and writes only if the
club's head has not moved and the records it took for new are (``_Guard``); otherwise nothing
is written and the push goes the locked way. Server CPU per one-change push over a coach's
socket, nobody watching (``bench/push_cost.py``): about 1,500 µs locked, 1,180 µs from the
head.

Both paths return what the generic store's hooks return, so both pass the same contract
suite.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from protocol import merge
from protocol.hlc import Hlc
from protocol.ingest import (
    CheckedChangeSet,
    DeviceCursor,
    PushRejected,
    RecordKey,
    StoredChange,
    record_keys,
)
from protocol.wire import PushRequest, PushResponse
from sync_server import tables
from sync_server.club_heads import ClubHead, ClubHeads
from sync_server.db import POSTGRES_POOL_SIZE, POSTGRES_SERVER_SETTINGS, closed_in_time
from sync_server.projection import from_ms
from sync_server.store import Announcement, WallClock
from sync_server.store_sql import (
    PlannedWrites,
    SqlChangeStore,
    check_pushed,
    commit_announcement,
    ids_by_table,
    lock_key,
    planned_writes,
    schema_of,
    stored_changes,
)

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S: Final = 10.0

_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class PostgresChangeStore(SqlChangeStore):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_skew_ms: int,
        clock: WallClock | None = None,
        heads: ClubHeads | None = None,
    ) -> None:
        super().__init__(engine, max_skew_ms=max_skew_ms, clock=clock)
        prefix = f'"{schema}".' if (schema := schema_of(engine)) else ""
        self._sql = _Statements(prefix)
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        # An unpooled engine (tests whose app runs on another thread's loop) lends its own
        # connections: pooled driver connections belong to the loop that opened them.
        self._pooled = not isinstance(engine.pool, NullPool)
        self._pool: asyncpg.Pool | None = None
        self._pool_opening = asyncio.Lock()
        self._heads = heads if heads is not None else ClubHeads()
        self.pushes_by_path: collections.Counter[str] = collections.Counter()
        """Pushes written from a known club head in one round trip (``head``) and under the
        club's lock (``locked``); ``stale``: heads that turned out stale at the write."""

    # -- push -------------------------------------------------------------------------------

    async def push(self, club_id: uuid.UUID, request: PushRequest) -> PushResponse:
        checked = check_pushed(request)
        async with self._heads.turn(club_id):
            try:
                head = self._heads.get(club_id)
                if head is not None:
                    pushed = await self._push_on_head(club_id, request, checked, head)
                    if pushed is not None:
                        return pushed
                # The locked path starts the head afresh, keeping what the old one knew only
                # if the club's log is still where that head was.
                return await self._push_locked(club_id, request, checked)
            except BaseException:
                self._heads.forget(club_id)
                raise

    async def _push_on_head(
        self,
        club_id: uuid.UUID,
        request: PushRequest,
        checked: CheckedChangeSet,
        head: ClubHead,
    ) -> PushResponse | None:
        """The push in one round trip, planned on what this instance knows of the club; None
        when that may not be enough (the locked path decides) or turned out stale."""
        known = head.devices.get(request.device_id)
        device = known or DeviceCursor()
        if request.changes[0].seq <= device.last_seq:
            return None  # a re-sent set: its stored copies are read under the lock
        keys = record_keys(request)
        records = {key: state for key in keys if (state := head.records.get(key)) is not None}
        try:
            plan, now_ms = self._plan(checked, device, {}, records, head.club_max)
        except PushRejected:
            return None  # judged on what this instance knows; the database may say otherwise
        writes = planned_writes(club_id, request.device_id, plan, head.seq, now_ms)
        if writes is None:
            return None
        announcement = commit_announcement(
            club_id, head.seq, plan, request.device_id, writes.conflicts
        )
        notice = self._notice(announcement)
        # Records this instance does not know are taken for absent (new records, as a coach's
        # new events are); the write checks that they are.
        absent = ids_by_table(key for key in keys if key not in records)
        guard = _Guard(tuple((name, _many(ids)) for name, ids in absent.items()), known is None)
        statement = self._sql.push_write(_Shape.of(writes), notice is not None, guard)
        arguments = _write_arguments(writes)
        arguments += (lock_key(club_id), head.seq)
        arguments += (ids if _many(ids) else ids[0] for ids in absent.values())
        async with self._connection() as pg:
            written = await pg.fetchval(statement, *arguments, *(notice or ()))
        if written is None:
            self.pushes_by_path["stale"] += 1
            return None
        self.pushes_by_path["head"] += 1
        self._heads.advance(club_id, head, writes, plan.states)
        if notice is not None:
            announcement = dataclasses.replace(announcement, notified=True)
        return self._pushed(announcement, request.device_id, plan, now_ms)

    async def _push_locked(
        self, club_id: uuid.UUID, request: PushRequest, checked: CheckedChangeSet
    ) -> PushResponse:
        """The push in four round trips: what it needs read under the club's lock, then
        written; leaves the club's head known for the next push."""
        keys = record_keys(request)
        by_table = ids_by_table(keys)
        async with self._connection() as pg:
            # Simple-query protocol: both statements in one round trip. The key is our int.
            await pg.execute(f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(club_id)})")
            try:
                row = await pg.fetchrow(
                    self._sql.push_read(tuple(by_table)),
                    club_id,
                    request.device_id,
                    *by_table.values(),
                )
                if row is None:
                    await pg.execute(self._sql.new_club, club_id, from_ms(self._clock.now_ms()))
                    head, club_max, device, records = 0, None, DeviceCursor(), {}
                else:
                    head, club_max, device = _head_and_device(row)
                    records = _states_of(row, tuple(by_table))
                stored = await self._stored_pg(pg, club_id, request, device.last_seq)
                plan, now_ms = self._plan(checked, device, stored, records, club_max)
                writes = planned_writes(club_id, request.device_id, plan, head, now_ms)
                conflicts = writes.conflicts if writes is not None else []
                announcement = commit_announcement(
                    club_id, head, plan, request.device_id, conflicts
                )
                notice = self._notice(announcement) if writes is not None else None
                if writes is not None:
                    await self._write_all(pg, writes, notice)
                await pg.execute("COMMIT")
            except Exception:
                await _roll_back(pg)
                raise
        self.pushes_by_path["locked"] += 1
        read = ClubHead(head, club_max, {request.device_id: device}, records)
        known = self._heads.start(club_id, head, club_max, read)
        if writes is not None:
            self._heads.advance(club_id, known, writes, plan.states)
        if notice is not None:
            announcement = dataclasses.replace(announcement, notified=True)
        return self._pushed(announcement, request.device_id, plan, now_ms)

    def _notice(self, announcement: Announcement) -> tuple[str, str] | None:
        """The relay's notification of this commit, sent by the commit itself (one round
        trip less than the bus's own NOTIFY after it), when the relay asked for that."""
        notice = self.commit_notice
        if notice is None:
            return None
        payload = notice.payload(announcement)
        return None if payload is None else (notice.channel, payload)

    async def _stored_pg(
        self, pg: asyncpg.Connection[Any], club_id: uuid.UUID, request: PushRequest, last: int
    ) -> dict[int, StoredChange]:
        """The stored copies of re-sent changes (only read when the set overlaps the log)."""
        first = request.changes[0].seq
        if first > last:
            return {}
        through = min(last, request.changes[-1].seq)
        rows = await pg.fetch(self._sql.stored, club_id, request.device_id, first, through)
        return stored_changes(rows)

    async def _write_all(
        self,
        pg: asyncpg.Connection[Any],
        writes: PlannedWrites,
        notice: tuple[str, str] | None = None,
    ) -> None:
        """Every write of a push in one statement (one round trip), and the relay's
        notification (channel, payload) if there is one."""
        statement = self._sql.push_write(_Shape.of(writes), notice is not None)
        await pg.execute(statement, *_write_arguments(writes), *(notice or ()))

    async def _apply(self, conn: AsyncConnection, writes: PlannedWrites) -> None:
        # A change the server records moves the club on under this instance's head.
        self._heads.forget(writes.club_id)
        await self._write_all(await _driver(conn), writes)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        if not self._pooled:
            # The engine's own connection: a fresh asyncpg connection of ours would also
            # introspect the schema's types, about 25 ms per push.
            async with self._engine.connect() as conn:
                raw = await conn.get_raw_connection()
                yield raw.driver_connection
            return
        pool = self._pool or await self._open_pool()
        async with pool.acquire() as pg:
            yield pg

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._pool_opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=POSTGRES_POOL_SIZE,
                    timeout=_CONNECT_TIMEOUT_S,
                    server_settings=dict(POSTGRES_SERVER_SETTINGS),
                    # Every push ends its own transaction, and the pool rolls back one left
                    # open; the default reset (UNLISTEN, RESET ALL, ...) was a round trip
                    # per push.
                    reset=_keep_session,
                )
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not await closed_in_time(pool.close(), "the push pool's connections"):
            pool.terminate()

    async def _states(
        self, conn: AsyncConnection, club_id: uuid.UUID, keys: Iterable[RecordKey]
    ) -> dict[RecordKey, merge.RecordState]:
        pg = await _driver(conn)
        states: dict[RecordKey, merge.RecordState] = {}
        for table_name, ids in ids_by_table(keys).items():
            for row in await pg.fetch(self._sql.states(table_name), club_id, ids):
                states[(table_name, row["id"])] = merge.decode_state(row["sync_state"])
        return states


async def _driver(conn: AsyncConnection) -> asyncpg.Connection[Any]:
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection[Any] = raw.driver_connection
    if not driver.is_in_transaction():
        # Outside SQLAlchemy's transaction each statement would commit on its own: a push
        # would no longer be atomic and the club lock would be released at once.
        raise RuntimeError("raw statements must run inside the store's transaction")
    return driver


async def _keep_session(_connection: asyncpg.Connection[Any]) -> None:
    """The push pool's reset: nothing beyond the pool's own rollback of an open transaction."""


async def _roll_back(pg: asyncpg.Connection[Any]) -> None:
    """End a failed push's transaction; a connection that cannot is dropped."""
    if pg.is_closed() or not pg.is_in_transaction():
        return
    try:
        await pg.execute("ROLLBACK")
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
        pg.terminate()


def _head_and_device(row: asyncpg.Record) -> tuple[int, Hlc | None, DeviceCursor]:
    max_hlc, last_hlc = row["max_hlc"], row["last_hlc"]
    device = (
        DeviceCursor()
        if row["last_seq"] is None
        else DeviceCursor(int(row["last_seq"]), Hlc.parse(last_hlc) if last_hlc else None)
    )
    return int(row["log_seq"]), Hlc.parse(max_hlc) if max_hlc else None, device


def _states_of(
    row: asyncpg.Record, table_names: tuple[str, ...]
) -> dict[RecordKey, merge.RecordState]:
    states: dict[RecordKey, merge.RecordState] = {}
    for index, table_name in enumerate(table_names):
        ids, encoded = row[f"ids{index}"], row[f"states{index}"]
        for record_id, state in zip(ids or (), encoded or (), strict=True):
            states[(table_name, record_id)] = merge.decode_state(state)
    return states


@cache
def _column_names(table: Table) -> tuple[str, ...]:
    # Iterating a SQLAlchemy table's columns builds them anew each time.
    return tuple(column.name for column in table.columns)


def _columns(table: Table, rows: list[dict[str, Any]]) -> list[Any]:
    """The arguments of ``_insert`` for these rows: one value per column for a single row,
    one array per column for several."""
    names = _column_names(table)
    if len(rows) == 1:
        (row,) = rows
        return [row[name] for name in names]
    return [[row[name] for row in rows] for name in names]


def _many(rows: list[Any]) -> bool:
    return len(rows) > 1


def _write_arguments(writes: PlannedWrites) -> list[Any]:
    """The arguments of ``_Statements.push_write``, in its order."""
    max_hlc = writes.club_max.encode() if writes.club_max else None
    last_hlc = writes.device.last_hlc.encode() if writes.device.last_hlc else None
    arguments: list[Any] = [
        *_columns(tables.change_log, writes.log_rows),
        writes.club_id,
        writes.log_seq,
        max_hlc,
        writes.club_id,
        writes.device_id,
        writes.device.last_seq,
        last_hlc,
        writes.received,
    ]
    for table_name, rows in writes.record_rows.items():
        arguments += _columns(tables.DOMAIN_TABLES[table_name], rows)
    if writes.conflict_rows:
        arguments += _columns(tables.conflicts, writes.conflict_rows)
    return arguments


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a push's write statement looks like: whether it writes several log entries, the
    record tables it writes (whether several rows of each), and its conflicts (none, one or
    several). A single row binds one value per column: array arguments cost asyncpg a dozen
    ``isinstance`` checks against abstract base classes each."""

    many_entries: bool
    records: tuple[tuple[str, bool], ...]
    conflicts: bool | None

    @classmethod
    def of(cls, writes: PlannedWrites) -> _Shape:
        return cls(
            _many(writes.log_rows),
            tuple((name, _many(rows)) for name, rows in writes.record_rows.items()),
            _many(writes.conflict_rows) if writes.conflict_rows else None,
        )


class _Statements:
    """The SQL of the fast path, qualified with the configured schema."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        p = prefix
        self.new_club = f"INSERT INTO {p}clubs (id, log_seq, created_at) VALUES ($1, 0, $2)"
        self.stored = (
            f"SELECT device_seq, sent_hlc, hlc, table_name, record_id, op, fields"
            f" FROM {p}change_log WHERE club_id = $1 AND device_id = $2"
            " AND device_seq BETWEEN $3 AND $4"
        )

    def states(self, table_name: str) -> str:
        return _states_sql(self._prefix, table_name)

    def push_read(self, table_names: tuple[str, ...]) -> str:
        return _push_read_sql(self._prefix, table_names)

    def push_write(self, shape: _Shape, notify: bool, guard: _Guard | None = None) -> str:
        return _push_write_sql(self._prefix, shape, notify, guard)


@cache
def _states_sql(prefix: str, table_name: str) -> str:
    return (
        f'SELECT id, sync_state FROM {prefix}"{table_name}"'
        " WHERE club_id = $1 AND id = ANY($2::uuid[])"
    )


@cache
def _push_read_sql(prefix: str, table_names: tuple[str, ...]) -> str:
    """The club's head ($1), the device's cursor ($2) and, for each table, the ids and
    states of the records with the ids of the next argument (``ids<i>``, ``states<i>``).
    No row: the club has never been written."""
    columns = ["c.log_seq", "c.max_hlc", "d.last_seq", "d.last_hlc"]
    joins = [f"LEFT JOIN {prefix}devices d ON d.club_id = c.id AND d.id = $2"]
    for index, table_name in enumerate(table_names):
        columns += [f"s{index}.ids AS ids{index}", f"s{index}.states AS states{index}"]
        joins.append(
            "LEFT JOIN LATERAL (SELECT array_agg(id) AS ids, array_agg(sync_state) AS states"
            f' FROM {prefix}"{table_name}" WHERE club_id = $1 AND id = ANY(${index + 3}::uuid[]))'
            f" s{index} ON true"
        )
    return f"SELECT {', '.join(columns)} FROM {prefix}clubs c {' '.join(joins)} WHERE c.id = $1"


def _rows(table: Table, start: int, many: bool) -> tuple[str, int]:
    """The rows to insert, from one argument per column from ``$start``: a ``SELECT`` of the
    values of one row, or of the arrays of several unnested."""
    arguments = [
        f"${position}::{column.type.compile(dialect=_PG_DIALECT)}{'[]' if many else ''}"
        for position, column in enumerate(table.columns, start=start)
    ]
    rows = f"* FROM unnest({', '.join(arguments)})" if many else ", ".join(arguments)
    return f"SELECT {rows}", start + len(table.columns)


def _insert(
    prefix: str, table: Table, start: int, many: bool, *, upsert: bool = False, where: str = ""
) -> tuple[str, int]:
    names = ", ".join(f'"{column.name}"' for column in table.columns)
    rows, after = _rows(table, start, many)
    sql = f'INSERT INTO {prefix}"{table.name}" ({names}) {rows}{where}'
    if upsert:
        keys = [column.name for column in table.primary_key.columns]
        updates = ", ".join(
            f'"{column.name}" = EXCLUDED."{column.name}"'
            for column in table.columns
            if column.name not in keys
        )
        conflict = ", ".join(f'"{key}"' for key in keys)
        sql += f" ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    return sql, after


@dataclass(frozen=True, slots=True)
class _Guard:
    """What a push written from a club head assumed: the tables (in argument order) where it
    took records for absent (whether several of each), and whether it took the device for
    new."""

    absent: tuple[tuple[str, bool], ...]
    new_device: bool


@cache
def _push_write_sql(prefix: str, shape: _Shape, notify: bool, guard: _Guard | None = None) -> str:
    """Every write of a push as one statement; its arguments come from ``_write_arguments``,
    then, with a guard, the club's lock key, the head the push was planned on and the ids of
    each table taken for absent, then the notification's channel and payload.

    The data-modifying CTEs touch different tables (each record once), so running them on
    one snapshot changes nothing; PostgreSQL runs every one of them to completion.

    With a guard the statement runs on its own, as its own transaction: it takes the club's
    lock (first, as every other writer of the club does), and it writes only if the club's
    head is still the one the push was planned on and what was taken for absent still is.
    The statement then returns one row (``ok``); otherwise none, and nothing was written."""
    p = prefix
    # The club's id, head and greatest HLC, then the device row's five values.
    club = 1 + len(tables.change_log.columns)
    device = club + 3
    where = " WHERE EXISTS (SELECT 1 FROM ok)" if guard else ""
    log, at = _insert(p, tables.change_log, 1, shape.many_entries, where=where)
    at += 8
    records = []
    for index, (table_name, many) in enumerate(shape.records):
        table = tables.DOMAIN_TABLES[table_name]
        upsert, at = _insert(p, table, at, many, upsert=True, where=where)
        records.append(f"r{index} AS ({upsert})")
    if shape.conflicts is not None:
        found, at = _insert(p, tables.conflicts, at, shape.conflicts, where=where)
        records.append(f"conflicts AS ({found})")
    device_row = ", ".join(f"${device + offset}" for offset in (0, 1, 2, 3, 4, 4))
    advance = f"UPDATE {p}clubs SET log_seq = ${club + 1}, max_hlc = ${club + 2} WHERE id = ${club}"
    parts = []
    if guard is not None:
        checks = [f"log_seq = ${at + 1}", "EXISTS (SELECT 1 FROM lock)"]
        if guard.new_device:
            checks.append(
                f"NOT EXISTS (SELECT 1 FROM {p}devices"
                f" WHERE club_id = ${club} AND id = ${device + 1})"
            )
        for offset, (table_name, many) in enumerate(guard.absent, start=at + 2):
            ids = f"ANY(${offset}::uuid[])" if many else f"${offset}::uuid"
            checks.append(
                f'NOT EXISTS (SELECT 1 FROM {p}"{table_name}"'
                f" WHERE club_id = ${club} AND id = {ids})"
            )
        parts += [
            f"lock AS (SELECT pg_advisory_xact_lock(${at}::bigint))",
            f"ok AS ({advance} AND {' AND '.join(checks)} RETURNING 1)",
        ]
        at += 2 + len(guard.absent)
    else:
        parts.append(f"club AS ({advance})")
    parts += [
        f"log AS ({log})",
        f"device AS (INSERT INTO {p}devices"
        " (club_id, id, last_seq, last_hlc, created_at, last_push_at)"
        f" SELECT {device_row}{where}"
        " ON CONFLICT (club_id, id) DO UPDATE SET last_seq = EXCLUDED.last_seq,"
        " last_hlc = EXCLUDED.last_hlc, last_push_at = EXCLUDED.last_push_at)",
        *records,
    ]
    # pg_notify inside the transaction: delivered when, and only if, it commits.
    notice = f", pg_notify(${at}, ${at + 1})" if notify else ""
    last = f"SELECT 1 AS ok{notice}" + (" FROM ok" if guard else "")
    return f"WITH {', '.join(parts)} {last}"


def open_store(
    engine: AsyncEngine, *, max_skew_ms: int, clock: WallClock | None = None
) -> SqlChangeStore:
    """The best change store for the engine's database."""
    if engine.dialect.name == "postgresql":
        return PostgresChangeStore(engine, max_skew_ms=max_skew_ms, clock=clock)
    return SqlChangeStore(engine, max_skew_ms=max_skew_ms, clock=clock)
