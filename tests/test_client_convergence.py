"""Several Python clients and the real server, on and offline: they always converge.

A Hypothesis state machine drives three devices of one club through local edits (create, edit
the same events, delete and restore, match clock presses), connectivity changes, pushes whose
answers get lost or that are sent twice, small-page pulls (club-wide or one match), restarts
from saved state, skewed and advancing clocks and reinstated conflicts. At the end everyone
comes online and syncs until nothing moves; then every device holds exactly what the server
holds, every change is in the server's log exactly once, and every device knows every conflict.

Hypothesis rules are synchronous, so the machine runs in a worker thread and reaches the
test's event loop (where the app, its engine and the devices live) through
``anyio.from_thread.run``.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol import merge
from protocol.ingest import RecordKey
from protocol.schema import CLOCK_ACTIONS, Scalar
from protocol.wire import (
    PushRequest,
    PushResponse,
)
from sync_server import tables
from sync_server.app import create_app
from sync_server.settings import Settings
from tests.client_fixtures import ForwardingTransport, sign_up_club
from touchline_client import HttpTransport, SyncDevice, SyncUnavailable

pytestmark = pytest.mark.anyio

DEVICES = ("phone-a", "phone-b", "phone-c")
MATCHES = (uuid.UUID(int=0xA1), uuid.UUID(int=0xB2))
HOUR_MS = 3_600_000
KINDS = ("goal", "save", "corner", "foul")
PLAYERS = tuple(str(uuid.UUID(int=n)) for n in (7, 9, 10))

FLEET_SETTINGS = hypothesis_settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

device_index = st.integers(0, len(DEVICES) - 1)
# Few values per field, so devices often write the same field, and sometimes the same value.
field_edits: st.SearchStrategy[tuple[str, Scalar]] = st.one_of(
    st.tuples(st.just("notes"), st.sampled_from(["far post", "deflected", None])),
    st.tuples(st.just("sentiment"), st.integers(-4, 4)),
    st.tuples(st.just("x"), st.integers(0, 100)),
    st.tuples(st.just("kind"), st.sampled_from(KINDS)),
    st.tuples(st.just("player_id"), st.sampled_from(PLAYERS)),
)

_Result = TypeVar("_Result")


async def _no_wait(_seconds: float) -> None:
    """Backoff waits cost nothing here; the loop is what is under test."""


class FaultyTransport(ForwardingTransport):
    """The real transport, whose next push can lose its answer or be sent twice."""

    def __init__(self, inner: HttpTransport) -> None:
        super().__init__(inner)
        self.lose_answer = False
        self.send_twice = False

    async def push(self, request: PushRequest) -> PushResponse:
        lose, twice = self.lose_answer, self.send_twice
        self.lose_answer = self.send_twice = False
        if twice:
            await self.inner.push(request)
        answer = await self.inner.push(request)
        if lose:
            raise SyncUnavailable("the connection dropped before the answer arrived")
        return answer


@dataclass(frozen=True)
class Server:
    http: AsyncTestClient[Litestar]
    engine: AsyncEngine
    state_dir: Path


class DeviceFleet(RuleBasedStateMachine):
    """Three devices of one club; every example gets a fresh club on the shared server.

    The club's owner signs up on the first device; the others log in as themselves, so the
    club's log starts with the team the signup recorded.
    """

    server: ClassVar[Server]

    def __init__(self) -> None:
        super().__init__()
        self.account = self._call(functools.partial(sign_up_club, self.server.http, DEVICES[0]))
        self.club = self.account.id
        self.advanced_ms = 0
        self.skews = [0] * len(DEVICES)
        self.online = [True] * len(DEVICES)
        self.made: list[set[RecordKey]] = [set() for _ in DEVICES]
        self.next_record = 0
        self.transports = [FaultyTransport(self.account.transport(name)) for name in DEVICES]
        self.paths = [self.server.state_dir / f"{self.club}-{name}.json" for name in DEVICES]
        self.devices = [
            SyncDevice(
                name,
                self.transports[index],
                now_ms=functools.partial(self._now_ms, index),
                sleep=_no_wait,
                rng=random.Random(index),
                state_path=self.paths[index],
            )
            for index, name in enumerate(DEVICES)
        ]

    def _now_ms(self, index: int) -> int:
        return time.time_ns() // 1_000_000 + self.advanced_ms + self.skews[index]

    def _call(self, work: Callable[[], Coroutine[Any, Any, _Result]]) -> _Result:
        return anyio.from_thread.run(work)

    def _new_id(self) -> uuid.UUID:
        # Ids from a counter, not uuid4: Hypothesis replays an example with the same picks.
        self.next_record += 1
        return uuid.UUID(int=(0xE << 120) + self.next_record)

    def _pick(self, index: int, table: str, pick: int) -> uuid.UUID | None:
        known = sorted(record_id for record_id, _ in self.devices[index].view().records(table))
        return known[pick % len(known)] if known else None

    @initialize()
    def share_a_few_events(self) -> None:
        """Every device starts with the same events, so later edits often collide."""
        first = self.devices[0]
        for match in MATCHES:
            for kind in KINDS[:2]:
                record_id = first.create(
                    "events", {"match_id": str(match), "kind": kind}, record_id=self._new_id()
                )
                self.made[0].add(("events", record_id))
        for device in self.devices:
            self._call(device.sync)

    # -- local edits (online or not) --------------------------------------------------------

    @rule(index=device_index, match=st.sampled_from(MATCHES), kind=st.sampled_from(KINDS))
    def log_event(self, index: int, match: uuid.UUID, kind: str) -> None:
        record_id = self.devices[index].create(
            "events", {"match_id": str(match), "kind": kind}, record_id=self._new_id()
        )
        self.made[index].add(("events", record_id))

    @rule(
        index=device_index,
        match=st.sampled_from(MATCHES),
        action=st.sampled_from(CLOCK_ACTIONS),
    )
    def press_match_clock(self, index: int, match: uuid.UUID, action: str) -> None:
        at = datetime.fromtimestamp(self._now_ms(index) / 1000, UTC).isoformat()
        record_id = self.devices[index].create(
            "clock_actions",
            {"match_id": str(match), "action": action, "at": at},
            record_id=self._new_id(),
        )
        self.made[index].add(("clock_actions", record_id))

    @rule(index=device_index, pick=st.integers(0, 999), edit=field_edits)
    def edit_event(self, index: int, pick: int, edit: tuple[str, Scalar]) -> None:
        record_id = self._pick(index, "events", pick)
        if record_id is not None:
            name, value = edit
            self.devices[index].update("events", record_id, {name: value})

    @rule(index=device_index, pick=st.integers(0, 999))
    def delete_or_restore_event(self, index: int, pick: int) -> None:
        device = self.devices[index]
        record_id = self._pick(index, "events", pick)
        if record_id is None:
            return
        state = device.view().state("events", record_id)
        if state is not None and state.is_deleted:
            device.restore("events", record_id)
        else:
            device.delete("events", record_id)

    # -- connectivity, clocks, restarts -----------------------------------------------------

    @rule(index=device_index, online=st.booleans())
    def set_online(self, index: int, online: bool) -> None:
        self.online[index] = online

    @rule(ms=st.integers(1, 20_000))
    def advance_time(self, ms: int) -> None:
        self.advanced_ms += ms

    @rule(index=device_index, skew=st.sampled_from((-HOUR_MS, 0, HOUR_MS)))
    def skew_clock(self, index: int, skew: int) -> None:
        self.skews[index] = skew

    @rule(index=device_index)
    def restart(self, index: int) -> None:
        """The process dies and starts again from what it saved."""
        before = self.devices[index]
        after = SyncDevice.load(
            self.paths[index],
            self.transports[index],
            now_ms=functools.partial(self._now_ms, index),
            sleep=_no_wait,
            rng=random.Random(index),
        )
        assert after.view().snapshot() == before.view().snapshot()
        assert after.pending_changes == before.pending_changes
        assert (after.last_seq, after.cursor, after.clock) == (
            before.last_seq, before.cursor, before.clock,
        )  # fmt: skip
        assert after.version_vector == before.version_vector
        assert after.conflicts == before.conflicts
        self.devices[index] = after

    # -- talking to the server (online only) ------------------------------------------------

    @rule(
        index=device_index,
        lose_answer=st.booleans(),
        send_twice=st.booleans(),
        max_changes=st.integers(1, 4),
    )
    def push(self, index: int, lose_answer: bool, send_twice: bool, max_changes: int) -> None:
        if not self.online[index]:
            return
        transport = self.transports[index]
        transport.lose_answer, transport.send_twice = lose_answer, send_twice
        push = functools.partial(self.devices[index].push, max_changes=max_changes)
        try:
            self._call(push)
        except SyncUnavailable:
            assert lose_answer
        assert self.devices[index].pending == 0 or lose_answer

    @rule(
        index=device_index,
        limit=st.integers(1, 3),
        match=st.sampled_from((None, *MATCHES)),
    )
    def pull(self, index: int, limit: int, match: uuid.UUID | None) -> None:
        if self.online[index]:
            self._call(functools.partial(self.devices[index].pull, match, limit))

    @rule(index=device_index)
    def sync(self, index: int) -> None:
        if self.online[index]:
            self._call(self.devices[index].sync)

    @rule(index=device_index, pick=st.integers(0, 999))
    def reinstate(self, index: int, pick: int) -> None:
        device = self.devices[index]
        if self.online[index] and device.conflicts:
            conflict = device.conflicts[pick % len(device.conflicts)]
            self._call(functools.partial(device.reinstate, conflict.id))

    @invariant()
    def nothing_made_locally_is_lost(self) -> None:
        for device, made in zip(self.devices, self.made, strict=True):
            view = device.view()
            assert all(view.state(table, record_id) is not None for table, record_id in made)

    # -- the end: everyone online, synced until quiet ---------------------------------------

    def teardown(self) -> None:
        self.online = [True] * len(DEVICES)
        for _ in range(len(DEVICES) + 2):
            moved = 0
            for device in self.devices:
                result = self._call(device.sync)
                moved += result.pushed + result.pulled
            if moved == 0:
                break
        else:
            raise AssertionError("the devices never stopped exchanging changes")
        self._call(self._check_converged)

    async def _check_converged(self) -> None:
        transport = self.account.transport("observer")
        observer = SyncDevice("observer", transport, now_ms=functools.partial(self._now_ms, 0))
        await observer.pull(limit=50)
        expected = observer.confirmed.snapshot()
        for device in self.devices:
            assert device.pending == 0, device.device_id
            assert device.view().snapshot() == expected, device.device_id
        assert await self._stored_records() == expected

        made = set().union(*self.made)
        assert made <= set(expected)
        logged = await self._logged_per_device()
        for device in self.devices:
            # Every change of every device is in the log exactly once, none missing.
            seq = device.last_seq
            assert logged.get(device.device_id, (0, 0, 0)) == (seq, seq, seq), device.device_id

        ledger = {c.id for c in await self.transports[0].conflicts()}
        for device in self.devices:
            assert {c.id for c in device.conflicts} == ledger, device.device_id

    async def _stored_records(self) -> dict[RecordKey, merge.RecordState]:
        """The merged records as the server's database holds them."""
        stored: dict[RecordKey, merge.RecordState] = {}
        async with self.server.engine.connect() as conn:
            for name, table in tables.DOMAIN_TABLES.items():
                query = select(table.c.id, table.c.sync_state).where(table.c.club_id == self.club)
                for row in await conn.execute(query):
                    stored[(name, row.id)] = merge.decode_state(row.sync_state)
        return stored

    async def _logged_per_device(self) -> dict[str, tuple[int, int, int]]:
        """Per device: rows in the change log, distinct sequences, highest sequence."""
        log = tables.change_log
        query = (
            select(
                log.c.device_id,
                func.count(),
                func.count(log.c.device_seq.distinct()),
                func.max(log.c.device_seq),
            )
            .where(log.c.club_id == self.club)
            .group_by(log.c.device_id)
        )
        async with self.server.engine.connect() as conn:
            rows = await conn.execute(query)
            return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in rows}


@pytest.mark.slow
async def test_devices_converge_with_the_server(
    settings: Settings, clean_engine: AsyncEngine, tmp_path: Path
) -> None:
    # Every example signs up a club and logs three devices in, all from the test client's one
    # address: far more logins a minute than the default limit lets through.
    many_logins = dataclasses.replace(settings, login_attempts_per_minute=100_000)
    async with AsyncTestClient(create_app(many_logins, engine=clean_engine)) as http:

        class Fleet(DeviceFleet):
            server = Server(http, clean_engine, tmp_path)

        run = functools.partial(run_state_machine_as_test, Fleet, settings=FLEET_SETTINGS)
        await anyio.to_thread.run_sync(run)
