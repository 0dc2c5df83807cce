"""The change store on SQLAlchemy Core: SQLite (embedded default) and PostgreSQL.

A push is one transaction: lock the club's row (so server sequences commit in order and two
pushes never merge the same record from stale reads), load what the pure planner needs, plan,
write the log, the merged records, the conflicts and the device cursor, commit. Nothing is
acknowledged before that commit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import msgspec
from sqlalchemy import Row, Table, and_, delete, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol import merge
from protocol.compaction import CompactionReport, plan_compaction, with_stand_ins
from protocol.hlc import Hlc
from protocol.ingest import (
    CheckedChangeSet,
    DeviceCursor,
    PushPlan,
    PushRejected,
    RecordKey,
    ServerWrite,
    StoredChange,
    check_change_set,
    plan_push,
    record_keys,
    reinstating_change,
    server_change_set,
)
from protocol.schema import TABLES, Scalar
from protocol.wire import (
    ConflictRecord,
    LoggedChange,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)
from sync_server import tables
from sync_server.db import reading
from sync_server.ledger import conflict_from_row, conflict_row, side
from sync_server.projection import domain_row, from_ms
from sync_server.store import (
    SERVER_DEVICE,
    Announce,
    Announcement,
    CommitNotice,
    RecordedChanges,
    SystemClock,
    WallClock,
    touched_matches,
)

LOGGED_FIELDS = msgspec.json.Decoder(dict[str, Scalar])
_DELETE_BATCH = 500
"""Log entries deleted per statement by a compaction (SQLite binds at most 32,766 values)."""
ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def ids_by_table(keys: Iterable[RecordKey]) -> dict[str, list[uuid.UUID]]:
    """Record ids grouped by table, for one lookup per table."""
    grouped: dict[str, list[uuid.UUID]] = {}
    for table_name, record_id in keys:
        grouped.setdefault(table_name, []).append(record_id)
    return grouped


def schema_of(engine: AsyncEngine) -> str | None:
    """The schema the engine's translate map puts the tables in (raw SQL must name it)."""
    translate = engine.get_execution_options().get("schema_translate_map") or {}
    schema = translate.get(None)
    return str(schema) if schema else None


def lock_key(club_id: uuid.UUID) -> int:
    """A club's advisory lock key: 64 bits of its id (a collision only serialises two clubs)."""
    return int.from_bytes(club_id.bytes[:8], "big", signed=True)


_encode = msgspec.json.encode


def stored_changes(rows: Iterable[Any]) -> dict[int, StoredChange]:
    """Log rows read by name (device_seq, sent_hlc, hlc, table_name, record_id, op, fields:
    SQLAlchemy row mappings or asyncpg records) as the stored copies the planner compares
    re-sent changes with, by device seq."""
    return {
        int(r["device_seq"]): StoredChange(
            int(r["device_seq"]),
            r["sent_hlc"],
            r["hlc"],
            r["table_name"],
            r["record_id"],
            r["op"],
            LOGGED_FIELDS.decode(r["fields"]),
        )
        for r in rows
    }


def check_pushed(request: PushRequest) -> CheckedChangeSet:
    """Everything about a pushed change set that needs no stored state.

    Done before the club's lock, it overlaps the lock holder's database round trips instead
    of making the club's other devices wait."""
    if request.device_id == SERVER_DEVICE:
        raise PushRejected(
            403, "reserved-device", "Reserved device id",
            f"device id {SERVER_DEVICE!r} is reserved for changes the server records",
        )  # fmt: skip
    return check_change_set(request)


class SqlChangeStore:
    """:class:`sync_server.store.ChangeStore` over an async SQLAlchemy engine."""

    def __init__(
        self, engine: AsyncEngine, *, max_skew_ms: int, clock: WallClock | None = None
    ) -> None:
        self._engine = engine
        self._max_skew_ms = max_skew_ms
        self._clock = clock or SystemClock()
        dialect = engine.dialect.name
        self._is_postgres = dialect == "postgresql"
        self._insert = postgresql.insert if self._is_postgres else sqlite.insert
        # SQLite has one writer at a time: queue this process's writers here rather than
        # have them spin on the database file lock (busy_timeout), which gave second-long
        # tails and "database is locked" under load.
        self._writer = anyio.Lock() if not self._is_postgres else None
        self.announce: Announce | None = None
        self.commit_notice: CommitNotice | None = None
        # Changes recorded inside a caller's transaction, announced once it commits.
        self._pending: dict[int, list[Announcement]] = {}

    async def ping(self) -> None:
        async with reading(self._engine) as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        """Nothing of its own to close: the engine's pool belongs to whoever made it."""

    # -- push -------------------------------------------------------------------------------

    async def push(self, club_id: uuid.UUID, request: PushRequest) -> PushResponse:
        checked = check_pushed(request)
        async with self._writing(), self._engine.begin() as conn:
            head, club_max, device = await self._open_push(conn, club_id, request.device_id)
            stored = await self._stored(conn, club_id, request, device.last_seq)
            records = await self._states(conn, club_id, record_keys(request))
            plan, now_ms = self._plan(checked, device, stored, records, club_max)
            conflicts = await self._write(conn, club_id, request.device_id, plan, head, now_ms)
        announcement = commit_announcement(club_id, head, plan, request.device_id, conflicts)
        return self._pushed(announcement, request.device_id, plan, now_ms)

    def _plan(
        self,
        checked: CheckedChangeSet,
        device: DeviceCursor,
        stored: dict[int, StoredChange],
        records: dict[RecordKey, merge.RecordState],
        club_max: Hlc | None,
    ) -> tuple[PushPlan, int]:
        """The pure planner on what was read under the club's lock; the plan and its time."""
        # Re-sent changes whose entries a compaction dropped (PROTOCOL.md §6.6).
        stored = with_stand_ins(
            checked.request, last_seq=device.last_seq, stored=stored, records=records
        )
        now_ms = self._clock.now_ms()
        plan = plan_push(
            checked,
            device=device,
            stored=stored,
            records=records,
            now_ms=now_ms,
            max_skew_ms=self._max_skew_ms,
            club_max=club_max,
        )
        return plan, now_ms

    def _pushed(
        self, announcement: Announcement, device_id: str, plan: PushPlan, now_ms: int
    ) -> PushResponse:
        """Announce a committed push and answer it."""
        self._announce(announcement)
        return PushResponse(
            device_id=device_id,
            acked_seq=plan.device.last_seq,
            applied=len(plan.accepted),
            duplicates=plan.duplicates,
            cursor=announcement.seq,
            restamped=plan.restamped,
            conflicts=announcement.conflicts,
            server_time_ms=now_ms,
        )

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        if self._writer is None:
            yield
            return
        async with self._writer:
            yield

    async def _open_push(
        self, conn: AsyncConnection, club_id: uuid.UUID, device_id: str
    ) -> tuple[int, Hlc | None, DeviceCursor]:
        """Lock the club; its log head and greatest HLC, and the pushing device's cursor."""
        head, club_max = await self._lock_club(conn, club_id)
        return head, club_max, await self._device(conn, club_id, device_id)

    async def _lock_club(self, conn: AsyncConnection, club_id: uuid.UUID) -> tuple[int, Hlc | None]:
        """Take the club's write lock for this transaction; create the club on first use.

        The lock serialises a club's pushes: sequences become visible in order (a pull never
        skips a sequence committed late) and merges never read a state another push is
        rewriting. On PostgreSQL it is a transaction-scoped advisory lock, whose waiters queue
        in turn; waiting on the club's row instead (FOR UPDATE, ON CONFLICT) woke every waiter
        at each commit and cost PostgreSQL ten times the CPU of the push itself. SQLite gets
        the same serialisation from ``BEGIN IMMEDIATE`` and the process's writer lock.
        """
        if self._is_postgres:
            await conn.execute(ADVISORY_LOCK, {"key": lock_key(club_id)})
        clubs = tables.clubs
        query = select(clubs.c.log_seq, clubs.c.max_hlc).where(clubs.c.id == club_id)
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            now = from_ms(self._clock.now_ms())
            await conn.execute(
                insert(clubs).values(id=club_id, name=None, log_seq=0, created_at=now)
            )
            return 0, None
        return int(row.log_seq), Hlc.parse(row.max_hlc) if row.max_hlc else None

    async def _device(
        self, conn: AsyncConnection, club_id: uuid.UUID, device_id: str
    ) -> DeviceCursor:
        d = tables.devices
        row = (
            await conn.execute(
                select(d.c.last_seq, d.c.last_hlc).where(
                    d.c.club_id == club_id, d.c.id == device_id
                )
            )
        ).one_or_none()
        if row is None:
            return DeviceCursor()
        return DeviceCursor(int(row.last_seq), Hlc.parse(row.last_hlc) if row.last_hlc else None)

    async def _stored(
        self, conn: AsyncConnection, club_id: uuid.UUID, request: PushRequest, last_seq: int
    ) -> dict[int, StoredChange]:
        """The stored copies of re-sent changes (only read when the set overlaps the log)."""
        first = request.changes[0].seq
        if first > last_seq:
            return {}
        log = tables.change_log
        rows = await conn.execute(
            select(
                log.c.device_seq,
                log.c.sent_hlc,
                log.c.hlc,
                log.c.table_name,
                log.c.record_id,
                log.c.op,
                log.c.fields,
            ).where(
                log.c.club_id == club_id,
                log.c.device_id == request.device_id,
                log.c.device_seq.between(first, min(last_seq, request.changes[-1].seq)),
            )
        )
        return stored_changes(row._mapping for row in rows)

    async def _states(
        self, conn: AsyncConnection, club_id: uuid.UUID, keys: Iterable[RecordKey]
    ) -> dict[RecordKey, merge.RecordState]:
        states: dict[RecordKey, merge.RecordState] = {}
        for table_name, ids in ids_by_table(keys).items():
            t = tables.DOMAIN_TABLES[table_name]
            rows = await conn.execute(
                select(t.c.id, t.c.sync_state).where(t.c.club_id == club_id, t.c.id.in_(ids))
            )
            for row in rows:
                states[(table_name, row.id)] = merge.decode_state(row.sync_state)
        return states

    async def _write(
        self,
        conn: AsyncConnection,
        club_id: uuid.UUID,
        device_id: str,
        plan: PushPlan,
        head: int,
        now_ms: int,
    ) -> list[ConflictRecord]:
        writes = planned_writes(club_id, device_id, plan, head, now_ms)
        if writes is None:
            return []
        await self._apply(conn, writes)
        return writes.conflicts

    async def _apply(self, conn: AsyncConnection, writes: PlannedWrites) -> None:
        """Store what a plan wrote: log entries, the club's head, merged records, conflicts
        and the device's cursor."""
        await self._insert_rows(conn, tables.change_log, writes.log_rows)
        await self._advance_club(conn, writes.club_id, writes.log_seq, writes.club_max)
        for table_name, rows in writes.record_rows.items():
            await self._upsert_rows(conn, tables.DOMAIN_TABLES[table_name], rows)
        if writes.conflict_rows:
            await self._insert_rows(conn, tables.conflicts, writes.conflict_rows)
        await self._save_device(
            conn, writes.club_id, writes.device_id, writes.device, writes.received
        )

    async def _insert_rows(
        self, conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        await conn.execute(insert(table), rows)

    async def _upsert_rows(
        self, conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.club_id, table.c.id],
            set_={
                c.name: statement.excluded[c.name]
                for c in table.columns
                if c.name not in ("club_id", "id")
            },
        )
        await conn.execute(statement, rows)

    async def _advance_club(
        self, conn: AsyncConnection, club_id: uuid.UUID, log_seq: int, club_max: Hlc | None
    ) -> None:
        await conn.execute(
            update(tables.clubs)
            .where(tables.clubs.c.id == club_id)
            .values(log_seq=log_seq, max_hlc=club_max.encode() if club_max else None)
        )

    async def _save_device(
        self,
        conn: AsyncConnection,
        club_id: uuid.UUID,
        device_id: str,
        cursor: DeviceCursor,
        when: datetime,
    ) -> None:
        d = tables.devices
        last_hlc = cursor.last_hlc.encode() if cursor.last_hlc else None
        statement = self._insert(d).values(
            club_id=club_id,
            id=device_id,
            last_seq=cursor.last_seq,
            last_hlc=last_hlc,
            created_at=when,
            last_push_at=when,
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[d.c.club_id, d.c.id],
                set_={"last_seq": cursor.last_seq, "last_hlc": last_hlc, "last_push_at": when},
            )
        )

    # -- pull -------------------------------------------------------------------------------

    async def pull(self, club_id: uuid.UUID, request: PullRequest) -> PullResponse:
        log = tables.change_log
        async with reading(self._engine) as conn:
            # Read the head first: every sequence up to it is committed (pushes commit in
            # sequence order under the club lock), so nothing below the cursor we hand out
            # can appear later.
            head = await self._head(conn, club_id)
            conditions = [
                log.c.club_id == club_id,
                log.c.server_seq > request.cursor,
                log.c.server_seq <= head,
            ]
            if request.match_id is not None:
                conditions.append(log.c.match_id == request.match_id)
            if not request.include_own:
                conditions.append(log.c.device_id != request.device_id)
            rows = (
                await conn.execute(
                    select(log)
                    .where(*conditions)
                    .order_by(log.c.server_seq)
                    .limit(request.limit + 1)
                )
            ).all()
            has_more = len(rows) > request.limit
            rows = rows[: request.limit]
            cursor = rows[-1].server_seq if has_more else max(head, request.cursor)
            conflicts = await self._conflicts_between(
                conn, club_id, request.match_id, request.cursor, cursor
            )
        return PullResponse(
            changes=[_logged(r) for r in rows],
            conflicts=conflicts,
            cursor=int(cursor),
            has_more=has_more,
            server_time_ms=self._clock.now_ms(),
        )

    async def _head(self, conn: AsyncConnection, club_id: uuid.UUID) -> int:
        query = select(tables.clubs.c.log_seq).where(tables.clubs.c.id == club_id)
        return int((await conn.execute(query)).scalar_one_or_none() or 0)

    # -- conflicts --------------------------------------------------------------------------

    async def conflicts(
        self, club_id: uuid.UUID, *, match_id: uuid.UUID | None, since: int
    ) -> list[ConflictRecord]:
        async with reading(self._engine) as conn:
            head = await self._head(conn, club_id)
            return await self._conflicts_between(conn, club_id, match_id, since, head)

    async def _conflicts_between(
        self,
        conn: AsyncConnection,
        club_id: uuid.UUID,
        match_id: uuid.UUID | None,
        after: int,
        through: int,
    ) -> list[ConflictRecord]:
        c = tables.conflicts
        # A conflict travels when it is recorded and again when it is reinstated, so every
        # device learns the ledger's current state from pulls alone.
        recorded = and_(c.c.server_seq > after, c.c.server_seq <= through)
        reinstated = and_(c.c.reinstated_seq > after, c.c.reinstated_seq <= through)
        conditions = [c.c.club_id == club_id, or_(recorded, reinstated)]
        if match_id is not None:
            conditions.append(c.c.match_id == match_id)
        rows = await conn.execute(
            select(c).where(and_(*conditions)).order_by(c.c.server_seq, c.c.field)
        )
        return [conflict_from_row(r) for r in rows]

    async def reinstate(
        self, club_id: uuid.UUID, conflict_id: uuid.UUID, *, by: uuid.UUID | None = None
    ) -> ReinstateResponse:
        c = tables.conflicts
        async with self._writing(), self._engine.begin() as conn:
            head, club_max = await self._lock_club(conn, club_id)
            row = (
                await conn.execute(select(c).where(c.c.club_id == club_id, c.c.id == conflict_id))
            ).one_or_none()
            if row is None:
                raise PushRejected(
                    404,
                    "not-found",
                    "Conflict not found",
                    f"no conflict {conflict_id} in this club",
                )
            conflict = conflict_from_row(row)
            key = (conflict.table, conflict.record_id)
            current = (await self._states(conn, club_id, [key]))[key]
            device = await self._device(conn, club_id, SERVER_DEVICE)
            now_ms = self._clock.now_ms()
            change, seen = reinstating_change(conflict, current, device, now_ms)
            hlc = Hlc.parse(change.hlc)
            request = PushRequest(device_id=SERVER_DEVICE, changes=[change], seen=seen)
            plan = plan_push(
                request,
                device=device,
                stored={},
                records={key: current},
                now_ms=now_ms,
                # The reinstated value must sort after the winner even if that one was
                # stamped at the skew ceiling, so this one change is never capped.
                max_skew_ms=max(self._max_skew_ms, hlc.wall_ms - now_ms + 1),
                club_max=club_max,
            )
            found = await self._write(conn, club_id, SERVER_DEVICE, plan, head, now_ms)
            await conn.execute(
                update(c)
                .where(c.c.club_id == club_id, c.c.id == conflict_id)
                .values(reinstated_seq=head + 1, reinstated_by=by)
            )
        # The reinstated conflict changed too: the relay reads the ledger again.
        self._announce(
            commit_announcement(club_id, head, plan, SERVER_DEVICE, found, entries=False)
        )
        return ReinstateResponse(
            conflict=msgspec.structs.replace(conflict, reinstated_seq=head + 1, reinstated_by=by),
            change=_planned_log(plan, head)[0],
            cursor=head + 1,
        )

    # -- compaction ---------------------------------------------------------------------------

    async def compact(self, club_id: uuid.UUID, match_id: uuid.UUID) -> CompactionReport:
        log = tables.change_log
        async with self._writing(), self._engine.begin() as conn:
            if self._is_postgres:
                # The club's write lock: no push merges into the match while it is read.
                await conn.execute(ADVISORY_LOCK, {"key": lock_key(club_id)})
            rows = (
                await conn.execute(
                    select(log)
                    .where(log.c.club_id == club_id, log.c.match_id == match_id)
                    .order_by(log.c.server_seq)
                )
            ).all()
            entries = [_logged(row) for row in rows]
            plan = plan_compaction(
                match_id,
                entries,
                acknowledged=await self._acknowledged(conn, club_id, {r.device_id for r in rows}),
                restamped={(r.device_id, int(r.device_seq)) for r in rows if r.hlc != r.sent_hlc},
                stored=await self._match_states(conn, club_id, match_id),
            )
            dropped = [entry.server_seq for entry in plan.dropped]
            for start in range(0, len(dropped), _DELETE_BATCH):
                batch = dropped[start : start + _DELETE_BATCH]
                await conn.execute(
                    delete(log).where(log.c.club_id == club_id, log.c.server_seq.in_(batch))
                )
        return plan.report

    async def _acknowledged(
        self, conn: AsyncConnection, club_id: uuid.UUID, device_ids: set[str]
    ) -> dict[str, int]:
        """The ``last`` of each of these devices: what the server stored and acknowledged."""
        if not device_ids:
            return {}
        d = tables.devices
        rows = await conn.execute(
            select(d.c.id, d.c.last_seq).where(d.c.club_id == club_id, d.c.id.in_(device_ids))
        )
        return {row.id: int(row.last_seq) for row in rows}

    async def _match_states(
        self, conn: AsyncConnection, club_id: uuid.UUID, match_id: uuid.UUID
    ) -> dict[RecordKey, merge.RecordState]:
        """The merged state of the match record and of every record with its ``match_id``."""
        states: dict[RecordKey, merge.RecordState] = {}
        for table_name, spec in TABLES.items():
            if spec.record_is_match:
                key_column = "id"
            elif spec.match_field is not None:
                key_column = spec.match_field
            else:
                continue
            t = tables.DOMAIN_TABLES[table_name]
            rows = await conn.execute(
                select(t.c.id, t.c.sync_state).where(
                    t.c.club_id == club_id, t.c[key_column] == match_id
                )
            )
            for row in rows:
                states[(table_name, row.id)] = merge.decode_state(row.sync_state)
        return states

    # -- changes the server makes itself ------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        recorded: list[Announcement] = []
        async with self._writing():
            async with self._engine.begin() as conn:
                self._pending[id(conn)] = recorded
                try:
                    yield conn
                finally:
                    del self._pending[id(conn)]
            for announcement in recorded:
                self._announce(announcement)

    def _announce(self, announcement: Announcement) -> None:
        """Tell the relay what a commit added (after the commit: a reader sees it)."""
        if self.announce is not None and announcement.seq > announcement.after:
            self.announce(announcement)

    async def record(
        self,
        conn: AsyncConnection,
        club_id: uuid.UUID,
        writes: Sequence[ServerWrite],
        *,
        device_id: str = SERVER_DEVICE,
        causal: bool = False,
    ) -> RecordedChanges:
        head, club_max = await self._lock_club(conn, club_id)
        device = await self._device(conn, club_id, device_id)
        now_ms = self._clock.now_ms()
        seen = await self._club_vector(conn, club_id) if causal else None
        request = server_change_set(writes, device, now_ms, device_id, seen)
        keys = record_keys(request)
        plan = plan_push(
            request,
            device=device,
            stored={},
            records=await self._states(conn, club_id, keys),
            now_ms=now_ms,
            max_skew_ms=self._max_skew_ms,
            club_max=club_max,
        )
        conflicts = await self._write(conn, club_id, device_id, plan, head, now_ms)
        pending = self._pending.get(id(conn))
        if pending is not None:
            pending.append(commit_announcement(club_id, head, plan, device_id, conflicts))
        else:
            # A transaction the store did not open: announced now, before its commit, without
            # its entries. The relay reads the log and finds them, at the latest at the
            # club's next announcement.
            self._announce(commit_announcement(club_id, head, plan, device_id, [], entries=False))
        return RecordedChanges(_planned_log(plan, head, device_id), conflicts, plan.states)

    async def _club_vector(self, conn: AsyncConnection, club_id: uuid.UUID) -> dict[str, int]:
        d = tables.devices
        rows = await conn.execute(select(d.c.id, d.c.last_seq).where(d.c.club_id == club_id))
        return {row.id: int(row.last_seq) for row in rows}


@dataclass(frozen=True, slots=True)
class PlannedWrites:
    """The rows a push plan writes, ready for the database."""

    club_id: uuid.UUID
    device_id: str
    log_rows: list[dict[str, Any]]
    log_seq: int
    """The club's log head after the writes."""
    club_max: Hlc | None
    record_rows: dict[str, list[dict[str, Any]]]
    """Merged records by table."""
    conflicts: list[ConflictRecord]
    conflict_rows: list[dict[str, Any]]
    device: DeviceCursor
    received: datetime


def planned_writes(
    club_id: uuid.UUID, device_id: str, plan: PushPlan, head: int, now_ms: int
) -> PlannedWrites | None:
    """What storing ``plan`` after log head ``head`` writes; None when it accepted nothing."""
    if not plan.accepted:
        return None
    received = from_ms(now_ms)
    last_seq_of: dict[RecordKey, int] = {}
    log_rows = []
    for offset, accepted in enumerate(plan.accepted, start=1):
        change = accepted.change
        last_seq_of[(change.table, change.id)] = head + offset
        log_rows.append(
            {
                "club_id": club_id,
                "server_seq": head + offset,
                "device_id": device_id,
                "device_seq": change.seq,
                "hlc": accepted.hlc.encode(),
                "sent_hlc": change.hlc,
                "table_name": change.table,
                "record_id": change.id,
                "match_id": accepted.match_id,
                "op": change.op,
                "fields": _encode(change.fields).decode(),
                "received_at": received,
            }
        )
    record_rows: dict[str, list[dict[str, Any]]] = {}
    for (table_name, record_id), state in plan.states.items():
        record_rows.setdefault(table_name, []).append(
            domain_row(table_name, club_id, record_id, state, last_seq_of[(table_name, record_id)])
        )
    conflicts = [
        ConflictRecord(
            id=uuid.uuid4(),
            server_seq=head + 1 + found.change_index,
            table=found.table,  # type: ignore[arg-type]
            record_id=found.record_id,
            match_id=found.match_id,
            field=found.conflict.field,
            winner=side(found.conflict.winner),
            loser=side(found.conflict.loser),
            detected_at=received.isoformat(),
        )
        for found in plan.conflicts
    ]
    return PlannedWrites(
        club_id=club_id,
        device_id=device_id,
        log_rows=log_rows,
        log_seq=head + len(plan.accepted),
        club_max=plan.club_max,
        record_rows=record_rows,
        conflicts=conflicts,
        conflict_rows=[conflict_row(club_id, c, received) for c in conflicts],
        device=plan.device,
        received=received,
    )


def commit_announcement(
    club_id: uuid.UUID,
    head: int,
    plan: PushPlan,
    device_id: str,
    conflicts: list[ConflictRecord],
    *,
    entries: bool = True,
) -> Announcement:
    logged = _planned_log(plan, head, device_id) if entries else None
    return Announcement(
        club_id=club_id,
        after=head,
        seq=head + len(plan.accepted),
        matches=touched_matches(accepted.match_id for accepted in plan.accepted),
        entries=(
            None
            if logged is None
            else [(a.match_id, change) for a, change in zip(plan.accepted, logged, strict=True)]
        ),
        conflicts=conflicts,
    )


def _planned_log(plan: PushPlan, head: int, device_id: str = SERVER_DEVICE) -> list[LoggedChange]:
    """The log entries a server-made plan wrote after ``head``, as a pull would show them."""
    return [
        LoggedChange(
            server_seq=head + offset,
            device_id=device_id,
            seq=accepted.change.seq,
            hlc=accepted.hlc.encode(),
            table=accepted.change.table,
            id=accepted.change.id,
            op=accepted.change.op,
            fields=dict(accepted.change.fields),
        )
        for offset, accepted in enumerate(plan.accepted, start=1)
    ]


def _logged(row: Row[Any]) -> LoggedChange:
    return LoggedChange(
        server_seq=int(row.server_seq),
        device_id=row.device_id,
        seq=int(row.device_seq),
        hlc=row.hlc,
        table=row.table_name,
        id=row.record_id,
        op=row.op,
        fields=LOGGED_FIELDS.decode(row.fields),
    )
