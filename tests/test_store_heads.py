"""The PostgreSQL store's pushes from a known club head: one round trip when this instance
wrote the club last, and never a wrong merge when it did not."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol import merge
from protocol.hlc import Hlc
from protocol.ingest import ServerWrite
from protocol.wire import PullRequest
from sync_server import tables
from sync_server.club_heads import ClubHeads
from sync_server.store_pg import PostgresChangeStore
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = [
    pytest.mark.anyio,
    # What is tested here exists on PostgreSQL only.
    pytest.mark.parametrize(
        "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
]

SKEW_MS = 60_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def club() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
async def instances(
    clean_engine: AsyncEngine, clock: FakeClock
) -> AsyncIterator[tuple[PostgresChangeStore, PostgresChangeStore]]:
    """Two server instances' stores on one database."""
    a = PostgresChangeStore(clean_engine, max_skew_ms=SKEW_MS, clock=clock)
    b = PostgresChangeStore(clean_engine, max_skew_ms=SKEW_MS, clock=clock)
    yield a, b
    await a.close()
    await b.close()


async def state_of(engine: AsyncEngine, record_id: uuid.UUID) -> merge.RecordState:
    events = tables.DOMAIN_TABLES["events"]
    async with engine.connect() as conn:
        query = select(events.c.sync_state).where(events.c.id == record_id)
        return merge.decode_state((await conn.execute(query)).scalar_one())


async def test_the_instances_next_push_to_a_club_is_written_from_its_head(
    instances: tuple[PostgresChangeStore, PostgresChangeStore],
    clock: FakeClock,
    club: uuid.UUID,
) -> None:
    store, _ = instances
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.push(club, a.push(*new_match_changes(a, match, home, away)))
    first = goal(a, match, home)
    await store.push(club, a.push(first))
    # Another device of the club, and an edit of a record the head knows.
    await store.push(club, b.push(goal(b, match, away)))
    edit = a.change("events", first.id, {"clock_ms": 61_000})
    pushed = await store.push(club, a.push(edit))
    assert store.pushes_by_path == {"locked": 1, "head": 3}
    assert (pushed.applied, pushed.cursor) == (1, 6)
    pulled = await store.pull(club, PullRequest(device_id="reader"))
    assert [c.server_seq for c in pulled.changes] == [1, 2, 3, 4, 5, 6]
    assert (await state_of(store._engine, first.id)).values()["clock_ms"] == 61_000


async def test_a_head_another_instance_moved_on_falls_back_and_merges_with_its_writes(
    instances: tuple[PostgresChangeStore, PostgresChangeStore],
    clean_engine: AsyncEngine,
    clock: FakeClock,
    club: uuid.UUID,
) -> None:
    """Instance A plans on a head instance B has since moved: A's write must not land, and
    the push, read again under the lock, merges with B's edit instead of overwriting it."""
    one, other = instances
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(a, match, home, away)
    scored = goal(a, match, home)
    await one.push(club, a.push(*setup, scored))
    await other.push(club, b.push(b.change("events", scored.id, {"notes": "deflected"})))
    clock.now += 1
    pushed = await one.push(club, a.push(a.change("events", scored.id, {"clock_ms": 63_000})))
    assert one.pushes_by_path == {"locked": 2, "stale": 1}
    assert (pushed.applied, pushed.cursor) == (1, 6)
    values = (await state_of(clean_engine, scored.id)).values()
    assert (values["kind"], values["notes"], values["clock_ms"]) == ("goal", "deflected", 63_000)
    # And the instance's head is good again.
    await one.push(club, a.push(goal(a, match, home)))
    assert one.pushes_by_path["head"] == 1


async def test_a_record_the_head_let_go_of_is_merged_not_overwritten(
    clean_engine: AsyncEngine, clock: FakeClock, club: uuid.UUID
) -> None:
    """A record the head does not know is taken for new; the write checks that it is."""
    store = PostgresChangeStore(
        clean_engine, max_skew_ms=SKEW_MS, clock=clock, heads=ClubHeads(records_per_club=1)
    )
    a = ScriptedDevice("phone-a", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(a, match, home, away)
    scored = goal(a, match, home, notes="header")
    await store.push(club, a.push(*setup, scored))
    await store.push(club, a.push(goal(a, match, away)))  # the head keeps only this one
    # Every field an event needs, so that it could be new; all but the notes.
    edit = {**scored.fields, "clock_ms": 64_000}
    del edit["notes"]
    await store.push(club, a.push(a.change("events", scored.id, edit)))
    assert store.pushes_by_path == {"locked": 2, "head": 1, "stale": 1}
    values = (await state_of(clean_engine, scored.id)).values()
    assert (values["kind"], values["notes"], values["clock_ms"]) == ("goal", "header", 64_000)
    await store.close()


async def test_a_device_the_head_let_go_of_has_its_resent_set_found_a_duplicate(
    clean_engine: AsyncEngine, clock: FakeClock, club: uuid.UUID
) -> None:
    """A device the head does not know is taken for new; the write checks that it is, so a
    set it re-sends is not stored twice."""
    store = PostgresChangeStore(
        clean_engine, max_skew_ms=SKEW_MS, clock=clock, heads=ClubHeads(devices_per_club=1)
    )
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = a.push(*new_match_changes(a, match, home, away))
    await store.push(club, setup)
    await store.push(club, b.push(goal(b, match, away)))  # the head keeps only phone-b
    again = await store.push(club, setup)
    assert (again.applied, again.duplicates, again.cursor) == (0, 3, 4)
    assert store.pushes_by_path == {"locked": 2, "head": 1, "stale": 1}
    pulled = await store.pull(club, PullRequest(device_id="reader"))
    assert len(pulled.changes) == 4
    await store.close()


async def test_a_change_the_server_records_lets_go_of_the_head(
    clean_engine: AsyncEngine, clock: FakeClock, club: uuid.UUID
) -> None:
    """The instance's own server-made changes move the club on: its next push is read under
    the lock at once, without a wasted write."""
    store = PostgresChangeStore(clean_engine, max_skew_ms=SKEW_MS, clock=clock)
    a = ScriptedDevice("phone-a", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.push(club, a.push(*new_match_changes(a, match, home, away)))
    async with store.transaction() as conn:
        await store.record(conn, club, [ServerWrite("teams", home, {"name": "Riverside"})])
    pushed = await store.push(club, a.push(goal(a, match, home)))
    assert store.pushes_by_path == {"locked": 2}
    assert pushed.cursor == 5
    await store.close()


async def test_pushes_through_two_instances_at_once_keep_the_log_dense(
    instances: tuple[PostgresChangeStore, PostgresChangeStore],
    clean_engine: AsyncEngine,
    clock: FakeClock,
    club: uuid.UUID,
) -> None:
    """Six devices push at once, half through each instance, while the server records
    changes of its own: every change is stored once, in a dense log, and every record ends
    as the generic store (no heads) would leave it."""
    one, other = instances
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = ScriptedDevice("setup", clock)
    changes = new_match_changes(setup, match, home, away)
    shared = goal(setup, match, home)
    await one.push(club, setup.push(*changes, shared))
    devices = [ScriptedDevice(f"phone-{i}", clock) for i in range(6)]

    async def log(device: ScriptedDevice, store: PostgresChangeStore) -> None:
        for round_ in range(6):
            changes = [goal(device, match, home) for _ in range(2)]
            changes.append(device.change("events", shared.id, {"notes": device.device_id}))
            await store.push(club, device.push(*changes))
            if round_ % 2:
                await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for index, device in enumerate(devices):
            group.start_soon(log, device, one if index % 2 else other)
    pulled = await one.pull(club, PullRequest(device_id="reader", limit=1000))
    assert [c.server_seq for c in pulled.changes] == list(range(1, 4 + 6 * 6 * 3 + 1))
    for device in devices:
        assert [c.seq for c in pulled.changes if c.device_id == device.device_id] == list(
            range(1, 19)
        )
    # Some pushes were planned on a head (whether it held or had gone stale).
    tried = one.pushes_by_path + other.pushes_by_path
    assert tried["head"] + tried["stale"] > 0
    # The record every device wrote holds the greatest write by (HLC, device id): none of
    # them saw another's, so the tie-break decides.
    edits = [c for c in pulled.changes if c.id == shared.id and "notes" in c.fields]
    last = max(edits, key=lambda c: (Hlc.parse(c.hlc), c.device_id))
    assert (await state_of(clean_engine, shared.id)).values()["notes"] == last.fields["notes"]
