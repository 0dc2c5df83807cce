"""Several devices and a server, in memory, going on and offline: everything converges.

The server is ``plan_push`` plus a log; each device has a hybrid clock on a shared fake wall
clock (skewed by up to two hours), a local replica, an outbox and a pull cursor. Pushes and
their responses get lost, old pushes are replayed, pulls stop after any page. At the end
every device comes online, pushes and pulls everything, and all replicas must equal the
server's state.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from protocol import derive
from protocol.hlc import Hlc, HybridClock
from protocol.ingest import DeviceCursor, RecordKey, StoredChange, plan_push, record_keys
from protocol.merge import RecordState, Write, apply
from protocol.replica import Replica
from protocol.schema import CLOCK_ACTIONS, Scalar, TableName
from protocol.vector_clock import VersionVector, covers
from protocol.wire import (
    Change,
    LoggedChange,
    Op,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
)

START_MS = 1_772_359_200_000  # 2026-03-01T10:00:00Z
MAX_SKEW_MS = 60_000
HOUR = 3_600_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEVICE_IDS = ("tablet-1", "phone-2", "phone-3")
MATCH_ID = uuid.UUID("7a0c5e2b-0000-4000-8000-00000000000a")
HOME = "7a0c5e2b-0000-4000-8000-0000000000a1"
AWAY = "7a0c5e2b-0000-4000-8000-0000000000a2"
PLAYERS = tuple(f"7a0c5e2b-0000-4000-8000-0000000001{n:02d}" for n in range(3))
KINDS = ("goal", "own_goal", "save", "foul", "corner")

EDITABLE: dict[str, st.SearchStrategy[Scalar]] = {
    "notes": st.sampled_from([None, "", "great run", "check the video"]),
    "kind": st.sampled_from(KINDS),
    "sentiment": st.none() | st.integers(-4, 4),
    "player_id": st.none() | st.sampled_from(PLAYERS),
    "team_id": st.sampled_from([HOME, AWAY]),
}
SKEWS = st.sampled_from([0, 0, 5_000, -5_000, HOUR, -HOUR, 2 * HOUR, -2 * HOUR]) | st.integers(
    -2 * HOUR, 2 * HOUR
)


class WallClock:
    """Real time in the model; only rules move it, and only forwards."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms


def iso(epoch_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds")


class ModelServer:
    """The server's sync core: ``plan_push`` over an in-memory log and record states."""

    def __init__(self, wall: WallClock) -> None:
        self.wall = wall
        self.log: list[LoggedChange] = []
        self.cursors: dict[str, DeviceCursor] = {}
        self.stored: dict[str, dict[int, StoredChange]] = defaultdict(dict)
        self.records: dict[RecordKey, RecordState] = {}
        self.club_max: Hlc | None = None

    def push(self, request: PushRequest) -> PushResponse:
        now = self.wall.now_ms
        device_id = request.device_id
        plan = plan_push(
            request,
            device=self.cursors.get(device_id, DeviceCursor()),
            stored=dict(self.stored[device_id]),
            records={key: self.records[key] for key in record_keys(request) if key in self.records},
            now_ms=now,
            max_skew_ms=MAX_SKEW_MS,
            club_max=self.club_max,
        )
        for accepted in plan.accepted:
            c, hlc = accepted.change, accepted.hlc.encode()
            self.log.append(
                LoggedChange(server_seq=len(self.log) + 1, device_id=device_id, seq=c.seq,
                             hlc=hlc, table=c.table, id=c.id, op=c.op, fields=dict(c.fields))
            )  # fmt: skip
            self.stored[device_id][c.seq] = StoredChange(
                c.seq, c.hlc, hlc, c.table, c.id, c.op, dict(c.fields)
            )
        self.records.update(plan.states)
        self.cursors[device_id] = plan.device
        self.club_max = plan.club_max
        for happened, label in ((plan.duplicates, "duplicates acknowledged"),
                                (plan.restamped, "changes restamped"),
                                (plan.conflicts, "conflicts detected")):  # fmt: skip
            if happened:
                event(f"push: {label}")
        return PushResponse(
            device_id=device_id,
            acked_seq=plan.device.last_seq,
            applied=len(plan.accepted),
            duplicates=plan.duplicates,
            cursor=len(self.log),
            restamped=plan.restamped,
            conflicts=[],
            server_time_ms=now,
        )

    def pull(self, request: PullRequest) -> PullResponse:
        page: list[LoggedChange] = []
        cursor = request.cursor
        for logged in self.log[request.cursor :]:
            if len(page) == request.limit:
                break
            cursor = logged.server_seq
            if request.include_own or logged.device_id != request.device_id:
                page.append(logged)
        else:
            cursor = len(self.log)
        return PullResponse(
            changes=page,
            conflicts=[],
            cursor=cursor,
            has_more=cursor < len(self.log),
            server_time_ms=self.wall.now_ms,
        )


class ModelDevice:
    """A device: local clock, replica, outbox, what it pulled and what the server acked."""

    def __init__(self, device_id: str, wall: WallClock, skew_ms: int) -> None:
        self.device_id = device_id
        self.wall = wall
        self.skew_ms = skew_ms
        self.clock = HybridClock(self.local_ms)
        self.online = True
        self.next_seq = 1
        self.outbox: list[Change] = []
        self.seen_at: dict[int, VersionVector] = {}
        """The version vector when each own change was made."""
        self.acked: dict[int, tuple[TableName, uuid.UUID, Write]] = {}
        """Own changes the server acknowledged, with their effective HLC."""
        self.received: dict[tuple[str, int], LoggedChange] = {}
        self.cursor = 0
        self.sent: list[PushRequest] = []
        self.replica = Replica()

    def local_ms(self) -> int:
        return self.wall.now_ms + self.skew_ms

    def seen(self) -> VersionVector:
        vector: VersionVector = {}
        for device_id, seq in self.received:
            if device_id != self.device_id and seq > vector.get(device_id, 0):
                vector[device_id] = seq
        return vector

    def make(
        self, table: TableName, record_id: uuid.UUID, op: Op, fields: dict[str, Scalar]
    ) -> None:
        """A local change: applied to the replica at once and queued for the server."""
        hlc = self.clock.now().encode()
        made = Change(seq=self.next_seq, hlc=hlc, table=table, id=record_id, op=op, fields=fields)
        self.seen_at[made.seq] = self.seen()
        self.next_seq += 1
        self.outbox.append(made)
        self.replica.apply_write(table, record_id, self.own_write(made, hlc))

    def own_write(self, change: Change, hlc: str) -> Write:
        return Write(self.device_id, change.seq, hlc, change.op, dict(change.fields))

    def request(self, count: int) -> PushRequest:
        changes = self.outbox[:count]
        request = PushRequest(
            device_id=self.device_id, changes=changes, seen=self.seen_at[changes[0].seq]
        )
        self.sent.append(request)
        return request

    def on_push_response(self, request: PushRequest, response: PushResponse) -> None:
        effective = {restamp.seq: restamp.hlc for restamp in response.restamped}
        for change in request.changes:
            if change.seq <= response.acked_seq and change.seq not in self.acked:
                hlc = effective.get(change.seq, change.hlc)
                self.acked[change.seq] = (change.table, change.id, self.own_write(change, hlc))
        self.settle()

    def on_pull_response(self, response: PullResponse) -> None:
        for logged in response.changes:
            self.received[(logged.device_id, logged.seq)] = logged
            self.clock.receive(Hlc.parse(logged.hlc))
        self.cursor = response.cursor
        self.settle()

    def settle(self) -> None:
        """Drop acknowledged changes from the outbox and rebuild the replica: pulled changes
        and acknowledged own changes at their effective HLCs, then the outbox at local HLCs.

        An own change pulled back from the log (its push response was lost) counts as
        acknowledged once every earlier one is, so the outbox stays a run of consecutive
        sequences (a pull without own changes may have skipped earlier ones)."""
        while self.outbox:
            head = self.outbox[0]
            logged = self.received.get((self.device_id, head.seq))
            if logged is not None and head.seq not in self.acked:
                write = Write(self.device_id, logged.seq, logged.hlc, logged.op, logged.fields)
                self.acked[head.seq] = (logged.table, logged.id, write)
            if head.seq not in self.acked:
                break
            self.outbox.pop(0)
        assert not any(change.seq in self.acked for change in self.outbox)
        assert [c.seq for c in self.outbox] == list(
            range(self.next_seq - len(self.outbox), self.next_seq)
        )
        replica = Replica()
        for logged in self.received.values():
            replica.apply(logged)
        for table, record_id, write in self.acked.values():
            replica.apply_write(table, record_id, write)
        for change in self.outbox:
            replica.apply_write(change.table, change.id, self.own_write(change, change.hlc))
        self.replica = replica

    def known_events(self) -> list[uuid.UUID]:
        return sorted(record_id for record_id, _ in self.replica.records("events"))


def fold(log: Iterable[LoggedChange]) -> dict[RecordKey, RecordState]:
    replica = Replica()
    for logged in log:
        replica.apply(logged)
    return replica.snapshot()


def derived(replica: Replica, now_ms: int) -> tuple[derive.Score, derive.ClockState]:
    match = replica.state("matches", MATCH_ID)
    match_values = match.values() if match is not None else {}
    period_format = match_values.get("period_format")
    actions = [state for _, state in replica.records("clock_actions")]
    return (
        derive.score(match_values, replica.live("events").values()),
        derive.clock(
            actions,
            period_format=period_format if isinstance(period_format, str) else None,
            now_ms=now_ms,
        ),
    )


@settings(stateful_step_count=50)
class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.wall = WallClock(START_MS)
        self.server = ModelServer(self.wall)
        self.devices: list[ModelDevice] = []
        self.created: dict[uuid.UUID, str] = {}
        """Every event any device created, and by whom."""
        self.next_id = 1

    @initialize(skews=st.lists(SKEWS, min_size=len(DEVICE_IDS), max_size=len(DEVICE_IDS)))
    def start(self, skews: list[int]) -> None:
        self.devices = [
            ModelDevice(device_id, self.wall, skew)
            for device_id, skew in zip(DEVICE_IDS, skews, strict=True)
        ]
        # Before kick-off: one device sets the match up with a couple of events, and every
        # device syncs, so that from the first step all of them can edit the same records.
        self.devices[0].make(
            "matches",
            MATCH_ID,
            "upsert",
            {"home_team_id": HOME, "away_team_id": AWAY, "period_format": "half"},
        )
        for kind in ("goal", "save"):
            self.create_event(0, kind, HOME, None, None)
        for model in self.devices:
            self.sync_device(model)

    def new_id(self) -> uuid.UUID:
        self.next_id += 1
        return uuid.UUID(int=(0x5EED << 64) + self.next_id)

    # -- local edits --------------------------------------------------------------------------

    @rule(
        device=st.integers(0, len(DEVICE_IDS) - 1),
        kind=EDITABLE["kind"],
        team=EDITABLE["team_id"],
        notes=EDITABLE["notes"],
        player=EDITABLE["player_id"],
    )
    def create_event(
        self, device: int, kind: Scalar, team: Scalar, notes: Scalar, player: Scalar
    ) -> None:
        event_id = self.new_id()
        fields = {"match_id": str(MATCH_ID), "kind": kind, "team_id": team, "notes": notes,
                  "player_id": player}  # fmt: skip
        self.devices[device].make("events", event_id, "upsert", fields)
        self.created[event_id] = DEVICE_IDS[device]

    @rule(device=st.integers(0, len(DEVICE_IDS) - 1), data=st.data())
    def edit_event(self, device: int, data: st.DataObject) -> None:
        known = self.devices[device].known_events()
        if not known:
            return
        event_id = data.draw(st.sampled_from(known), label="event")
        names = data.draw(
            st.sets(st.sampled_from(["notes", "notes", "kind", *sorted(EDITABLE)]), min_size=1),
            label="fields",
        )
        fields = {name: data.draw(EDITABLE[name], label=name) for name in sorted(names)}
        self.devices[device].make("events", event_id, "upsert", fields)

    @rule(
        device=st.integers(0, len(DEVICE_IDS) - 1),
        op=st.sampled_from(["delete", "restore"]),
        data=st.data(),
    )
    def delete_or_restore_event(self, device: int, op: Op, data: st.DataObject) -> None:
        known = self.devices[device].known_events()
        if not known:
            return
        event_id = data.draw(st.sampled_from(known), label="event")
        self.devices[device].make("events", event_id, op, {})

    @rule(
        device=st.integers(0, len(DEVICE_IDS) - 1),
        action=st.sampled_from(CLOCK_ACTIONS),
        period=st.none() | st.integers(1, 4),
    )
    def clock_action(self, device: int, action: str, period: int | None) -> None:
        model = self.devices[device]
        fields: dict[str, Scalar] = {
            "match_id": str(MATCH_ID),
            "action": action,
            "at": iso(model.local_ms()),
            "period_number": period,
        }
        model.make("clock_actions", self.new_id(), "upsert", fields)

    # -- the network --------------------------------------------------------------------------

    @rule(device=st.integers(0, len(DEVICE_IDS) - 1), online=st.booleans())
    def set_online(self, device: int, online: bool) -> None:
        self.devices[device].online = online

    @rule(
        device=st.integers(0, len(DEVICE_IDS) - 1),
        count=st.integers(1, 6),
        fate=st.sampled_from(["delivered", "delivered", "request lost", "response lost"]),
    )
    def push(self, device: int, count: int, fate: str) -> None:
        model = self.devices[device]
        if not model.online or not model.outbox:
            return
        request = model.request(count)
        if fate == "request lost":
            return
        response = self.push_to_server(model, request)
        if fate == "delivered":
            model.on_push_response(request, response)

    @rule(
        device=st.integers(0, len(DEVICE_IDS) - 1),
        data=st.data(),
        response_lost=st.booleans(),
    )
    def replay_old_push(self, device: int, data: st.DataObject, response_lost: bool) -> None:
        model = self.devices[device]
        if not model.online or not model.sent:
            return
        request = data.draw(st.sampled_from(model.sent), label="replayed")
        response = self.push_to_server(model, request)
        if not response_lost:
            model.on_push_response(request, response)

    @rule(
        device=st.integers(0, len(DEVICE_IDS) - 1),
        limit=st.integers(1, 6),
        pages=st.integers(1, 3),
        include_own=st.booleans(),
        last_response_lost=st.booleans(),
    )
    def pull(
        self, device: int, limit: int, pages: int, include_own: bool, last_response_lost: bool
    ) -> None:
        model = self.devices[device]
        if not model.online:
            return
        for page in range(pages):
            response = self.server.pull(
                PullRequest(device_id=model.device_id, cursor=model.cursor, limit=limit,
                            include_own=include_own)
            )  # fmt: skip
            if last_response_lost and page == pages - 1:
                return
            model.on_pull_response(response)
            if not response.has_more:
                return

    @rule(device=st.integers(0, len(DEVICE_IDS) - 1))
    def sync(self, device: int) -> None:
        """What an app does when signal returns: push the whole outbox, pull everything."""
        model = self.devices[device]
        if model.online:
            self.sync_device(model)

    def sync_device(self, model: ModelDevice) -> None:
        if model.outbox:
            request = model.request(len(model.outbox))
            model.on_push_response(request, self.push_to_server(model, request))
        while True:
            response = self.server.pull(
                PullRequest(device_id=model.device_id, cursor=model.cursor, limit=7)
            )
            model.on_pull_response(response)
            if not response.has_more:
                break

    def push_to_server(self, model: ModelDevice, request: PushRequest) -> PushResponse:
        """Push, then check causality on what was applied: a write whose author had seen the
        register's current write (pulled it before making the change) takes the register."""
        states = dict(self.server.records)
        first_new = len(self.server.log)
        response = self.server.push(request)
        for logged in self.server.log[first_new:]:
            key = (logged.table, logged.id)
            current = states.get(key)
            write = Write(logged.device_id, logged.seq, logged.hlc, logged.op, logged.fields)
            merged = apply(current, write)
            seen = model.seen_at[logged.seq]
            for name, version in write.versions():
                before = None if current is None else dict(current.registers()).get(name)
                if before is not None and covers(seen, before.device_id, before.seq):
                    event("push: causal overwrite")
                    assert dict(merged.registers())[name] == version, (name, before, version)
            states[key] = merged
        return response

    # -- time ---------------------------------------------------------------------------------

    @rule(
        ms=st.sampled_from([1, 40, 1_000, MAX_SKEW_MS, 10 * 60_000, HOUR]) | st.integers(1, 10**5)
    )
    def advance_time(self, ms: int) -> None:
        self.wall.now_ms += ms

    @rule(device=st.integers(0, len(DEVICE_IDS) - 1), skew=SKEWS)
    def reset_device_clock(self, device: int, skew: int) -> None:
        """The device's clock is corrected (or mis-set): physical time may jump backwards."""
        self.devices[device].skew_ms = skew

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def log_is_dense_per_device_and_without_repeats(self) -> None:
        seqs: dict[str, list[int]] = defaultdict(list)
        for position, logged in enumerate(self.server.log, start=1):
            assert logged.server_seq == position
            seqs[logged.device_id].append(logged.seq)
        for device_id, device_seqs in seqs.items():
            assert device_seqs == list(range(1, len(device_seqs) + 1)), device_id
            assert self.server.cursors[device_id].last_seq == len(device_seqs)

    @invariant()
    def server_state_is_the_merge_of_its_log(self) -> None:
        assert fold(self.server.log) == self.server.records

    @invariant()
    def acknowledged_changes_are_in_the_log_at_their_effective_hlc(self) -> None:
        logged = {(c.device_id, c.seq): c for c in self.server.log}
        for model in self.devices:
            for seq, (table, record_id, write) in model.acked.items():
                stored = logged[(model.device_id, seq)]
                assert (stored.table, stored.id, stored.hlc) == (table, record_id, write.hlc)
            for (device_id, seq), received in model.received.items():
                assert logged[(device_id, seq)] == received

    @invariant()
    def no_acknowledged_event_is_lost(self) -> None:
        for model in self.devices:
            for table, record_id, write in model.acked.values():
                if table == "events" and write.op == "upsert" and "match_id" in write.fields:
                    assert ("events", record_id) in self.server.records

    @invariant()
    def devices_hold_dense_prefixes_of_other_devices(self) -> None:
        for model in self.devices:
            for device_id, upto in model.seen().items():
                assert all((device_id, seq) in model.received for seq in range(1, upto + 1))

    def teardown(self) -> None:
        if not self.devices:
            return
        for model in self.devices:
            model.online = True
            self.sync_device(model)
            assert not model.outbox
        for model in self.devices:
            self.sync_device(model)
        expected = self.server.records
        assert expected == fold(self.server.log)
        for model in self.devices:
            assert model.replica.snapshot() == expected, model.device_id
        for event_id, author in self.created.items():
            assert ("events", event_id) in expected, f"event {event_id} of {author} lost"
        server_replica = Replica()
        for (table, record_id), state in expected.items():
            server_replica.put_state(table, record_id, state)
        event(f"log of {len(self.server.log) // 10 * 10}+ changes")
        now = self.wall.now_ms
        results = {derived(model.replica, now) for model in self.devices}
        assert results == {derived(server_replica, now)}


TestSync = SyncMachine.TestCase
