"""The change store contract: every implementation, on every database, behaves the same."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import asyncpg
import msgspec
import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.ingest import PushRejected
from protocol.merge import DELETED
from protocol.wire import Change, PullRequest
from sync_server import tables
from sync_server.db import create_engine
from sync_server.settings import Settings
from sync_server.store import Announcement, CommitNotice
from sync_server.store_pg import PostgresChangeStore, open_store
from sync_server.store_sql import SqlChangeStore
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio

SKEW_MS = 60_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["native", "native-pooled", "core"])
async def store(
    request: pytest.FixtureRequest, clean_engine: AsyncEngine, settings: Settings, clock: FakeClock
) -> AsyncIterator[SqlChangeStore]:
    """Every implementation: the database's native store, unpooled and on a pooled engine
    (on PostgreSQL, pushes then go through the store's own connection pool), and the generic
    Core store (on SQLite all are the same class, so it simply runs several times)."""
    if request.param == "core":
        yield SqlChangeStore(clean_engine, max_skew_ms=SKEW_MS, clock=clock)
        return
    engine = create_engine(settings) if request.param == "native-pooled" else clean_engine
    native = open_store(engine, max_skew_ms=SKEW_MS, clock=clock)
    try:
        yield native
    finally:
        await native.close()
        if engine is not clean_engine:
            await engine.dispose()


@pytest.fixture
def club() -> uuid.UUID:
    return uuid.uuid4()


async def count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def two_coaches_and_a_goal(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> tuple[ScriptedDevice, ScriptedDevice, uuid.UUID, Change]:
    """Coach A sets up a match and logs a goal; coach B pulls it. Returns a, b, the match
    and the goal."""
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(a, match, home, away)
    event = goal(a, match, home)
    await store.push(club, a.push(*setup, event))
    for c in (await store.pull(club, PullRequest(device_id="phone-b"))).changes:
        b.saw(c.hlc, c.device_id, c.seq)
    return a, b, match, event


async def test_push_then_pull_delivers_in_server_order(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ack = await store.push(club, a.push(*new_match_changes(a, match, home, away)))
    assert (ack.acked_seq, ack.applied, ack.duplicates, ack.cursor) == (3, 3, 0, 3)

    pulled = await store.pull(club, PullRequest(device_id=b.device_id))
    assert [c.server_seq for c in pulled.changes] == [1, 2, 3]
    assert [c.seq for c in pulled.changes] == [1, 2, 3]
    assert pulled.cursor == 3 and not pulled.has_more
    assert pulled.changes[2].fields["home_team_id"] == str(home)

    own = await store.pull(club, PullRequest(device_id=a.device_id))
    assert own.changes == [] and own.cursor == 3


async def test_pull_pages_until_done(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a = ScriptedDevice("phone-a", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    changes = new_match_changes(a, match, home, away) + [goal(a, match, home) for _ in range(7)]
    await store.push(club, a.push(*changes))
    seqs: list[int] = []
    cursor = 0
    while True:
        page = await store.pull(club, PullRequest(device_id="reader", cursor=cursor, limit=4))
        seqs += [c.server_seq for c in page.changes]
        cursor = page.cursor
        if not page.has_more:
            break
    assert seqs == list(range(1, 11))


async def test_retried_push_changes_nothing(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, clean_engine: AsyncEngine
) -> None:
    a = ScriptedDevice("phone-a", clock)
    request = a.push(*new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
    first = await store.push(club, request)
    again = await store.push(club, request)
    assert (again.applied, again.duplicates, again.acked_seq) == (0, 3, 3)
    assert again.cursor == first.cursor
    assert await count(clean_engine, tables.change_log) == 3


async def test_partly_resent_set_applies_only_the_new_tail(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a = ScriptedDevice("phone-a", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    made = new_match_changes(a, match, home, away)
    await store.push(club, a.push(*made[:2]))
    ack = await store.push(club, a.push(*made))
    assert (ack.applied, ack.duplicates, ack.acked_seq) == (1, 2, 3)


async def test_sequence_gap_is_refused_naming_the_expected_seq(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, clean_engine: AsyncEngine
) -> None:
    a = ScriptedDevice("phone-a", clock)
    made = new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    await store.push(club, a.push(made[0]))
    with pytest.raises(PushRejected) as refused:
        await store.push(club, a.push(made[2]))
    assert refused.value.status == 409
    assert refused.value.code == "sequence-gap"
    assert refused.value.extensions["expected_seq"] == 2
    assert await count(clean_engine, tables.change_log) == 1


async def test_invalid_change_applies_nothing_of_its_set(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, clean_engine: AsyncEngine
) -> None:
    a = ScriptedDevice("phone-a", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    made = new_match_changes(a, match, home, away)
    bad = goal(a, match, home, sentiment=9)
    with pytest.raises(PushRejected) as refused:
        await store.push(club, a.push(*made, bad))
    assert refused.value.status == 422
    assert refused.value.extensions["errors"][0]["field"] == "$.changes[3].fields.sentiment"
    for table in (tables.change_log, tables.DOMAIN_TABLES["teams"], tables.devices):
        assert await count(clean_engine, table) == 0


async def test_reused_sequence_with_other_content_is_refused(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a = ScriptedDevice("phone-a", clock)
    made = new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    await store.push(club, a.push(made[0]))
    impostor = ScriptedDevice("phone-a", clock, skew_ms=5)
    with pytest.raises(PushRejected) as refused:
        await store.push(club, impostor.push(impostor.change("teams", uuid.uuid4(), {"name": "X"})))
    assert (refused.value.status, refused.value.code) == (409, "sequence-reused")


async def test_concurrent_same_field_edits_converge_and_are_ledgered(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a, b, match, event = await two_coaches_and_a_goal(store, clock, club)
    scorer_a, scorer_b = str(uuid.uuid4()), str(uuid.uuid4())

    clock.now += 1_000  # both edit offline, neither sees the other
    edit_a = a.change("events", event.id, {"player_id": scorer_a, "notes": "left foot"})
    clock.now += 1_000
    edit_b = b.change("events", event.id, {"player_id": scorer_b, "sentiment": 3})
    await store.push(club, b.push(edit_b))
    ack = await store.push(club, a.push(edit_a))

    assert len(ack.conflicts) == 1
    conflict = ack.conflicts[0]
    assert (conflict.field, conflict.match_id) == ("player_id", match)
    assert conflict.winner.value == scorer_b and conflict.winner.device_id == "phone-b"
    assert conflict.loser.value == scorer_a and conflict.loser.device_id == "phone-a"
    ledger = await store.conflicts(club, match_id=match, since=0)
    assert [c.id for c in ledger] == [conflict.id]

    async with store._engine.connect() as conn:  # the projection holds the merged record
        events = tables.DOMAIN_TABLES["events"]
        row = (await conn.execute(select(events).where(events.c.id == event.id))).one()
    assert str(row.player_id) == scorer_b  # later HLC wins the register
    assert row.notes == "left foot" and row.sentiment == 3  # other fields both apply


async def test_an_edit_made_after_seeing_a_fast_device_wins(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    fast = ScriptedDevice("phone-fast", clock, skew_ms=3_600_000)
    b = ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(fast, match, home, away)
    event = goal(fast, match, home, notes="fast")
    ack = await store.push(club, fast.push(*setup, event))
    assert len(ack.restamped) == 4  # capped at server time + skew
    for c in (await store.pull(club, PullRequest(device_id="phone-b"))).changes:
        b.saw(c.hlc, c.device_id, c.seq)
    clock.now += 10
    ack_b = await store.push(club, b.push(b.change("events", event.id, {"notes": "corrected"})))
    assert ack_b.conflicts == []
    clock.now += 10
    # The fast device writes again without having seen the correction: a real conflict.
    late = await store.push(club, fast.push(fast.change("events", event.id, {"notes": "fast2"})))
    assert len(late.conflicts) == 1
    # Its hour-fast clock does not win every conflict: capped at server time + skew, it loses
    # to a device with a true clock that writes (concurrently) two minutes later.
    clock.now += 120_000
    true = ScriptedDevice("phone-c", clock)
    ack_c = await store.push(
        club, true.push(true.change("events", event.id, {"notes": "true clock"}))
    )
    assert [x.winner.value for x in ack_c.conflicts] == ["true clock"]
    async with store._engine.connect() as conn:
        events = tables.DOMAIN_TABLES["events"]
        notes = (await conn.execute(select(events.c.notes).where(events.c.id == event.id))).scalar()
    assert notes == "true clock"


async def test_server_clock_stepping_back_keeps_causal_order(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    fast = ScriptedDevice("phone-fast", clock, skew_ms=3_600_000)
    b = ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(fast, match, home, away)
    event = goal(fast, match, home, notes="fast")
    await store.push(club, fast.push(*setup, event))
    for c in (await store.pull(club, PullRequest(device_id="phone-b"))).changes:
        b.saw(c.hlc, c.device_id, c.seq)
    clock.now -= 5_000  # the server's clock steps back (NTP correction, another instance)
    ack = await store.push(club, b.push(b.change("events", event.id, {"notes": "corrected"})))
    assert ack.conflicts == []
    events = tables.DOMAIN_TABLES["events"]
    async with store._engine.connect() as conn:
        notes = (await conn.execute(select(events.c.notes).where(events.c.id == event.id))).scalar()
    assert notes == "corrected"


async def test_resent_seq_with_other_fields_is_refused_not_dropped(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a = ScriptedDevice("phone-a", clock)
    team = a.change("teams", uuid.uuid4(), {"name": "Riverside"})
    await store.push(club, a.push(team))
    altered = msgspec.structs.replace(team, fields={"name": "Riverside FC"})
    with pytest.raises(PushRejected) as refused:
        await store.push(club, a.push(altered))
    assert (refused.value.status, refused.value.code) == (409, "sequence-reused")


async def test_delete_and_restore_are_recorded_and_reversible(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, clean_engine: AsyncEngine
) -> None:
    a, b, _, event = await two_coaches_and_a_goal(store, clock, club)
    clock.now += 5
    await store.push(club, a.push(a.change("events", event.id, op="delete")))
    await store.push(club, b.push(b.change("events", event.id, {"notes": "header"})))
    events = tables.DOMAIN_TABLES["events"]
    async with clean_engine.connect() as conn:
        row = (await conn.execute(select(events).where(events.c.id == event.id))).one()
    assert row.is_deleted and row.deleted_at is not None and row.notes == "header"
    clock.now += 5
    await store.push(club, a.push(a.change("events", event.id, op="restore")))
    async with clean_engine.connect() as conn:
        row = (await conn.execute(select(events).where(events.c.id == event.id))).one()
    assert not row.is_deleted and row.notes == "header"


async def test_concurrent_delete_and_restore_conflict_is_ledgered(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(a, match, home, away)
    event = goal(a, match, home)
    await store.push(club, a.push(*setup, event))
    deleted = a.change("events", event.id, op="delete")
    await store.push(club, a.push(deleted))
    for c in (await store.pull(club, PullRequest(device_id="phone-b"))).changes:
        b.saw(c.hlc, c.device_id, c.seq)
    clock.now += 5
    a.change("events", event.id, op="restore")  # made offline, never pushed here
    ack = await store.push(club, b.push(b.change("events", event.id, op="restore")))
    assert ack.conflicts == []  # b saw the delete: a causal restore, no conflict


async def test_reinstating_a_lost_value_supersedes_the_winner(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a, b, _, event = await two_coaches_and_a_goal(store, clock, club)
    clock.now += 10
    await store.push(club, b.push(b.change("events", event.id, {"notes": "B's note"})))
    clock.now -= 5  # a's edit has the earlier clock, so it loses
    ack = await store.push(club, a.push(a.change("events", event.id, {"notes": "A's note"})))
    conflict = ack.conflicts[0]
    assert conflict.loser.value == "A's note"

    done = await store.reinstate(club, conflict.id)
    assert done.conflict.reinstated_seq == done.change.server_seq
    assert done.change.fields == {"notes": "A's note"} and done.change.device_id == "server"
    assert done.change.hlc > conflict.winner.hlc
    events = tables.DOMAIN_TABLES["events"]
    async with store._engine.connect() as conn:
        notes = (await conn.execute(select(events.c.notes).where(events.c.id == event.id))).scalar()
    assert notes == "A's note"
    ledger = await store.conflicts(club, match_id=None, since=0)
    assert ledger[0].reinstated_seq == done.change.server_seq
    # a device that had already pulled the conflict learns of the reinstatement by pulling
    later = await store.pull(club, PullRequest(device_id="phone-b", cursor=conflict.server_seq))
    assert [(c.id, c.reinstated_seq) for c in later.conflicts] == [
        (conflict.id, done.change.server_seq)
    ]
    with pytest.raises(PushRejected) as missing:
        await store.reinstate(club, uuid.uuid4())
    assert missing.value.status == 404


async def test_pull_scoped_to_one_match(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    a = ScriptedDevice("phone-a", clock)
    home, away = uuid.uuid4(), uuid.uuid4()
    first, second = uuid.uuid4(), uuid.uuid4()
    changes = new_match_changes(a, first, home, away)
    changes.append(
        a.change("matches", second, {"home_team_id": str(home), "away_team_id": str(away)})
    )
    changes += [goal(a, first, home), goal(a, second, away)]
    # an update that does not repeat match_id still belongs to its match
    changes.append(a.change("events", changes[-1].id, {"notes": "tap-in"}))
    await store.push(club, a.push(*changes))
    page = await store.pull(club, PullRequest(device_id="viewer", match_id=second))
    assert [c.table for c in page.changes] == ["matches", "events", "events"]
    assert page.cursor == len(changes)


async def test_clubs_are_isolated(store: SqlChangeStore, clock: FakeClock) -> None:
    club_a, club_b = uuid.uuid4(), uuid.uuid4()
    a = ScriptedDevice("phone", clock)
    b = ScriptedDevice("phone", clock)  # same device id and record id in another club
    shared_id = uuid.uuid4()
    await store.push(club_a, a.push(a.change("teams", shared_id, {"name": "A"})))
    await store.push(club_b, b.push(b.change("teams", shared_id, {"name": "B"})))
    pulled_b = await store.pull(club_b, PullRequest(device_id="reader"))
    assert [c.fields["name"] for c in pulled_b.changes] == ["B"]
    pulled_a = await store.pull(club_a, PullRequest(device_id="reader"))
    assert [c.fields["name"] for c in pulled_a.changes] == ["A"]


async def test_concurrent_pushes_keep_the_log_dense(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = ScriptedDevice("setup", clock)
    await store.push(club, setup.push(*new_match_changes(setup, match, home, away)))
    devices = [ScriptedDevice(f"phone-{i}", clock) for i in range(6)]

    async def log_goals(device: ScriptedDevice) -> None:
        for _ in range(4):
            await store.push(club, device.push(*(goal(device, match, home) for _ in range(5))))

    async with anyio.create_task_group() as group:
        for device in devices:
            group.start_soon(log_goals, device)
    pulled = await store.pull(club, PullRequest(device_id="reader", limit=1000))
    assert [c.server_seq for c in pulled.changes] == list(range(1, 3 + 6 * 4 * 5 + 1))
    per_device = {
        d.device_id: [c.seq for c in pulled.changes if c.device_id == d.device_id] for d in devices
    }
    assert all(seqs == list(range(1, 21)) for seqs in per_device.values())


async def test_reserved_server_device_cannot_push(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID
) -> None:
    impostor = ScriptedDevice("server", clock)
    with pytest.raises(PushRejected) as refused:
        await store.push(club, impostor.push(impostor.change("teams", uuid.uuid4(), {"name": "X"})))
    assert refused.value.status == 403


def test_deleted_register_name_is_stable() -> None:
    assert DELETED == "_deleted"  # part of the wire contract (conflict records)


async def test_a_push_sends_the_relays_notice_inside_its_commit(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, settings: Settings
) -> None:
    """Asked for a commit notice (the relay's bus is the store's own PostgreSQL), the native
    PostgreSQL store sends it with the push's commit and says so in the announcement; a refused
    push sends nothing. Other stores leave the notice to the relay's bus."""
    native = isinstance(store, PostgresChangeStore)
    channel = f"touchline_test_{uuid.uuid4().hex[:12]}"
    heard: asyncio.Queue[str] = asyncio.Queue()
    announced: list[Announcement] = []
    store.announce = announced.append
    store.commit_notice = CommitNotice(channel, lambda a: f"{a.after}-{a.seq}")
    listener = None
    if native:
        listener = await asyncpg.connect(settings.database_url.replace("+asyncpg", "", 1))
        await listener.add_listener(channel, lambda _c, _p, _ch, payload: heard.put_nowait(payload))
    try:
        a = ScriptedDevice("phone-a", clock)
        match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await store.push(club, a.push(*new_match_changes(a, match, home, away)))
        gap = a.push(goal(a, match, home))
        gap = msgspec.structs.replace(
            gap, changes=[msgspec.structs.replace(gap.changes[0], seq=a.seq + 5)]
        )
        with pytest.raises(PushRejected):
            await store.push(club, gap)
        b = ScriptedDevice("phone-b", clock)
        await store.push(club, b.push(goal(b, match, home)))
        assert [x.notified for x in announced] == [native, native]
        if listener is not None:
            with anyio.fail_after(10):
                assert [await heard.get(), await heard.get()] == ["0-3", "3-4"]
    finally:
        if listener is not None:
            await listener.close()


async def test_a_push_stores_every_kind_of_value_as_sent(
    store: SqlChangeStore, clock: FakeClock, club: uuid.UUID, clean_engine: AsyncEngine
) -> None:
    """Text, integers, fractions, booleans, dates, timestamps and ids land in their columns
    unchanged, and an absent field stays empty."""
    a = ScriptedDevice("phone-a", clock)
    match, home, away, player = (uuid.uuid4() for _ in range(4))
    setup = new_match_changes(a, match, home, away)
    await store.push(
        club,
        a.push(
            *setup,
            a.change("players", player, {"full_name": "Zoë O'Neil \"Zo\"", "dob": "2015-03-09"}),
            a.change("lineup", uuid.uuid4(), {"match_id": str(match), "player_id": str(player),
                                              "start_min": 12.5, "end_min": 90}),
            goal(a, match, home, player_id=str(player), x=0.25, sentiment=-2,
                 created_at="2026-11-21T10:15:30.250Z"),
        ),
    )  # fmt: skip
    async with clean_engine.connect() as conn:
        named = (
            await conn.execute(select(tables.players).where(tables.players.c.id == player))
        ).one()
        placed = (await conn.execute(select(tables.lineup))).one()
        event = (await conn.execute(select(tables.events))).one()
    assert (named.full_name, named.dob.isoformat(), named.squad_number) == (
        'Zoë O\'Neil "Zo"',
        "2015-03-09",
        None,
    )
    assert (placed.player_id, placed.start_min, placed.end_min) == (player, 12.5, 90.0)
    assert (event.player_id, event.x, event.y, event.sentiment) == (player, 0.25, None, -2)
    # SQLite keeps no zone: its timestamps are UTC by the store's convention.
    created = event.created_at.replace(tzinfo=event.created_at.tzinfo or UTC)
    assert created == datetime(2026, 11, 21, 10, 15, 30, 250_000, tzinfo=UTC)
    assert not event.is_deleted and event.match_id == match
