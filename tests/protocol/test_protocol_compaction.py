"""Compacting a match's log keeps every replica's state exact (PROTOCOL.md §6.6).

Random match logs (three devices, a match record, events and clock actions, edits, deletes
and restores, HLCs strictly increasing per device as the server stamps them): the compacted
log folds to the full log's state from nothing, and on top of any prefix of the full log (a
device that went offline at any point and pulls from its old cursor). Re-sent changes whose
entries were dropped are still duplicates. Then the whole sync model of
``test_protocol_convergence`` runs with the server compacting its log at any moment.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from protocol.compaction import (
    CompactionRefused,
    EntryId,
    compact,
    entry_id,
    fold,
    log_size,
    match_status,
    plan_compaction,
    refusal,
    superseded,
    with_stand_ins,
)
from protocol.hlc import Hlc
from protocol.ingest import (
    DeviceCursor,
    PushPlan,
    PushRejected,
    RecordKey,
    StoredChange,
    plan_push,
    record_keys,
)
from protocol.merge import RecordState
from protocol.replica import Replica
from protocol.schema import Scalar, TableName
from protocol.wire import (
    Change,
    LoggedChange,
    Op,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
)
from tests.protocol.test_protocol_convergence import (
    DEVICE_IDS,
    HOUR,
    MAX_SKEW_MS,
    ModelServer,
    SyncMachine,
    WallClock,
)

MATCH = uuid.UUID("6d1f0c2e-0000-4000-8000-00000000000a")
HOME = "6d1f0c2e-0000-4000-8000-0000000000a1"
AWAY = "6d1f0c2e-0000-4000-8000-0000000000a2"
DEVICES = ("phone-a", "phone-b", "server")
EVENTS = tuple(uuid.UUID(f"6d1f0c2e-0000-4000-8000-0000000001{n:02d}") for n in range(4))
ACTIONS = tuple(uuid.UUID(f"6d1f0c2e-0000-4000-8000-0000000002{n:02d}") for n in range(3))
RECORDS: tuple[tuple[TableName, uuid.UUID], ...] = (
    ("matches", MATCH),
    *(("events", e) for e in EVENTS),
    *(("clock_actions", a) for a in ACTIONS),
)
BASE_MS = 1_772_359_200_000
NOW_MS = BASE_MS + 10_000_000

EDITS: dict[str, dict[str, st.SearchStrategy[Scalar]]] = {
    "matches": {
        "period_format": st.sampled_from(["half", "quarter"]),
        "notes": st.sampled_from([None, "", "windy"]),
        "home_team_id": st.just(HOME),
    },
    "events": {
        "kind": st.sampled_from(["goal", "own_goal", "save"]),
        "team_id": st.sampled_from([HOME, AWAY]),
        "notes": st.sampled_from([None, "", "great run", "check the video"]),
        "sentiment": st.none() | st.integers(-4, 4),
    },
    "clock_actions": {
        "action": st.sampled_from(["start", "end_period", "start_period", "finish", "abandon"]),
        "at": st.sampled_from(["2026-03-01T10:00:00Z", "2026-03-01T10:50:00Z"]),
        "period_number": st.none() | st.integers(1, 2),
    },
}


DEVICE = st.sampled_from(DEVICES)
RECORD = st.sampled_from(RECORDS)
LATER_OP: st.SearchStrategy[Op] = st.sampled_from(
    ["upsert", "upsert", "upsert", "delete", "restore"]
)
EDITED = {
    table: st.sets(st.sampled_from(sorted(names)), max_size=3) for table, names in EDITS.items()
}
WALL = st.integers(0, 30)
LOGICAL = st.integers(0, 1)


@st.composite
def match_logs(draw: st.DrawFn, max_size: int = 30) -> list[LoggedChange]:
    """A match's log as the server would hold it: dense sequences per device, effective HLCs
    strictly increasing per device, every record created by an upsert with its required
    fields (a match record may be created with none), then edited, deleted or restored."""
    size = draw(st.integers(0, max_size), label="size")
    seqs: dict[str, int] = defaultdict(int)
    last: dict[str, Hlc] = {}
    created: set[tuple[str, uuid.UUID]] = set()
    log: list[LoggedChange] = []
    for server_seq in range(1, size + 1):
        device = draw(DEVICE)
        table, record_id = draw(RECORD)
        op: Op = "upsert"
        fields: dict[str, Scalar] = {}
        if (table, record_id) not in created:
            created.add((table, record_id))
            if table == "events":
                fields = {"match_id": str(MATCH), "kind": "goal", "team_id": HOME}
            elif table == "clock_actions":
                fields = {"match_id": str(MATCH), "action": "start", "at": "2026-03-01T10:00:00Z"}
        else:
            op = draw(LATER_OP)
        if op == "upsert":
            for name in sorted(draw(EDITED[table])):
                fields[name] = draw(EDITS[table][name])
        hlc = Hlc(BASE_MS + draw(WALL), draw(LOGICAL))
        if device in last and hlc <= last[device]:
            hlc = last[device].successor()
        last[device] = hlc
        seqs[device] += 1
        log.append(
            LoggedChange(
                server_seq=server_seq,
                device_id=device,
                seq=seqs[device],
                hlc=hlc.encode(),
                table=table,
                id=record_id,
                op=op,
                fields=fields,
            )
        )
    return log


def replay(*parts: Sequence[LoggedChange]) -> dict[RecordKey, RecordState]:
    replica = Replica()
    for part in parts:
        for entry in part:
            replica.apply(entry)
    return replica.snapshot()


def after(
    entries: Sequence[LoggedChange], cursor: int, *, but: str | None = None
) -> list[LoggedChange]:
    """What a pull from ``cursor`` delivers, without the entries of device ``but``."""
    return [entry for entry in entries if entry.server_seq > cursor and entry.device_id != but]


# -- the pure compaction ------------------------------------------------------------------------


@given(match_logs(), st.data())
def test_compacted_log_keeps_every_replica_exact(
    log: list[LoggedChange], data: st.DataObject
) -> None:
    """The compacted log folds to the full log's state, from nothing and on top of any prefix
    of the full log, whether the pull includes the device's own entries or not (they are all
    acknowledged, so the device holds them at their effective HLC). Kept entries are the
    originals, in order; the entries in ``keep`` (restamped) always stay; the score's events
    and the clock's status are unchanged; compacting is idempotent and incremental."""
    ids = [entry_id(entry) for entry in log]
    keep = frozenset(
        data.draw(st.sets(st.sampled_from(ids), max_size=3), label="keep") if ids else ()
    )
    kept = compact(log, keep=keep)
    full = fold(log)
    assert fold(kept) == full
    event(f"kept {len(kept) * 10 // max(len(log), 1) * 10}% of the entries")

    device = data.draw(DEVICE, label="returning device")
    own = [entry for entry in log if entry.device_id == device]
    for cursor in range(len(log) + 1):
        assert replay(log[:cursor], after(kept, cursor)) == full, cursor
        assert replay(log[:cursor], own, after(kept, cursor, but=device)) == full, cursor
        assert replay(log[:cursor], kept) == full, cursor

    originals = {entry_id(entry): entry for entry in log}
    assert all(originals[entry_id(entry)] is entry for entry in kept)
    assert [entry.server_seq for entry in kept] == sorted(entry.server_seq for entry in kept)
    assert keep <= {entry_id(entry) for entry in kept}
    assert log_size(kept) == log_size(originals[entry_id(entry)] for entry in kept)
    assert log_size(kept).bytes <= log_size(log).bytes

    whole, compacted = Replica(), Replica()
    for entry in log:
        whole.apply(entry)
    for entry in kept:
        compacted.apply(entry)
    assert match_status(MATCH, whole.snapshot()) == match_status(MATCH, compacted.snapshot())
    assert whole.live("events") == compacted.live("events")

    assert compact(kept, keep=keep) == kept
    split = data.draw(st.integers(0, len(log)), label="split")
    assert compact(compact(log[:split], keep=keep) + log[split:], keep=keep) == kept


@given(match_logs())
def test_every_kept_entry_is_needed(log: list[LoggedChange]) -> None:
    """Nothing superfluous stays: without any one kept entry the state would differ."""
    kept = compact(log)
    full = fold(log)
    for index in range(len(kept)):
        assert fold(kept[:index] + kept[index + 1 :]) != full


# -- re-sent changes after a compaction -----------------------------------------------------------


def as_change(entry: LoggedChange) -> Change:
    return Change(
        seq=entry.seq,
        hlc=entry.hlc,
        table=entry.table,
        id=entry.id,
        op=entry.op,
        fields=dict(entry.fields),
    )


def stored_of(entries: Sequence[LoggedChange], device: str) -> dict[int, StoredChange]:
    return {
        entry.seq: StoredChange(
            entry.seq, entry.hlc, entry.hlc, entry.table, entry.id, entry.op, dict(entry.fields)
        )
        for entry in entries
        if entry.device_id == device
    }


@given(match_logs(), DEVICE)
def test_resent_changes_are_duplicates_and_reused_sequences_refused(
    log: list[LoggedChange], device: str
) -> None:
    """A device whose acknowledgements were all lost re-sends its whole history after a
    compaction: every change is a duplicate, whether its entry was kept or dropped. New
    content under a dropped sequence is refused: it would win a register, which a dropped
    entry never does."""
    own = [entry for entry in log if entry.device_id == device]
    if not own:
        return
    kept = compact(log)
    states = fold(log)
    cursor = DeviceCursor(own[-1].seq, Hlc.parse(own[-1].hlc))

    def plan(request: PushRequest) -> PushPlan:
        stored = with_stand_ins(
            request, last_seq=cursor.last_seq, stored=stored_of(kept, device), records=states
        )
        return plan_push(
            request,
            device=cursor,
            stored=stored,
            records={key: states[key] for key in record_keys(request) if key in states},
            now_ms=NOW_MS,
            max_skew_ms=MAX_SKEW_MS,
            club_max=None,
        )

    resent = plan(PushRequest(device_id=device, changes=[as_change(entry) for entry in own]))
    assert (resent.duplicates, resent.accepted, resent.restamped) == (len(own), [], [])

    kept_ids = {entry_id(entry) for entry in kept}
    dropped = [entry for entry in own if entry_id(entry) not in kept_ids]
    targets = [key for key in RECORDS if key[0] in ("events", "matches") and key in states]
    if not dropped or not targets:
        return
    event("a re-sent change was dropped by the compaction")
    impostor = Change(
        seq=dropped[0].seq,
        hlc=max(Hlc.parse(entry.hlc) for entry in log).successor().encode(),
        table=targets[0][0],
        id=targets[0][1],
        fields={"notes": "written again"},
    )
    assert not superseded(device, impostor, states[targets[0]])
    with pytest.raises(PushRejected) as refused:
        plan(PushRequest(device_id=device, changes=[impostor]))
    assert (refused.value.status, refused.value.code) == (409, "sequence-reused")


def test_club_wide_records_never_stand_in() -> None:
    team = Change(
        seq=1,
        hlc=Hlc(BASE_MS).encode(),
        table="teams",
        id=uuid.uuid4(),
        fields={"name": "Riverside"},
    )
    later = LoggedChange(
        server_seq=2,
        device_id="phone-b",
        seq=1,
        hlc=Hlc(BASE_MS + 1).encode(),
        table="teams",
        id=team.id,
        op="upsert",
        fields={"name": "Hillview"},
    )
    assert not superseded("phone-a", team, fold([later])[("teams", team.id)])


# -- the causally stable point --------------------------------------------------------------------


@dataclass
class Script:
    """A tiny match log written by hand."""

    log: list[LoggedChange]

    def write(
        self,
        device: str,
        table: TableName,
        record_id: uuid.UUID,
        op: Op = "upsert",
        **fields: Scalar,
    ) -> LoggedChange:
        seq = 1 + sum(entry.device_id == device for entry in self.log)
        entry = LoggedChange(
            server_seq=len(self.log) + 1,
            device_id=device,
            seq=seq,
            hlc=Hlc(BASE_MS + len(self.log)).encode(),
            table=table,
            id=record_id,
            op=op,
            fields=fields,
        )
        self.log.append(entry)
        return entry

    def clock(self, device: str, action: str) -> None:
        self.write(
            device,
            "clock_actions",
            uuid.uuid4(),
            match_id=str(MATCH),
            action=action,
            at="2026-03-01T10:00:00Z",
        )


def finished_match() -> Script:
    script = Script([])
    script.write("phone-a", "matches", MATCH, home_team_id=HOME, away_team_id=AWAY)
    goal = script.write(
        "phone-a", "events", EVENTS[0], match_id=str(MATCH), kind="goal", team_id=HOME
    )
    script.write("phone-b", "events", goal.id, notes="header")
    script.write("phone-a", "events", goal.id, notes="left foot")
    script.clock("phone-a", "start")
    script.clock("phone-b", "finish")
    return script


def test_a_finished_acknowledged_match_is_stable() -> None:
    script = finished_match()
    assert refusal(MATCH, script.log, acknowledged={"phone-a": 4, "phone-b": 2}) is None
    plan = plan_compaction(
        MATCH,
        script.log,
        acknowledged={"phone-a": 4, "phone-b": 2},
        stored=fold(script.log),
    )
    assert [entry.server_seq for entry in plan.dropped] == [3]
    assert plan.report.before.entries == 6 and plan.report.after.entries == 5
    assert plan.report.after.bytes < plan.report.before.bytes


@pytest.mark.parametrize(
    ("last_action", "acknowledged", "code"),
    [
        ("pause", {"phone-a": 4, "phone-b": 2}, "not-finished"),
        ("abandon", {"phone-a": 4, "phone-b": 1}, "unacknowledged"),
        ("abandon", {"phone-a": 4}, "unacknowledged"),
    ],
)
def test_an_unstable_match_is_refused(
    last_action: str, acknowledged: dict[str, int], code: str
) -> None:
    script = finished_match()
    script.log.pop()
    script.clock("phone-b", last_action)
    found = refusal(MATCH, script.log, acknowledged=acknowledged)
    assert found is not None and found[0] == code
    with pytest.raises(CompactionRefused) as refused:
        plan_compaction(MATCH, script.log, acknowledged=acknowledged)
    assert refused.value.code == code and refused.value.reason == found[1]


def test_no_log_or_no_match_record_is_refused() -> None:
    assert refusal(MATCH, [], acknowledged={}) == ("no-log", "the log holds no entry of this match")
    script = finished_match()
    orphans = [entry for entry in script.log if entry.table != "matches"]
    found = refusal(MATCH, orphans, acknowledged={"phone-a": 4, "phone-b": 2})
    assert found is not None and found[0] == "no-match"


def test_a_log_that_disagrees_with_the_stored_state_is_refused() -> None:
    script = finished_match()
    stored = fold(script.log[:-2])
    with pytest.raises(CompactionRefused) as refused:
        plan_compaction(MATCH, script.log, acknowledged={"phone-a": 4, "phone-b": 2}, stored=stored)
    assert refused.value.code == "state-mismatch"


# -- the sync model, with a server that compacts ---------------------------------------------


class CompactingServer(ModelServer):
    """The model server whose log loses superseded entries whenever it compacts: the log is
    no longer dense, so pulls follow §6.3 by ``server_seq`` and pushes use stand-ins."""

    def __init__(self, wall: WallClock) -> None:
        super().__init__(wall)
        self.head = 0
        self.history: list[LoggedChange] = []
        """Every entry ever logged, compacted or not."""
        self.dropped: set[EntryId] = set()

    def push(self, request: PushRequest) -> PushResponse:
        device_id = request.device_id
        device = self.cursors.get(device_id, DeviceCursor())
        records = {key: self.records[key] for key in record_keys(request) if key in self.records}
        stored = with_stand_ins(
            request, last_seq=device.last_seq, stored=self.stored[device_id], records=records
        )
        if len(stored) > len(self.stored[device_id]):
            event("push: a re-sent change stood in for its dropped entry")
        plan = plan_push(
            request,
            device=device,
            stored=stored,
            records=records,
            now_ms=self.wall.now_ms,
            max_skew_ms=MAX_SKEW_MS,
            club_max=self.club_max,
        )
        for accepted in plan.accepted:
            c, hlc = accepted.change, accepted.hlc.encode()
            self.head += 1
            logged = LoggedChange(
                server_seq=self.head,
                device_id=device_id,
                seq=c.seq,
                hlc=hlc,
                table=c.table,
                id=c.id,
                op=c.op,
                fields=dict(c.fields),
            )
            self.log.append(logged)
            self.history.append(logged)
            self.stored[device_id][c.seq] = StoredChange(
                c.seq, c.hlc, hlc, c.table, c.id, c.op, dict(c.fields)
            )
        self.records.update(plan.states)
        self.cursors[device_id] = plan.device
        self.club_max = plan.club_max
        return PushResponse(
            device_id=device_id,
            acked_seq=plan.device.last_seq,
            applied=len(plan.accepted),
            duplicates=plan.duplicates,
            cursor=self.head,
            restamped=plan.restamped,
            conflicts=[],
            server_time_ms=self.wall.now_ms,
        )

    def pull(self, request: PullRequest) -> PullResponse:
        rows = [
            entry
            for entry in self.log
            if entry.server_seq > request.cursor
            and (request.include_own or entry.device_id != request.device_id)
        ]
        has_more = len(rows) > request.limit
        page = rows[: request.limit]
        cursor = page[-1].server_seq if has_more else max(self.head, request.cursor)
        return PullResponse(
            changes=page,
            conflicts=[],
            cursor=cursor,
            has_more=has_more,
            server_time_ms=self.wall.now_ms,
        )

    def compact(self) -> None:
        restamped = {
            (device_id, seq)
            for device_id, by_seq in self.stored.items()
            for seq, stored in by_seq.items()
            if stored.hlc != stored.sent_hlc
        }
        kept = compact(self.log, keep=restamped)
        kept_ids = {entry_id(entry) for entry in kept}
        for entry in self.log:
            if entry_id(entry) not in kept_ids:
                del self.stored[entry.device_id][entry.seq]
                self.dropped.add(entry_id(entry))
        if len(kept) < len(self.log):
            event("compaction dropped entries")
        self.log = kept


class CompactingSyncMachine(SyncMachine):
    """Everything of the sync model, and the server compacts its log at any moment (not only
    at a causally stable point: convergence must not depend on when it happens)."""

    def __init__(self) -> None:
        super().__init__()
        self.server: CompactingServer = CompactingServer(self.wall)

    @rule()
    def compact_log(self) -> None:
        self.server.compact()

    @rule(
        ms=st.sampled_from([1, 40, 1_000, MAX_SKEW_MS, 10 * 60_000, HOUR]) | st.integers(1, 10**5),
        compact_too=st.booleans(),
    )
    def advance_time(self, ms: int, compact_too: bool) -> None:
        """Time passes, and the server may run its maintenance meanwhile."""
        super().advance_time(ms)
        if compact_too:
            self.server.compact()

    @rule(
        device=st.integers(0, len(DEVICE_IDS) - 1), online=st.booleans(), compact_too=st.booleans()
    )
    def set_online(self, device: int, online: bool, compact_too: bool) -> None:
        """A device goes offline (or comes back), and the server may compact meanwhile."""
        super().set_online(device, online)
        if compact_too:
            self.server.compact()

    @invariant()
    def log_is_dense_per_device_and_without_repeats(self) -> None:
        seqs: dict[str, list[int]] = defaultdict(list)
        for position, logged in enumerate(self.server.history, start=1):
            assert logged.server_seq == position
            seqs[logged.device_id].append(logged.seq)
        for device_id, device_seqs in seqs.items():
            assert device_seqs == list(range(1, len(device_seqs) + 1)), device_id
            assert self.server.cursors[device_id].last_seq == len(device_seqs)
        kept = {entry_id(entry) for entry in self.server.log}
        assert [e for e in self.server.history if entry_id(e) in kept] == self.server.log
        assert kept.isdisjoint(self.server.dropped)

    @invariant()
    def acknowledged_changes_are_in_the_log_at_their_effective_hlc(self) -> None:
        logged = {entry_id(c): c for c in self.server.history}
        for model in self.devices:
            for seq, (table, record_id, write) in model.acked.items():
                stored = logged[(model.device_id, seq)]
                assert (stored.table, stored.id, stored.hlc) == (table, record_id, write.hlc)
            for key, received in model.received.items():
                assert logged[key] == received

    @invariant()
    def devices_hold_dense_prefixes_of_other_devices(self) -> None:
        """What a device has of another device is a dense prefix, up to dropped entries."""
        for model in self.devices:
            for device_id, upto in model.seen().items():
                for seq in range(1, upto + 1):
                    key = (device_id, seq)
                    assert key in model.received or key in self.server.dropped, key


TestCompactingSync = CompactingSyncMachine.TestCase
