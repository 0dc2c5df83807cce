"""The Python client against the real server app: round trips, conflicts, faults, restarts."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.replica import Replica
from protocol.schema import Scalar
from protocol.wire import (
    ConflictRecord,
    PushRequest,
    PushResponse,
)
from sync_server import tables
from sync_server.app import create_app
from sync_server.settings import Settings
from tests.client_fixtures import AccountClub, ForwardingTransport, sign_up_club
from touchline_client import (
    InvalidChange,
    RetryPolicy,
    SyncDevice,
    SyncRejected,
    SyncTransport,
    SyncUnavailable,
)

pytestmark = pytest.mark.anyio

HOUR_MS = 3_600_000
SIGNUP: dict[str, int] = {"server": 1}
"""What a club's log holds once its owner signed up: the team, written by the server."""


@dataclass
class ManualClock:
    """Device time the test moves; it starts at real time because the server's clock is real."""

    now: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def advance(self, ms: int = 1_000) -> None:
        self.now += ms

    def skewed(self, skew_ms: int) -> SkewedClock:
        return SkewedClock(self, skew_ms)


@dataclass
class SkewedClock:
    base: ManualClock
    skew_ms: int

    def __call__(self) -> int:
        return self.base.now + self.skew_ms


class FaultyTransport(ForwardingTransport):
    """The real transport, except that it can lose the answer to a push the server stored,
    or pretend the server stored only part of a set (a sequence gap naming a later seq)."""

    def __init__(self, inner: SyncTransport) -> None:
        super().__init__(inner)
        self.lose_push_answers = 0
        self.busy_for_s: list[float] = []
        """Refuse the next pushes as a busy server would: 503 with these Retry-Afters."""
        self.store_only_first: int | None = None
        self.requests: list[PushRequest] = []
        self.answers: list[PushResponse] = []

    async def push(self, request: PushRequest) -> PushResponse:
        self.requests.append(request)
        if self.busy_for_s:
            raise SyncUnavailable(
                "503 database-unavailable", status=503, retry_after_s=self.busy_for_s.pop(0)
            )
        if self.store_only_first is not None and len(request.changes) > self.store_only_first:
            head = msgspec.structs.replace(
                request, changes=request.changes[: self.store_only_first]
            )
            await self.inner.push(head)
            expected = request.changes[0].seq + self.store_only_first
            self.store_only_first = None
            raise SyncRejected(409, {"type": "/problems/sequence-gap", "expected_seq": expected})
        answer = await self.inner.push(request)
        self.answers.append(answer)
        if self.lose_push_answers:
            self.lose_push_answers -= 1
            raise SyncUnavailable("the connection dropped before the answer arrived")
        return answer


@dataclass
class Club:
    """One club on the server (its owner signed up) and the devices its coaches use, each
    logged in as itself."""

    http: AsyncTestClient[Litestar]
    engine: AsyncEngine
    account: AccountClub
    clock: ManualClock = field(default_factory=ManualClock)
    match_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @classmethod
    async def sign_up(cls, http: AsyncTestClient[Litestar], engine: AsyncEngine) -> Club:
        return cls(http, engine, await sign_up_club(http, device_id="coach-a"))

    @property
    def id(self) -> uuid.UUID:
        return self.account.id

    def transport(self, name: str) -> FaultyTransport:
        return FaultyTransport(self.account.transport(name))

    def device(
        self, name: str, *, skew_ms: int = 0, state_path: Path | None = None
    ) -> tuple[SyncDevice, FaultyTransport]:
        transport = self.transport(name)
        device = SyncDevice(
            name, transport, now_ms=self.clock.skewed(skew_ms), state_path=state_path
        )
        return device, transport

    async def server_view(self) -> Replica:
        """Everything the server holds, as a brand-new device that pulls it all sees it."""
        observer = SyncDevice("observer", self.transport("observer"), now_ms=self.clock.skewed(0))
        await observer.pull(limit=7)
        return observer.confirmed

    async def log_rows(self, device_id: str) -> int:
        log = tables.change_log
        query = select(func.count()).where(log.c.club_id == self.id, log.c.device_id == device_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    def goal(self, device: SyncDevice, **extra: str | int) -> uuid.UUID:
        self.clock.advance()
        return device.create("events", {"match_id": str(self.match_id), "kind": "goal", **extra})


@pytest.fixture
async def http(
    settings: Settings, clean_engine: AsyncEngine
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings, engine=clean_engine)) as client:
        yield client


@pytest.fixture
async def club(http: AsyncTestClient[Litestar], clean_engine: AsyncEngine) -> Club:
    return await Club.sign_up(http, clean_engine)


async def test_push_then_pull_round_trip(club: Club) -> None:
    a, _ = club.device("coach-a")
    b, _ = club.device("coach-b")
    assert await a.pull() == await b.pull() == 1  # the club's team, from the signup
    home = a.create("teams", {"name": "Riverside U10"})
    event = club.goal(a, team_id=str(home), clock_ms=61_000)
    assert a.pending == 2 and a.live("events")[event]["kind"] == "goal"

    assert await a.push() == 2
    assert a.pending == 0 and a.confirmed.snapshot() == a.view().snapshot()
    assert await b.pull() == 2
    assert b.live("events")[event] == {
        "match_id": str(club.match_id), "kind": "goal", "team_id": str(home), "clock_ms": 61_000,
    }  # fmt: skip
    assert b.view().snapshot() == a.view().snapshot() == (await club.server_view()).snapshot()
    assert b.version_vector == {**SIGNUP, "coach-a": 2}
    assert b.clock > a.clock  # receiving moved b's clock past everything it saw
    assert await b.pull() == 0  # caught up


async def test_offline_edits_of_different_fields_both_apply(club: Club) -> None:
    a, _ = club.device("coach-a")
    b, _ = club.device("coach-b")
    event = club.goal(a)
    await a.sync()
    await b.sync()

    club.clock.advance()
    a.update("events", event, {"notes": "volley"})
    club.clock.advance()
    b.update("events", event, {"sentiment": 3, "x": 88.5})
    for device in (a, b, a):
        await device.sync()

    expected: dict[str, Scalar] = {"match_id": str(club.match_id), "kind": "goal"}
    expected |= {"notes": "volley"}
    expected |= {"sentiment": 3, "x": 88.5}
    assert a.live("events")[event] == b.live("events")[event] == expected
    assert a.view().snapshot() == b.view().snapshot()
    assert a.conflicts == b.conflicts == []


async def test_concurrent_edits_of_one_field_converge_and_are_reported(club: Club) -> None:
    heard: dict[str, list[ConflictRecord]] = {"a": [], "b": []}
    a, _ = club.device("coach-a")
    b, pushes_b = club.device("coach-b")
    a.on_conflict, b.on_conflict = heard["a"].append, heard["b"].append
    event = club.goal(a)
    await a.sync()
    await b.sync()

    club.clock.advance()
    a.update("events", event, {"notes": "header"})
    club.clock.advance()
    b.update("events", event, {"notes": "penalty"})
    await b.push()
    await a.push()  # a's write is the one that reveals the conflict
    await b.pull()
    await a.pull()

    assert a.view().snapshot() == b.view().snapshot() == (await club.server_view()).snapshot()
    # b wrote later (greater HLC): its value wins the register on every replica.
    assert a.live("events")[event]["notes"] == "penalty"
    assert pushes_b.answers[-1].conflicts == []
    [conflict] = a.conflicts
    assert (conflict.field, conflict.winner.value, conflict.loser.value) == (
        "notes", "penalty", "header",
    )  # fmt: skip
    assert b.conflicts == [conflict]  # b learned it by pulling
    # Reported once each, although a learned it from its push and again in its pull.
    assert heard == {"a": [conflict], "b": [conflict]}


async def test_seen_is_exact_for_each_run_of_the_outbox(club: Club) -> None:
    a, _ = club.device("coach-a")
    b, pushes_b = club.device("coach-b")
    event = club.goal(a)
    await a.sync()
    await b.sync()

    club.clock.advance()
    b.update("events", event, {"notes": "b before seeing a"})  # concurrent with a's edit
    club.clock.advance()
    a.update("events", event, {"notes": "a"})
    await a.push()
    await b.pull()  # b integrates a's edit and then overwrites it: no conflict for that one
    club.clock.advance()
    b.update("events", event, {"notes": "b after seeing a"})
    await b.push()

    assert [r.seen for r in pushes_b.requests] == [
        {**SIGNUP, "coach-a": 1}, {**SIGNUP, "coach-a": 2},
    ]  # fmt: skip
    [conflict] = b.conflicts
    assert (conflict.winner.value, conflict.loser.value) == ("a", "b before seeing a")
    await a.pull()
    assert a.live("events")[event]["notes"] == "b after seeing a"
    assert a.view().snapshot() == b.view().snapshot()


async def test_a_lost_push_answer_is_resent_without_duplicates(club: Club) -> None:
    a, transport = club.device("coach-a")
    await a.pull()  # the club as it is: its team
    events = [club.goal(a) for _ in range(3)]
    transport.lose_push_answers = 1
    with pytest.raises(SyncUnavailable):
        await a.push()
    assert a.pending == 3  # not acknowledged: the answer never arrived
    assert await club.log_rows("coach-a") == 3  # ... but the server stored the set

    assert await a.push() == 3
    assert (transport.answers[-1].applied, transport.answers[-1].duplicates) == (0, 3)
    assert a.pending == 0 and await club.log_rows("coach-a") == 3
    assert set(a.live("events")) == set(events)
    assert a.view().snapshot() == (await club.server_view()).snapshot()


def waiting_device(
    club: Club, retry: RetryPolicy
) -> tuple[SyncDevice, FaultyTransport, list[float]]:
    """Device ``coach-a`` on a faulty transport whose backoff waits are recorded, not slept."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    transport = club.transport("coach-a")
    device = SyncDevice("coach-a", transport, now_ms=club.clock.skewed(0), sleep=sleep, retry=retry)
    return device, transport, waits


async def test_sync_retries_with_backoff_after_a_lost_answer(club: Club) -> None:
    a, transport, waits = waiting_device(club, RetryPolicy(attempts=4, base_s=0.5, cap_s=2.0))
    club.goal(a)
    transport.lose_push_answers = 2
    result = await a.sync()
    assert result.pushed == 1 and a.pending == 0
    assert len(waits) == 2 and 0 <= waits[0] <= 0.5 and 0 <= waits[1] <= 1.0
    assert await club.log_rows("coach-a") == 1

    club.goal(a)
    transport.lose_push_answers = 4  # more than the policy allows
    with pytest.raises(SyncUnavailable):
        await a.sync()
    assert len(waits) == 2 + 3 and a.pending == 1
    assert await a.push() == 1 and await club.log_rows("coach-a") == 2


async def test_sync_waits_at_least_what_retry_after_asks(club: Club) -> None:
    a, transport, waits = waiting_device(club, RetryPolicy(attempts=4, base_s=0.1, cap_s=0.5))
    club.goal(a)
    transport.busy_for_s = [5.0, 1.0]
    assert (await a.sync()).pushed == 1
    # Never sooner than asked, and spread above it so turned-away phones do not return as one.
    assert 5.0 <= waits[0] <= 7.5 and 1.0 <= waits[1] <= 1.5
    assert await club.log_rows("coach-a") == 1


async def test_a_restarted_device_resends_its_outbox_without_duplicates(
    club: Club, tmp_path: Path
) -> None:
    path = tmp_path / "coach-a.json"
    a, transport = club.device("coach-a", state_path=path)
    b, _ = club.device("coach-b")
    await a.pull()  # the club as it is: its team
    first = [club.goal(a) for _ in range(2)]
    transport.lose_push_answers = 1
    with pytest.raises(SyncUnavailable):
        await a.push()
    before = a.view().snapshot()
    del a  # the process dies; only the file survives

    restarted = SyncDevice.load(path, club.transport("coach-a"), now_ms=club.clock.skewed(0))
    assert restarted.pending == 2 and restarted.view().snapshot() == before
    later = club.goal(restarted)  # gets seq 3: sequences are never reused
    assert restarted.pending_changes[-1].seq == 3
    assert await restarted.push() == 3
    assert await club.log_rows("coach-a") == 3

    again = SyncDevice.load(path, club.transport("coach-a"), now_ms=club.clock.skewed(0))
    assert again.pending == 0 and set(again.live("events")) == {*first, later}
    assert await again.push() == 0
    await b.pull()
    assert b.view().snapshot() == again.view().snapshot()


async def test_a_fast_device_adopts_the_server_restamp(club: Club, settings: Settings) -> None:
    fast, transport = club.device("coach-fast", skew_ms=HOUR_MS)
    b, _ = club.device("coach-b")
    await fast.pull()  # the club as it is: its team
    event = club.goal(fast)
    sent = fast.pending_changes[0].hlc
    await fast.push()

    [restamp] = transport.answers[-1].restamped
    assert restamp.seq == 1 and restamp.hlc < sent
    ceiling = transport.answers[-1].server_time_ms + settings.max_clock_skew_ms
    assert int(restamp.hlc[:15]) <= ceiling
    state = fast.confirmed.state("events", event)
    assert state is not None and state.fields["kind"].hlc == restamp.hlc
    await b.pull()
    assert b.confirmed.snapshot() == fast.confirmed.snapshot()


async def test_an_edit_made_after_seeing_a_fast_write_wins_everywhere(club: Club) -> None:
    fast, _ = club.device("coach-fast", skew_ms=HOUR_MS)
    b, _ = club.device("coach-b")
    event = club.goal(fast, notes="fast")
    await fast.sync()
    await b.sync()

    club.clock.advance()
    b.update("events", event, {"notes": "corrected"})  # b has seen the fast write
    await b.sync()
    await fast.sync()

    assert fast.live("events")[event]["notes"] == "corrected"
    assert b.live("events")[event]["notes"] == "corrected"
    assert fast.view().snapshot() == b.view().snapshot() == (await club.server_view()).snapshot()
    assert fast.conflicts == b.conflicts == []


async def test_reinstating_a_losing_value_reaches_every_device(club: Club) -> None:
    a, _ = club.device("coach-a")
    b, _ = club.device("coach-b")
    c, _ = club.device("coach-c")
    event = club.goal(a)
    for device in (a, b, c):
        await device.sync()
    club.clock.advance()
    a.update("events", event, {"notes": "a's note"})
    club.clock.advance()
    b.update("events", event, {"notes": "b's note"})
    for device in (a, b, c):
        await device.sync()
    [conflict] = c.conflicts
    assert conflict.loser.value == "a's note"

    reinstated = await c.reinstate(conflict.id)
    assert reinstated.reinstated_seq is not None
    assert c.live("events")[event]["notes"] == "a's note"  # merged at once
    for device in (a, b, c):
        await device.sync()
    for device in (a, b, c):
        assert device.live("events")[event]["notes"] == "a's note"
    assert a.view().snapshot() == b.view().snapshot() == c.view().snapshot()
    assert a.view().snapshot() == (await club.server_view()).snapshot()
    assert [x.id for x in a.conflicts] == [conflict.id]  # the reinstatement is no new conflict


async def test_a_gap_beyond_the_first_seq_resends_the_stored_prefix(club: Club) -> None:
    fast, transport = club.device("coach-fast", skew_ms=HOUR_MS)
    b, _ = club.device("coach-b")
    await fast.pull()  # the club as it is: its team
    for _ in range(3):
        club.goal(fast)
    transport.store_only_first = 2  # the server stores 1-2, then the answer says "send 3"
    assert await fast.push() == 3

    assert [[c.seq for c in r.changes] for r in transport.requests] == [[1, 2, 3], [1, 2], [3]]
    assert (transport.answers[0].duplicates, len(transport.answers[0].restamped)) == (2, 2)
    assert await club.log_rows("coach-fast") == 3
    await b.pull()
    assert fast.confirmed.snapshot() == b.confirmed.snapshot()


async def test_a_set_too_large_for_the_server_is_split(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    small = dataclasses.replace(settings, push_max_changes=2)
    async with AsyncTestClient(create_app(small, engine=clean_engine)) as http:
        club = await Club.sign_up(http, clean_engine)
        a, transport = club.device("coach-a")
        for _ in range(5):
            club.goal(a)
        assert await a.push() == 5
        assert [len(r.changes) for r in transport.requests] == [5, 2, 2, 1]
        assert await club.log_rows("coach-a") == 5


async def test_a_match_scoped_pull_does_not_claim_other_matches(club: Club) -> None:
    a, _ = club.device("coach-a")
    b, _ = club.device("coach-b")
    elsewhere = uuid.uuid4()
    here = club.goal(a)
    club.clock.advance()
    there = a.create("events", {"match_id": str(elsewhere), "kind": "corner"})
    last = club.goal(a)
    await a.push()

    assert await b.pull(club.match_id, limit=1) == 2
    assert set(b.live("events")) == {here, last}
    assert b.version_vector == {"coach-a": 1}  # seq 2 (the other match) not integrated yet
    assert await b.pull() == 1 + 3  # club-wide, from the start: the team, and fills the gap
    assert set(b.live("events")) == {here, there, last}
    assert b.version_vector == {**SIGNUP, "coach-a": 3}
    assert await b.pull(club.match_id) == 0


async def test_edits_the_server_would_refuse_are_refused_locally(club: Club) -> None:
    a, _ = club.device("coach-a")
    with pytest.raises(InvalidChange, match="kind: required"):
        a.create("events", {"match_id": str(club.match_id)})
    event = club.goal(a)
    with pytest.raises(InvalidChange, match="match_id: cannot change once set"):
        a.update("events", event, {"match_id": str(uuid.uuid4())})
    with pytest.raises(InvalidChange, match="unknown field"):
        a.update("events", event, {"colour": "red"})
    with pytest.raises(InvalidChange, match="sentiment: must be <= 4"):
        a.update("events", event, {"sentiment": 5})
    with pytest.raises(InvalidChange, match="no such record"):
        a.delete("events", uuid.uuid4())
    with pytest.raises(InvalidChange, match="already exists"):
        a.create("events", {"match_id": str(club.match_id), "kind": "goal"}, record_id=event)
    assert a.pending == 1 and a.last_seq == 1
    a.delete("events", event)
    a.restore("events", event)
    assert await a.push() == 3


async def test_a_refusal_is_raised_with_its_problem(club: Club) -> None:
    transport = club.account.transport("coach-a")
    impostor = SyncDevice("coach-a", transport, now_ms=club.clock.skewed(0))
    original = SyncDevice("coach-a", transport, now_ms=club.clock.skewed(0))
    club.goal(original)
    await original.push()
    club.goal(impostor)  # another install using the same device id: seq 1 again
    with pytest.raises(SyncRejected) as refused:
        await impostor.push()
    assert (refused.value.status, refused.value.code) == (409, "sequence-reused")
    assert impostor.pending == 1
