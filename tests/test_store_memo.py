"""The PostgreSQL store's one-round-trip push, planned on what an instance remembers of a
club: it writes only while that memo is true, and otherwise the locked path takes over.

Two stores on two pooled engines stand for two server instances on one database."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest
from sqlalchemy import select

from protocol import merge
from protocol.ingest import ServerWrite
from protocol.schema import Scalar, TableName
from protocol.wire import PullRequest
from sync_server import tables
from sync_server.club_memo import ClubMemos
from sync_server.db import create_engine
from sync_server.settings import Settings
from sync_server.store_pg import PostgresChangeStore
from sync_server.store_sql import lock_key
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

SKEW_MS = 60_000
COACHES = 2
BURSTS = 8
BURST = 5
WAITING_FOR_A_LOCK = (
    "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)"
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def instances(
    settings: Settings, clean_engine: object, clock: FakeClock
) -> AsyncIterator[tuple[PostgresChangeStore, PostgresChangeStore]]:
    engines = [create_engine(settings) for _ in range(2)]
    stores = [PostgresChangeStore(e, max_skew_ms=SKEW_MS, clock=clock) for e in engines]
    try:
        yield stores[0], stores[1]
    finally:
        for store, engine in zip(stores, engines, strict=True):
            await store.close()
            await engine.dispose()


async def merged_from_log(
    store: PostgresChangeStore, club: uuid.UUID
) -> dict[tuple[str, uuid.UUID], merge.RecordState]:
    """Every record as the merge of the club's whole log says it must be."""
    pulled = await store.pull(club, PullRequest(device_id="reader", limit=10_000))
    assert [c.server_seq for c in pulled.changes] == list(range(1, len(pulled.changes) + 1))
    states: dict[tuple[str, uuid.UUID], merge.RecordState] = {}
    for c in pulled.changes:
        write = merge.Write(c.device_id, c.seq, c.hlc, c.op, c.fields)
        states[(c.table, c.id)] = merge.apply(states.get((c.table, c.id)), write)
    return states


async def stored(
    store: PostgresChangeStore, club: uuid.UUID
) -> dict[tuple[str, uuid.UUID], merge.RecordState]:
    states = {}
    async with store._engine.connect() as conn:
        for name, table in tables.DOMAIN_TABLES.items():
            query = select(table.c.id, table.c.sync_state).where(table.c.club_id == club)
            for row in await conn.execute(query):
                states[(name, row.id)] = merge.decode_state(row.sync_state)
    return states


async def test_a_device_pushing_again_writes_in_one_round_trip(
    instances: tuple[PostgresChangeStore, PostgresChangeStore], clock: FakeClock
) -> None:
    store, _ = instances
    club, match, home, away = (uuid.uuid4() for _ in range(4))
    a = ScriptedDevice("phone-a", clock)
    await store.push(club, a.push(*new_match_changes(a, match, home, away)))
    first = goal(a, match, home)
    ack = await store.push(club, a.push(first))
    assert (ack.applied, ack.cursor) == (1, 4)
    await store.push(club, a.push(a.change("events", first.id, {"clock_ms": 30_000})))
    assert store.push_paths == {"locked": 1, "memo": 2}
    assert await stored(store, club) == await merged_from_log(store, club)


async def test_another_instances_writes_send_the_push_through_the_lock(
    instances: tuple[PostgresChangeStore, PostgresChangeStore], clock: FakeClock
) -> None:
    """Coaches on two instances edit one event in turn: each instance's memo is out of date
    at every push, nothing of the other's edits is lost and the log stays dense."""
    one, two = instances
    club, match, home, away = (uuid.uuid4() for _ in range(4))
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    setup = new_match_changes(a, match, home, away)
    event = goal(a, match, home)
    await one.push(club, a.push(*setup, event))
    edits: list[tuple[PostgresChangeStore, ScriptedDevice, dict[str, Scalar]]] = [
        (two, b, {"notes": "header"}),
        (one, a, {"clock_ms": 61_000}),
        (two, b, {"period_number": 2}),
    ]
    for store, device, fields in edits:
        clock.now += 1_000  # each edit made after the one before
        await store.push(club, device.push(device.change("events", event.id, fields)))
    await one.push(club, a.push(goal(a, match, away)))
    assert one.push_paths == {"locked": 3, "memo_missed": 2}
    assert two.push_paths == {"locked": 2, "memo_missed": 1}
    merged = await merged_from_log(one, club)
    assert await stored(one, club) == merged
    assert merged[("events", event.id)].values() == {
        **event.fields,
        "notes": "header",
        "clock_ms": 61_000,
        "period_number": 2,
    }


async def test_a_record_the_memo_let_go_is_not_written_as_new(
    settings: Settings, clean_engine: object, clock: FakeClock
) -> None:
    engine = create_engine(settings)
    store = PostgresChangeStore(
        engine, max_skew_ms=SKEW_MS, clock=clock, memos=ClubMemos(max_records_per_club=1)
    )
    try:
        club, match, home, away = (uuid.uuid4() for _ in range(4))
        a = ScriptedDevice("phone-a", clock)
        setup = new_match_changes(a, match, home, away)
        first = goal(a, match, home, notes="first")
        await store.push(club, a.push(*setup, first))
        await store.push(club, a.push(goal(a, match, home)))  # the memo now holds only this
        # The whole event, as a device that lost its copy would send it: planned as new.
        again = {name: value for name, value in first.fields.items() if name != "notes"}
        await store.push(club, a.push(a.change("events", first.id, {**again, "clock_ms": 1_000})))
        assert store.push_paths == {"locked": 2, "memo": 1, "memo_missed": 1}
        kept = (await stored(store, club))[("events", first.id)].values()
        assert kept["notes"] == "first" and kept["clock_ms"] == 1_000
    finally:
        await store.close()
        await engine.dispose()


async def test_a_change_the_server_records_moves_the_memo_aside(
    instances: tuple[PostgresChangeStore, PostgresChangeStore], clock: FakeClock
) -> None:
    store, _ = instances
    club, match, home, away = (uuid.uuid4() for _ in range(4))
    a = ScriptedDevice("phone-a", clock)
    await store.push(club, a.push(*new_match_changes(a, match, home, away)))
    async with store.transaction() as conn:
        await store.record(conn, club, [ServerWrite("teams", home, {"color": "#114477"})])
    await store.push(club, a.push(a.change("teams", home, {"short_name": "RIV"})))
    assert store.push_paths == {"locked": 2}
    team = (await stored(store, club))[("teams", home)].values()
    assert team["color"] == "#114477" and team["short_name"] == "RIV"


async def test_a_push_on_the_memo_waits_for_a_writer_holding_the_clubs_lock(
    instances: tuple[PostgresChangeStore, PostgresChangeStore],
    clock: FakeClock,
    settings: Settings,
) -> None:
    """Another instance's locked push that has read the head and not yet written it: the
    memo's head still matches, but the memo's write must not slip in before it."""
    store, _ = instances
    club, match, home, away = (uuid.uuid4() for _ in range(4))
    a = ScriptedDevice("phone-a", clock)
    await store.push(club, a.push(*new_match_changes(a, match, home, away)))
    writer = await asyncpg.connect(settings.database_url.replace("+asyncpg", "", 1))
    try:
        await writer.execute(f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(club)})")
        async with anyio.create_task_group() as group:
            group.start_soon(store.push, club, a.push(goal(a, match, home)))
            # PostgreSQL announces no lock wait: its lock table is read until one shows.
            with anyio.fail_after(10):
                while not await writer.fetchval(WAITING_FOR_A_LOCK):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert store.push_paths == {"locked": 2, "memo_missed": 1}
            await writer.execute("COMMIT")
    finally:
        await writer.close()
    assert await stored(store, club) == await merged_from_log(store, club)


async def test_two_instances_pushing_at_once_store_the_merge_of_the_log(
    instances: tuple[PostgresChangeStore, PostgresChangeStore], clock: FakeClock
) -> None:
    """Coaches on two instances push in bursts at once, each set editing shared records and
    adding its own: whichever path each push took, the stored records are exactly the merge
    of the log, and the log is dense."""
    club, match, home, away = (uuid.uuid4() for _ in range(4))
    setup = ScriptedDevice("setup", clock)
    await instances[0].push(club, setup.push(*new_match_changes(setup, match, home, away)))
    await instances[1].push(club, setup.push(goal(setup, match, home)))
    shared: list[tuple[TableName, uuid.UUID]] = [
        ("teams", home),
        ("teams", away),
        ("matches", match),
    ]
    fields = {"teams": ["notes", "color", "short_name"], "matches": ["venue", "notes"]}
    rng = random.Random(7)

    async def coach(n: int) -> None:
        device = ScriptedDevice(f"phone-{n}", clock)
        store = instances[n % 2]
        for _ in range(BURSTS):
            for _ in range(BURST):
                table, record = rng.choice(shared)
                edit = device.change(
                    table, record, {rng.choice(fields[table]): f"{n}{rng.random()}"}
                )
                await store.push(club, device.push(edit, goal(device, match, home)))
            await anyio.sleep(rng.random() * 0.02)

    async with anyio.create_task_group() as group:
        for n in range(COACHES):
            group.start_soon(coach, n)
    pushes = COACHES * BURSTS * BURST
    merged = await merged_from_log(instances[0], club)
    assert len(merged) == 4 + pushes  # the teams, the match and every goal
    assert await stored(instances[0], club) == merged
    paths = instances[0].push_paths + instances[1].push_paths
    assert paths["memo"] + paths["locked"] == 2 + pushes
    print(paths)
