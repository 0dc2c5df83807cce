"""Compacting a finished match's log, on SQLite and PostgreSQL (PROTOCOL.md §6.6).

Two coaches play a match (goals, corrections, a delete and a restore, a real conflict, the
clock); the server compacts it once it is finished. The merged state, the derived score and
clock and the conflict ledger stay exactly as they were; a device that went offline at any
point pulls from its old cursor and converges; a push whose answer was lost before the
compaction is still acknowledged as a duplicate when retried.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.compaction import CompactionRefused, fold
from protocol.ingest import PushRejected, RecordKey
from protocol.merge import RecordState, decode_state
from protocol.schema import Scalar
from protocol.wire import Change, LoggedChange, PullRequest, PushRequest
from sync_server import cli, tables
from sync_server.db import create_engine
from sync_server.settings import Settings
from sync_server.store_pg import open_store
from sync_server.store_sql import SqlChangeStore
from tests.auth_fixtures import Club, new_club
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio

SKEW_MS = 60_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(clean_engine: AsyncEngine, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A pooled engine on the emptied database: these tests make many round trips, and a
    connection per statement made each one wait for a new PostgreSQL session."""
    pooled = create_engine(settings)
    try:
        yield pooled
    finally:
        await pooled.dispose()


@pytest.fixture
async def store(engine: AsyncEngine, clock: FakeClock) -> AsyncIterator[SqlChangeStore]:
    """The database's native store."""
    native = open_store(engine, max_skew_ms=SKEW_MS, clock=clock)
    try:
        yield native
    finally:
        await native.close()


@pytest.fixture(params=["native", "core"])
async def any_store(
    request: pytest.FixtureRequest, engine: AsyncEngine, clock: FakeClock
) -> AsyncIterator[SqlChangeStore]:
    """The database's native store and the generic Core store (on SQLite the same class)."""
    chosen = (
        open_store(engine, max_skew_ms=SKEW_MS, clock=clock)
        if request.param == "native"
        else SqlChangeStore(engine, max_skew_ms=SKEW_MS, clock=clock)
    )
    try:
        yield chosen
    finally:
        await chosen.close()


@pytest.fixture
def club() -> uuid.UUID:
    return uuid.uuid4()


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat()


def clock_action(device: ScriptedDevice, match: uuid.UUID, action: str) -> Change:
    fields: dict[str, Scalar] = {
        "match_id": str(match),
        "action": action,
        "at": iso(device.clock.now),
    }
    return device.change("clock_actions", uuid.uuid4(), fields)


async def pull_all(
    store: SqlChangeStore,
    club: uuid.UUID,
    device_id: str,
    *,
    cursor: int = 0,
    match: uuid.UUID | None = None,
    include_own: bool = True,
) -> tuple[list[LoggedChange], int]:
    """Every entry after ``cursor`` in the scope, page by page, and the final cursor."""
    changes: list[LoggedChange] = []
    while True:
        page = await store.pull(
            club,
            PullRequest(device_id=device_id, cursor=cursor, match_id=match, limit=7,
                        include_own=include_own),
        )  # fmt: skip
        changes += page.changes
        cursor = page.cursor
        if not page.has_more:
            return changes, cursor


async def sync(
    store: SqlChangeStore, club: uuid.UUID, device: ScriptedDevice, cursors: dict[str, int]
) -> None:
    """The device integrates everything others pushed (HLC receive rule and vector)."""
    page = await store.pull(
        club,
        PullRequest(device_id=device.device_id, cursor=cursors.get(device.device_id, 0),
                    limit=1000),
    )  # fmt: skip
    assert not page.has_more
    for change in page.changes:
        device.saw(change.hlc, change.device_id, change.seq)
    cursors[device.device_id] = page.cursor


async def log_count(engine: AsyncEngine, match: uuid.UUID | None = None) -> int:
    log = tables.change_log
    query = select(func.count()).select_from(log)
    if match is not None:
        query = query.where(log.c.match_id == match)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def stored_states(engine: AsyncEngine, club: uuid.UUID) -> dict[RecordKey, RecordState]:
    """Every domain record's merged state as the server holds it."""
    states: dict[RecordKey, RecordState] = {}
    async with engine.connect() as conn:
        for name, table in tables.DOMAIN_TABLES.items():
            rows = await conn.execute(
                select(table.c.id, table.c.sync_state).where(table.c.club_id == club)
            )
            states.update(((name, row.id), decode_state(row.sync_state)) for row in rows)
    return states


@dataclass
class Played:
    a: ScriptedDevice
    b: ScriptedDevice
    match: uuid.UUID
    home: uuid.UUID
    events: list[uuid.UUID] = field(default_factory=list)
    lost: PushRequest | None = None
    """A push of phone-b whose answer never arrived (stored, never acknowledged to it)."""
    sent: dict[str, list[Change]] = field(default_factory=dict)
    """Every change each device pushed, in order."""


async def play(
    store: SqlChangeStore,
    clock: FakeClock,
    club: uuid.UUID,
    *,
    minutes: int = 6,
    finish: bool = True,
    match: uuid.UUID | None = None,
    each_minute: Callable[[], Awaitable[None]] | None = None,
    names: tuple[str, str] = ("phone-a", "phone-b"),
) -> Played:
    """Two coaches log a match: phone-a the goals, phone-b notes on them that phone-a later
    corrects, a delete undone by a restore, one real conflict, then the final whistle."""
    a, b = ScriptedDevice(names[0], clock), ScriptedDevice(names[1], clock)
    match, home, away = match or uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    played = Played(a, b, match, home)
    cursors: dict[str, int] = {}

    async def push(device: ScriptedDevice, *changes: Change) -> PushRequest:
        request = device.push(*changes)
        await store.push(club, request)
        played.sent.setdefault(device.device_id, []).extend(changes)
        return request

    await push(a, *new_match_changes(a, match, home, away), clock_action(a, match, "start"))
    await sync(store, club, b, cursors)
    for minute in range(1, minutes + 1):
        clock.now += 60_000
        scored = goal(a, match, home if minute % 3 else away, clock_ms=minute * 60_000)
        await push(a, scored)
        played.events.append(scored.id)
        await sync(store, club, b, cursors)
        clock.now += 1_000
        note = b.change("events", scored.id, {"notes": f"minute {minute}"})
        request = await push(b, note)
        if minute == 2:
            played.lost = request  # its answer is lost: phone-b will retry it later
        await sync(store, club, a, cursors)
        clock.now += 1_000
        if minute % 2 == 0:
            await push(a, a.change("events", scored.id, {"notes": "corrected"}))
        if minute == 5:
            await push(a, a.change("events", scored.id, op="delete"))
            await sync(store, club, b, cursors)
            clock.now += 1_000
            await push(b, b.change("events", scored.id, op="restore"))
        if each_minute is not None:
            await each_minute()
    # One real conflict: both edit the first goal's player without seeing each other.
    clock.now += 1_000
    edit_a = a.change("events", played.events[0], {"player_id": str(uuid.uuid4())})
    edit_b = b.change("events", played.events[0], {"player_id": str(uuid.uuid4())})
    await push(a, edit_a)
    await push(b, edit_b)
    await sync(store, club, a, cursors)
    if finish:
        clock.now += 60_000
        await push(a, clock_action(a, match, "finish"))
    return played


async def test_compaction_keeps_the_state_and_the_ledger_and_shrinks_the_log(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, engine: AsyncEngine
) -> None:
    played = await play(store, clock, club)
    before, head = await pull_all(store, club, "auditor")
    states = await stored_states(engine, club)
    ledger = await store.conflicts(club, match_id=None, since=0)
    assert len(ledger) == 1 and ledger[0].match_id == played.match

    report = await store.compact(club, played.match)

    after, head_after = await pull_all(store, club, "auditor")
    assert report.match_id == played.match
    assert report.before.entries == len(before) - 2 == 22  # all but the two teams
    assert report.after.entries == await log_count(engine, played.match) == 17
    assert report.after.bytes < report.before.bytes
    assert head_after == head  # nothing renumbered: the head and every cursor stay valid
    by_seq = {c.server_seq: c for c in before}
    assert all(by_seq[c.server_seq] == c for c in after)  # kept entries are unchanged
    assert [c for c in after if c.table == "teams"] == [c for c in before if c.table == "teams"]
    assert fold(after) == fold(before) == states
    assert await stored_states(engine, club) == states
    assert await store.conflicts(club, match_id=None, since=0) == ledger

    again = await store.compact(club, played.match)
    assert again.before == again.after == report.after


async def test_a_match_not_finished_or_unknown_is_refused_and_untouched(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, engine: AsyncEngine
) -> None:
    played = await play(store, clock, club, minutes=3, finish=False)
    entries = await log_count(engine)
    with pytest.raises(CompactionRefused) as refused:
        await store.compact(club, played.match)
    assert refused.value.code == "not-finished"
    assert "in_progress" in refused.value.reason
    with pytest.raises(CompactionRefused) as unknown:
        await store.compact(club, uuid.uuid4())
    assert unknown.value.code == "no-log"
    assert await log_count(engine) == entries


async def test_a_device_back_from_any_point_converges_after_compaction(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, engine: AsyncEngine
) -> None:
    """phone-c follows the match (scoped pulls) and goes offline after any minute; it comes
    back after the compaction with its old cursor and ends with the server's state."""
    match = uuid.uuid4()
    checkpoints: list[tuple[list[LoggedChange], int]] = [([], 0)]

    async def phone_c_pulls() -> None:
        checkpoints.append(await pull_all(store, club, "phone-c", match=match))

    played = await play(store, clock, club, match=match, each_minute=phone_c_pulls)
    states = await stored_states(engine, club)
    full = {key: state for key, state in states.items() if key[0] != "teams"}
    report = await store.compact(club, played.match)
    assert report.after.entries < report.before.entries

    for had, cursor in checkpoints:
        back, _ = await pull_all(store, club, "phone-c", cursor=cursor, match=match)
        assert all(c.server_seq > cursor for c in back)
        assert fold([*had, *back]) == full, cursor


async def test_a_retried_push_of_a_compacted_change_is_a_duplicate(
    any_store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, engine: AsyncEngine
) -> None:
    store = any_store
    played = await play(store, clock, club, minutes=4)
    assert played.lost is not None
    lost = played.lost.changes[0]
    await store.compact(club, played.match)
    remaining, _ = await pull_all(store, club, "auditor", match=played.match)
    assert ("phone-b", lost.seq) not in {(c.device_id, c.seq) for c in remaining}
    entries = await log_count(engine)

    again = await store.push(club, played.lost)
    assert (again.applied, again.duplicates, again.restamped, again.conflicts) == (0, 1, [], [])
    assert await log_count(engine) == entries

    # Everything phone-b ever sent, kept or dropped, plus one new change.
    b = played.b
    clock.now += 1_000
    fresh = b.change(
        "match_notes", uuid.uuid4(), {"match_id": str(played.match), "note_text": "well played"}
    )
    everything = PushRequest(device_id="phone-b", changes=[*played.sent["phone-b"], fresh])
    ack = await store.push(club, everything)
    assert (ack.applied, ack.duplicates, ack.acked_seq) == (1, b.seq - 1, b.seq)

    reused = msgspec.structs.replace(
        lost, hlc=b.change("events", lost.id).hlc, fields={"notes": "a different note"}
    )
    with pytest.raises(PushRejected) as refused:
        await store.push(club, PushRequest(device_id="phone-b", changes=[reused]))
    assert (refused.value.status, refused.value.code) == (409, "sequence-reused")


async def test_restamped_entries_are_kept_so_a_retry_learns_its_hlc(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    """A fast device's change was restamped; even once overwritten, its entry stays, so
    a retry is still answered with the effective HLC."""
    played = await play(store, clock, club, minutes=1, finish=False)
    fast = ScriptedDevice("tablet-fast", clock, skew_ms=2 * 3_600_000)
    target = played.events[0]
    request = fast.push(fast.change("events", target, {"notes": "from the future"}))
    first = await store.push(club, request)
    assert len(first.restamped) == 1
    a = played.a
    await sync(store, club, a, {})
    clock.now += 1_000
    await store.push(club, a.push(a.change("events", target, {"notes": "now"})))
    clock.now += 60_000
    await store.push(club, a.push(clock_action(a, played.match, "abandon")))
    await store.compact(club, played.match)

    kept, _ = await pull_all(store, club, "auditor", match=played.match)
    assert ("tablet-fast", 1) in {(c.device_id, c.seq) for c in kept}
    again = await store.push(club, request)
    assert again.duplicates == 1 and again.restamped == first.restamped


async def test_compaction_leaves_other_matches_alone(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, engine: AsyncEngine
) -> None:
    first = await play(store, clock, club, minutes=3)
    second = await play(store, clock, club, minutes=3, names=("tablet-c", "tablet-d"))
    other = await log_count(engine, second.match)
    await store.compact(club, first.match)
    assert await log_count(engine, second.match) == other
    with pytest.raises(CompactionRefused) as wrong_club:
        await store.compact(uuid.uuid4(), second.match)
    assert wrong_club.value.code == "no-log"


# -- through the HTTP API --------------------------------------------------------------------------


def body(request: Any) -> bytes:
    return msgspec.json.encode(request)


class Phone:
    """A device talking to the server over HTTP: it pushes, pulls one match and remembers
    what it pulled and its cursor."""

    def __init__(self, client: AsyncTestClient[Litestar], club: Club, device_id: str) -> None:
        self.client = client
        self.club = club
        self.device = ScriptedDevice(device_id, FakeClock(time.time_ns() // 1_000_000))
        self.pulled: list[LoggedChange] = []
        self.cursor = 0

    async def push(self, *changes: Change) -> tuple[PushRequest, Any]:
        request = self.device.push(*changes)
        headers = await self.club.headers(self.device.device_id)
        response = await self.client.post("/api/sync/push", content=body(request), headers=headers)
        return request, response

    async def pull(self, match: uuid.UUID) -> list[LoggedChange]:
        headers = await self.club.headers(self.device.device_id)
        got: list[LoggedChange] = []
        while True:
            response = await self.client.post(
                "/api/sync/pull",
                json={"device_id": self.device.device_id, "cursor": self.cursor,
                      "match_id": str(match), "limit": 5},
                headers=headers,
            )  # fmt: skip
            assert response.status_code == 200, response.text
            page = response.json()
            for raw in page["changes"]:
                change = msgspec.convert(raw, LoggedChange)
                self.device.saw(change.hlc, change.device_id, change.seq)
                got.append(change)
            self.cursor = page["cursor"]
            if not page["has_more"]:
                self.pulled += got
                return got

    def tick(self, ms: int = 1_000) -> None:
        self.device.clock.now += ms


async def test_over_http_a_returning_device_and_a_retried_push(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine, settings: Settings
) -> None:
    club = await new_club(client, device_id="phone-a")
    a, b, c = (Phone(client, club, name) for name in ("phone-a", "phone-b", "phone-c"))
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _, ok = await a.push(*new_match_changes(a.device, match, home, away),
                         clock_action(a.device, match, "start"))  # fmt: skip
    assert ok.status_code == 200, ok.text
    goals = [goal(a.device, match, home, clock_ms=n * 60_000) for n in range(1, 7)]
    await a.push(*goals[:3])
    await c.pull(match)  # phone-c follows the first half, then its battery dies
    await a.push(*goals[3:])
    await b.pull(match)
    b.tick()
    lost, response = await b.push(
        *(b.device.change("events", g.id, {"notes": "phone-b's note"}) for g in goals)
    )
    assert response.status_code == 200  # stored; phone-b never reads the answer
    await a.pull(match)
    a.tick()
    await a.push(*(a.device.change("events", g.id, {"notes": "final note"}) for g in goals))
    await a.push(a.device.change("events", goals[1].id, op="delete"))
    a.tick()
    await a.push(clock_action(a.device, match, "finish"))
    whole = await Phone(client, club, "auditor").pull(match)

    store = open_store(clean_engine, max_skew_ms=settings.max_clock_skew_ms)
    report = await store.compact(uuid.UUID(club.id), match)
    assert (report.before.entries, report.after.entries) == (22, 16)

    cursor = c.cursor
    back = await c.pull(match)
    assert all(change.server_seq > cursor for change in back)
    assert fold(c.pulled) == fold(whole)
    assert fold(await Phone(client, club, "auditor").pull(match)) == fold(whole)

    headers = await club.headers("phone-b")
    retried = await client.post("/api/sync/push", content=body(lost), headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["duplicates"] == len(goals) and retried.json()["applied"] == 0


# -- the command line ------------------------------------------------------------------------------


async def test_the_compact_command_reports_each_match(
    store: SqlChangeStore,
    clock: FakeClock,
    club: uuid.UUID,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    finished = await play(store, clock, club, minutes=3)
    running = await play(store, clock, club, minutes=2, finish=False, names=("c", "d"))
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-that-is-long-enough-for-hs256")
    if settings.database_schema and not settings.is_sqlite:
        monkeypatch.setenv("DATABASE_SCHEMA", settings.database_schema)

    async def run(*argv: str) -> tuple[int, str]:
        code = await anyio.to_thread.run_sync(cli.main, list(argv))
        return code, capsys.readouterr().out

    code, out = await run("compact", "--match", str(running.match))
    assert code == 1 and "not compacted: the match is in_progress" in out
    code, out = await run("compact", "--finished")
    assert code == 0, out
    assert f"club {club} match {finished.match}: 12 -> 10 log entries" in out
    assert "compacted 1 match(es): 12 -> 10 log entries; 1 not finished" in out
    code, out = await run("compact", "--match", str(finished.match))
    assert code == 0 and "10 -> 10 log entries" in out


def test_the_compact_command_needs_a_match_or_finished() -> None:
    with pytest.raises(SystemExit):
        cli.main(["compact"])
