"""The server's decision on a change set (``plan_push``): rejections, duplicates, effective
clocks, merging and conflicts, with a tiny in-memory store around it."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.hlc import Hlc, HybridClock
from protocol.ingest import (
    DeviceCursor,
    PushPlan,
    PushRejected,
    RecordKey,
    StoredChange,
    match_of,
    plan_push,
    record_keys,
)
from protocol.merge import RecordState, Write, apply
from protocol.schema import Scalar, TableName
from protocol.wire import Change, Op, PushRequest, Restamp

NOW = 1_772_359_200_000  # 2026-03-01T10:00:00Z
SKEW = 60_000
HOUR = 3_600_000
MATCH = uuid.UUID("6f1c2a4e-0000-4000-8000-000000000001")
OTHER_MATCH = uuid.UUID("6f1c2a4e-0000-4000-8000-000000000002")
PLAYER = "6f1c2a4e-0000-4000-8000-0000000000a1"
EVENT = uuid.UUID("6f1c2a4e-0000-4000-8000-0000000000e1")
EVENT_2 = uuid.UUID("6f1c2a4e-0000-4000-8000-0000000000e2")


def at(ms: int, logical: int = 0) -> str:
    return Hlc(ms, logical).encode()


def change(
    seq: int,
    hlc: str,
    record: uuid.UUID = EVENT,
    op: Op = "upsert",
    table: TableName = "events",
    **fields: Scalar,
) -> Change:
    return Change(seq=seq, hlc=hlc, table=table, id=record, op=op, fields=fields)


def setting(seq: int, hlc: str, fields: dict[str, Scalar], record: uuid.UUID = EVENT) -> Change:
    """An upsert of an event with the given fields."""
    return Change(seq=seq, hlc=hlc, table="events", id=record, fields=fields)


def create_event(seq: int, hlc: str, record: uuid.UUID = EVENT, **extra: Scalar) -> Change:
    return setting(seq, hlc, {"match_id": str(MATCH), "kind": "goal", **extra}, record)


def push(device: str, *changes: Change, seen: dict[str, int] | None = None) -> PushRequest:
    return PushRequest(device_id=device, changes=list(changes), seen=seen or {})


@dataclass
class Store:
    """What the real store keeps, in memory: device cursors, the log, record states."""

    devices: dict[str, DeviceCursor] = field(default_factory=dict)
    stored: dict[str, dict[int, StoredChange]] = field(default_factory=dict)
    records: dict[RecordKey, RecordState] = field(default_factory=dict)
    club_max: Hlc | None = None

    def plan(self, request: PushRequest, now_ms: int = NOW, max_skew_ms: int = SKEW) -> PushPlan:
        return plan_push(
            request,
            device=self.devices.get(request.device_id, DeviceCursor()),
            stored=dict(self.stored.get(request.device_id, {})),
            records={k: self.records[k] for k in record_keys(request) if k in self.records},
            now_ms=now_ms,
            max_skew_ms=max_skew_ms,
            club_max=self.club_max,
        )

    def push(self, request: PushRequest, now_ms: int = NOW, max_skew_ms: int = SKEW) -> PushPlan:
        plan = self.plan(request, now_ms, max_skew_ms)
        log = self.stored.setdefault(request.device_id, {})
        for accepted in plan.accepted:
            c = accepted.change
            log[c.seq] = StoredChange(
                c.seq, c.hlc, accepted.hlc.encode(), c.table, c.id, c.op, dict(c.fields)
            )
        self.records.update(plan.states)
        self.devices[request.device_id] = plan.device
        self.club_max = plan.club_max
        return plan

    def values(self, record: uuid.UUID = EVENT, table: str = "events") -> dict[str, Scalar]:
        return self.records[(table, record)].values()


def rejection(store: Store, request: PushRequest, now_ms: int = NOW) -> PushRejected:
    with pytest.raises(PushRejected) as caught:
        store.plan(request, now_ms)
    return caught.value


def error_fields(rejected: PushRejected) -> list[str]:
    errors: Iterable[dict[str, str]] = rejected.extensions["errors"]
    return [error["field"] for error in errors]


def seeded(*requests: PushRequest) -> Store:
    store = Store()
    for request in requests:
        store.push(request)
    return store


# -- shape of a change set -----------------------------------------------------------------------


def test_non_consecutive_sequences_inside_a_set_are_rejected() -> None:
    request = push("a", create_event(1, at(NOW)), change(3, at(NOW + 1), notes="x"),
                   change(4, at(NOW + 2), notes="y"))  # fmt: skip
    rejected = rejection(Store(), request)
    assert (rejected.status, rejected.code) == (422, "invalid-change-set")
    assert error_fields(rejected) == ["$.changes[1].seq", "$.changes[2].seq"]


def test_a_repeated_sequence_inside_a_set_is_rejected() -> None:
    request = push("a", create_event(1, at(NOW)), create_event(1, at(NOW + 1), EVENT_2))
    rejected = rejection(Store(), request)
    assert (rejected.status, rejected.code) == (422, "invalid-change-set")
    assert error_fields(rejected) == ["$.changes[1].seq"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sentiment", 5),
        ("sentiment", -5),
        ("sentiment", 1.5),
        ("sentiment", True),
        ("sentiment", "1"),
        ("x", 100.5),
        ("x", float("nan")),
        ("kind", "goalish"),
        ("kind", None),
        ("match_id", None),
        ("player_id", PLAYER.upper()),
        ("player_id", "not-a-uuid"),
        ("created_at", "2026-03-01T10:00:00"),  # no time zone
        ("created_at", "2026-03-01 10:00:00Z"),  # not RFC 3339
        ("created_at", "2026-03-01T10:00Z"),  # no seconds
        ("created_at", "2026-02-30T10:00:00Z"),  # no such day
        ("created_at", 12),
        ("notes", "n" * 10_001),
        ("notes", "half\x00time"),  # PostgreSQL cannot store U+0000
        ("notes", 3),
        ("colour", "red"),  # unknown field
    ],
)
def test_an_invalid_field_value_is_rejected_with_its_path(name: str, value: Scalar) -> None:
    request = push("a", create_event(1, at(NOW)), setting(2, at(NOW + 1), {name: value}))
    rejected = rejection(Store(), request)
    assert (rejected.status, rejected.code) == (422, "invalid-change-set")
    assert error_fields(rejected) == [f"$.changes[1].fields.{name}"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("sentiment", -4), ("sentiment", 4), ("x", 0), ("x", 100.0), ("notes", None),
     ("notes", ""), ("player_id", PLAYER), ("created_at", "2026-03-01T10:00:00+01:00"),
     ("created_at", "2026-03-01T10:00:00Z"), ("created_at", "2026-03-01T10:00:00.123456-05:30"),
     ("clock_ms", 0)],
)  # fmt: skip
def test_valid_field_values_are_accepted(name: str, value: Scalar) -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    store.push(push("a", setting(2, at(NOW + 1), {name: value})))
    assert store.values()[name] == value


def test_every_problem_of_a_set_is_listed() -> None:
    request = push(
        "a",
        create_event(1, at(NOW), sentiment=9, colour="red"),
        change(3, "yesterday", kind="dribble"),
        change(4, at(NOW + 2), op="delete", notes="x"),
    )
    rejected = rejection(Store(), request)
    assert error_fields(rejected) == [
        "$.changes[0].fields.sentiment",
        "$.changes[0].fields.colour",
        "$.changes[1].seq",
        "$.changes[1].hlc",
        "$.changes[1].fields.kind",
        "$.changes[2].seq",
        "$.changes[2].fields",
    ]
    assert rejected.detail.startswith("7 problem(s), first: $.changes[0].fields.sentiment")


@pytest.mark.parametrize("op", ["delete", "restore"])
def test_delete_and_restore_carry_no_fields(op: Op) -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    rejected = rejection(store, push("a", change(2, at(NOW + 1), op=op, notes="x")))
    assert (rejected.status, rejected.code) == (422, "invalid-change-set")
    assert error_fields(rejected) == ["$.changes[0].fields"]


# -- sequences against the log ------------------------------------------------------------------


@pytest.mark.parametrize(("stored_seqs", "sent"), [(0, 2), (0, 5), (3, 5), (3, 9)])
def test_a_sequence_gap_is_rejected_with_the_expected_sequence(stored_seqs: int, sent: int) -> None:
    store = Store()
    if stored_seqs:
        store.push(
            push("a", create_event(1, at(NOW)),
                 *(change(s, at(NOW + s), notes=f"n{s}") for s in range(2, stored_seqs + 1)))
        )  # fmt: skip
    rejected = rejection(store, push("a", change(sent, at(NOW + 100), notes="late")))
    assert (rejected.status, rejected.code) == (409, "sequence-gap")
    assert rejected.extensions == {"expected_seq": stored_seqs + 1}


def test_sequences_are_per_device() -> None:
    store = seeded(push("a", create_event(1, at(NOW)), change(2, at(NOW + 1), notes="a")))
    plan = store.push(push("b", change(1, at(NOW + 2), notes="b")))
    assert [a.change.seq for a in plan.accepted] == [1]


@pytest.mark.parametrize(
    "resent",
    [
        create_event(1, at(NOW + 5)),  # same seq, different HLC
        create_event(1, at(NOW), EVENT_2),  # same seq, different record
        change(1, at(NOW), table="match_notes", match_id=str(MATCH)),  # different table
        change(1, at(NOW), match_id=str(MATCH), kind="save"),  # different value
        change(1, at(NOW), match_id=str(MATCH), kind="goal", notes=None),  # one field more
        change(1, at(NOW), match_id=str(MATCH)),  # one field fewer
        change(1, at(NOW), op="delete"),  # different operation
    ],
)
def test_a_reused_sequence_with_different_content_is_rejected(resent: Change) -> None:
    store = seeded(push("a", create_event(1, at(NOW)), change(2, at(NOW + 1), notes="x")))
    rejected = rejection(store, push("a", resent, change(2, at(NOW + 1), notes="x")))
    assert (rejected.status, rejected.code) == (409, "sequence-reused")
    assert rejected.extensions == {"field": "$.changes[0].seq"}


@pytest.mark.parametrize(("stored", "resent"), [(1, 1.0), (1.0, 1), (0, 0.0), (0, None)])
def test_a_resent_value_must_match_its_json_type(stored: Scalar, resent: Scalar) -> None:
    store = seeded(push("a", create_event(1, at(NOW), x=stored)))
    rejected = rejection(store, push("a", create_event(1, at(NOW), x=resent)))
    assert (rejected.status, rejected.code) == (409, "sequence-reused")


def test_a_reused_sequence_is_located_inside_the_set() -> None:
    store = seeded(push("a", create_event(1, at(NOW)), change(2, at(NOW + 1), notes="x")))
    rejected = rejection(store, push("a", create_event(1, at(NOW)), change(2, at(NOW + 9))))
    assert rejected.extensions == {"field": "$.changes[1].seq"}


# -- rules that depend on the record -------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "missing"),
    [
        (change(1, at(NOW), notes="no match, no kind"), ["match_id", "kind"]),
        (change(1, at(NOW), match_id=str(MATCH)), ["kind"]),
        (change(1, at(NOW), kind="goal"), ["match_id"]),
        (change(1, at(NOW), table="clock_actions", match_id=str(MATCH), action="start"),
         ["at"]),
        (change(1, at(NOW), table="lineup", match_id=str(MATCH)), ["player_id"]),
        (change(1, at(NOW), table="teams", notes="nameless"), ["name"]),
        (change(1, at(NOW), table="players"), ["full_name"]),
        (change(1, at(NOW), table="seasons", is_current=True), ["label"]),
    ],
)  # fmt: skip
def test_creating_a_record_needs_its_required_fields(created: Change, missing: list[str]) -> None:
    rejected = rejection(Store(), push("a", created))
    assert (rejected.status, rejected.code) == (422, "invalid-change-set")
    assert error_fields(rejected) == [f"$.changes[0].fields.{name}" for name in missing]


def test_a_match_needs_no_field_to_be_created() -> None:
    plan = Store().push(push("a", change(1, at(NOW), MATCH, table="matches")))
    assert [a.match_id for a in plan.accepted] == [MATCH]


def test_later_edits_need_not_repeat_the_required_fields() -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    store.push(push("b", change(1, at(NOW + 1), notes="edit")))
    assert store.values() == {"match_id": str(MATCH), "kind": "goal", "notes": "edit"}


def test_an_immutable_field_cannot_change() -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    rejected = rejection(store, push("b", change(1, at(NOW + 1), match_id=str(OTHER_MATCH))))
    assert (rejected.status, rejected.code) == (422, "invalid-change-set")
    assert error_fields(rejected) == ["$.changes[0].fields.match_id"]


def test_an_immutable_field_may_be_repeated_with_its_value() -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    store.push(push("b", change(1, at(NOW + 1), match_id=str(MATCH), notes="same match")))
    assert store.values()["match_id"] == str(MATCH)


def test_an_immutable_field_cannot_change_within_the_creating_set() -> None:
    request = push("a", create_event(1, at(NOW)), change(2, at(NOW + 1), match_id=str(OTHER_MATCH)))
    rejected = rejection(Store(), request)
    assert error_fields(rejected) == ["$.changes[1].fields.match_id"]


@pytest.mark.parametrize("op", ["delete", "restore"])
def test_delete_or_restore_of_an_unknown_record_is_rejected(op: Op) -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    rejected = rejection(store, push("a", change(2, at(NOW + 1), EVENT_2, op=op)))
    assert (rejected.status, rejected.code) == (422, "invalid-change-set")
    assert error_fields(rejected) == ["$.changes[0].id"]


def test_a_record_created_earlier_in_the_set_can_be_edited_and_deleted() -> None:
    store = Store()
    plan = store.push(
        push("a", create_event(1, at(NOW)), change(2, at(NOW + 1), notes="n"),
             change(3, at(NOW + 2), op="delete"))
    )  # fmt: skip
    assert len(plan.accepted) == 3
    assert store.records[("events", EVENT)].is_deleted
    assert store.values()["notes"] == "n"


def test_an_edit_to_an_archived_record_is_kept_without_restoring_it() -> None:
    store = seeded(push("a", create_event(1, at(NOW)), change(2, at(NOW + 1), op="delete")))
    store.push(push("b", change(1, at(NOW + 2), notes="late note"), seen={"a": 1}))
    assert store.records[("events", EVENT)].is_deleted
    store.push(push("a", change(3, at(NOW + 3), op="restore")))
    assert not store.records[("events", EVENT)].is_deleted
    assert store.values()["notes"] == "late note"


# -- a change set is all or nothing ---------------------------------------------------------------


def test_a_set_invalid_in_its_third_change_applies_nothing() -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    records_before = copy.deepcopy(store.records)
    records_arg = dict(store.records)
    request = push(
        "a",
        change(2, at(NOW + 1), notes="fine"),
        create_event(3, at(NOW + 2), EVENT_2),
        change(4, at(NOW + 3), EVENT_2, match_id=str(OTHER_MATCH)),
    )
    with pytest.raises(PushRejected) as caught:
        plan_push(
            request,
            device=store.devices["a"],
            stored=store.stored["a"],
            records=records_arg,
            now_ms=NOW,
            max_skew_ms=SKEW,
            club_max=store.club_max,
        )
    assert error_fields(caught.value) == ["$.changes[2].fields.match_id"]
    assert records_arg == store.records == records_before
    assert store.devices["a"] == DeviceCursor(1, Hlc(NOW))
    # The device fixes the third change and re-sends the whole set from seq 2.
    fixed = push("a", *request.changes[:2], change(4, at(NOW + 3), EVENT_2, notes="ok"))
    assert [a.change.seq for a in store.push(fixed).accepted] == [2, 3, 4]


def test_planning_does_not_touch_its_inputs() -> None:
    store = seeded(push("a", create_event(1, at(NOW))))
    records = dict(store.records)
    before = copy.deepcopy(records)
    stored = dict(store.stored["a"])
    plan = plan_push(
        push("b", change(1, at(NOW + 1), notes="x")),
        device=DeviceCursor(),
        stored=stored,
        records=records,
        now_ms=NOW,
        max_skew_ms=SKEW,
        club_max=store.club_max,
    )
    assert records == before
    assert stored == store.stored["a"]
    assert plan.states[("events", EVENT)].values()["notes"] == "x"


# -- duplicates -------------------------------------------------------------------------------


def first_set(count: int) -> list[Change]:
    return [create_event(1, at(NOW))] + [
        change(s, at(NOW + s), notes=f"note {s}") for s in range(2, count + 1)
    ]


def test_a_resent_set_is_acknowledged_as_duplicates_and_not_applied_again() -> None:
    store = Store()
    request = push("a", *first_set(3))
    store.push(request)
    device, records = store.devices["a"], dict(store.records)
    plan = store.push(request, now_ms=NOW + 5_000)
    assert plan.duplicates == 3
    assert plan.accepted == []
    assert plan.states == {}
    assert plan.conflicts == []
    assert plan.restamped == []
    assert plan.device == device == DeviceCursor(3, Hlc(NOW + 3))
    assert store.records == records


def test_a_partially_overlapping_resend_applies_only_the_new_changes() -> None:
    changes = first_set(7)
    store = seeded(push("a", *changes[:5]))
    plan = store.push(push("a", *changes[2:7]))
    assert plan.duplicates == 3
    assert [a.change.seq for a in plan.accepted] == [6, 7]
    assert plan.device.last_seq == 7
    assert store.values()["notes"] == "note 7"


def test_a_resent_restamped_change_reports_its_effective_hlc_again() -> None:
    """A device that lost the response learns the effective HLC when it re-sends."""
    store = Store()
    fast = create_event(1, at(NOW + HOUR))
    first = store.push(push("a", fast))
    again = store.push(push("a", fast, change(2, at(NOW + HOUR + 1), notes="n")), NOW + 10)
    assert first.restamped == [Restamp(seq=1, hlc=at(NOW + SKEW))]
    assert again.duplicates == 1
    assert again.restamped == [
        Restamp(seq=1, hlc=at(NOW + SKEW)),
        Restamp(seq=2, hlc=at(NOW + 10 + SKEW)),
    ]


# -- effective clocks -----------------------------------------------------------------------------


def test_a_device_one_hour_fast_is_capped_and_told_so() -> None:
    plan = Store().push(push("fast", create_event(1, at(NOW + HOUR, 3))))
    [accepted] = plan.accepted
    assert accepted.hlc == Hlc(NOW + SKEW, 0)
    assert plan.restamped == [Restamp(seq=1, hlc=at(NOW + SKEW))]
    assert plan.device == DeviceCursor(1, Hlc(NOW + SKEW))
    assert plan.states[("events", EVENT)].fields["kind"].hlc == at(NOW + SKEW)


def test_a_clock_within_the_skew_is_kept_as_sent() -> None:
    plan = Store().push(push("a", create_event(1, at(NOW + SKEW)), change(2, at(NOW + SKEW, 1))))
    assert [a.hlc for a in plan.accepted] == [Hlc(NOW + SKEW), Hlc(NOW + SKEW, 1)]
    assert plan.restamped == []


def test_a_device_whose_clock_went_back_still_gets_increasing_effective_hlcs() -> None:
    store = seeded(push("a", create_event(1, at(NOW + 500))))
    plan = store.push(push("a", change(2, at(NOW - HOUR), notes="after a clock reset")))
    assert plan.accepted[0].hlc == Hlc(NOW + 500, 1)
    assert plan.restamped == [Restamp(seq=2, hlc=at(NOW + 500, 1))]


@pytest.mark.parametrize("later_by", [-SKEW, -5, -1, 0, 1, 1_000, SKEW, HOUR, 2 * HOUR])
def test_a_device_one_hour_fast_does_not_override_an_edit_made_after_seeing_its_write(
    later_by: int,
) -> None:
    """A (one hour fast) writes notes; B pulls it, then overwrites notes. B wins: it had seen
    A's write, whatever the clocks say. B's push is stamped ``later_by`` ms after A's by the
    server's clock: the same millisecond, or earlier when the clock stepped back or B reached
    another instance whose clock is a little behind."""
    store = seeded(push("coach-b", create_event(1, at(NOW - 10_000))))
    a_clock = HybridClock(lambda: NOW + HOUR)
    a_plan = store.push(push("zz-fast", change(1, a_clock.now().encode(), notes="from A")))
    b_clock = HybridClock(lambda: NOW + later_by)
    b_clock.receive(a_plan.accepted[0].hlc)  # B pulls A's change
    b_plan = store.push(
        push("coach-b", change(2, b_clock.now().encode(), notes="from B"), seen={"zz-fast": 1}),
        now_ms=NOW + later_by,
    )
    assert store.values()["notes"] == "from B"
    assert b_plan.conflicts == []


def test_a_seen_write_at_the_cap_is_still_overwritten_in_the_same_millisecond() -> None:
    """A is capped at the ceiling; B, one tick after A's effective HLC, would be capped to the
    very same HLC in the same server millisecond and lose the device-id tie-break. The club's
    greatest stored HLC keeps B's change after A's."""
    store = seeded(push("coach-b", create_event(1, at(NOW - 10_000))))
    a_plan = store.push(
        push("zz-fast", change(1, at(NOW + HOUR), notes="A1"), change(2, at(NOW + HOUR, 1)))
    )
    assert [a.hlc for a in a_plan.accepted] == [Hlc(NOW + SKEW), Hlc(NOW + SKEW, 1)]
    b_clock = HybridClock(lambda: NOW)
    b_clock.receive(a_plan.accepted[-1].hlc)
    b_plan = store.push(
        push("coach-b", change(2, b_clock.now().encode(), notes="from B"), seen={"zz-fast": 2})
    )
    assert b_plan.accepted[0].hlc > a_plan.accepted[-1].hlc
    assert store.values()["notes"] == "from B"
    assert b_plan.club_max == b_plan.accepted[0].hlc


@given(
    st.integers(0, 3 * HOUR),
    st.integers(1, 4),
    st.integers(-2 * HOUR, 2 * HOUR),
    st.integers(-SKEW, 2 * HOUR),
    st.sampled_from([("a-first", "z-last"), ("z-last", "a-first")]),
)
def test_an_edit_made_after_seeing_another_wins_whatever_the_clocks_say(
    ahead: int, writes: int, reader_skew: int, later_by: int, devices: tuple[str, str]
) -> None:
    """Writer (``ahead`` ms fast) makes ``writes`` edits of notes; reader (``reader_skew``)
    pulls them, edits notes, and its push arrives ``later_by`` ms after the writer's."""
    writer, reader = devices
    store = seeded(push(reader, create_event(1, at(NOW - 10_000))))
    w_clock = HybridClock(lambda: NOW + ahead)
    w_plan = store.push(
        push(
            writer,
            *(change(s, w_clock.now().encode(), notes=f"w{s}") for s in range(1, writes + 1)),
        )
    )
    r_clock = HybridClock(lambda: NOW + later_by + reader_skew)
    for accepted in w_plan.accepted:
        r_clock.receive(accepted.hlc)
    store.push(
        push(reader, change(2, r_clock.now().encode(), notes="reader"), seen={writer: writes}),
        now_ms=NOW + later_by,
    )
    assert store.values()["notes"] == "reader"


def test_a_fast_device_does_not_win_a_concurrent_edit_by_its_whole_lead() -> None:
    """A is one hour fast; B has not seen A's write and edits two minutes later (real time).
    Uncapped, A's edit would win every concurrent edit for an hour; capped at now + skew,
    B's later edit wins, and the conflict is on record."""
    store = seeded(push("coach-b", create_event(1, at(NOW - 10_000))))
    store.push(push("zz-fast", change(1, at(NOW + HOUR), notes="from A")))
    later = NOW + 2 * SKEW
    plan = store.push(push("coach-b", change(2, at(later), notes="from B")), now_ms=later)
    assert store.values()["notes"] == "from B"
    [conflict] = plan.conflicts
    assert conflict.conflict.winner.device_id == "coach-b"
    assert conflict.conflict.loser.device_id == "zz-fast"
    assert conflict.conflict.loser.hlc == at(NOW + SKEW)


# -- conflicts ------------------------------------------------------------------------------------


def concurrent_notes(seen_by_b: dict[str, int], b_wall: int) -> tuple[Store, PushPlan]:
    store = seeded(push("a", create_event(1, at(NOW)), change(2, at(NOW + 10), notes="from A")))
    plan = store.push(
        push("b", change(1, at(b_wall), notes="from B", sentiment=2), seen=seen_by_b),
        now_ms=NOW + 20,
    )
    return store, plan


@pytest.mark.parametrize(("b_wall", "winner"), [(NOW + 11, "b"), (NOW + 9, "a"), (NOW + 10, "b")])
def test_a_concurrent_write_is_reported_with_winner_and_loser(b_wall: int, winner: str) -> None:
    store, plan = concurrent_notes({}, b_wall)
    [found] = plan.conflicts
    assert (found.change_index, found.table, found.record_id, found.match_id) == (
        0,
        "events",
        EVENT,
        MATCH,
    )
    assert found.conflict.field == "notes"
    assert found.conflict.winner.device_id == winner
    assert store.records[("events", EVENT)].fields["notes"] == found.conflict.winner
    sides = {found.conflict.winner.device_id: found.conflict.winner,
             found.conflict.loser.device_id: found.conflict.loser}  # fmt: skip
    assert (sides["a"].value, sides["a"].seq, sides["a"].hlc) == ("from A", 2, at(NOW + 10))
    assert (sides["b"].value, sides["b"].seq, sides["b"].hlc) == ("from B", 1, at(b_wall))


@pytest.mark.parametrize("seen", [{"a": 2}, {"a": 7, "c": 1}])
def test_no_conflict_when_the_author_had_seen_the_write(seen: dict[str, int]) -> None:
    store, plan = concurrent_notes(seen, NOW + 11)
    assert plan.conflicts == []
    assert store.values()["notes"] == "from B"


def test_a_write_seen_only_in_part_is_still_a_conflict() -> None:
    _, plan = concurrent_notes({"a": 1}, NOW + 11)  # saw the creation, not the note
    assert [c.conflict.field for c in plan.conflicts] == ["notes"]


def test_a_conflict_points_at_the_accepted_change_that_revealed_it() -> None:
    store = seeded(push("a", create_event(1, at(NOW)), change(2, at(NOW + 10), notes="from A")))
    plan = store.push(
        push("b", create_event(1, at(NOW + 11), EVENT_2), change(2, at(NOW + 12), notes="B")),
        now_ms=NOW + 20,
    )
    assert [(c.change_index, c.record_id) for c in plan.conflicts] == [(1, EVENT)]


def test_writes_of_one_set_never_conflict_with_each_other() -> None:
    plan = Store().push(
        push("a", create_event(1, at(NOW)), change(2, at(NOW + 1), kind="save"),
             change(3, at(NOW + 2), kind="tackle"))
    )  # fmt: skip
    assert plan.conflicts == []


# -- the match a record belongs to ---------------------------------------------------------------


def test_match_of_each_kind_of_record() -> None:
    event = apply(None, Write("a", 1, at(NOW), "upsert", {"match_id": str(MATCH)}))
    assert match_of("events", EVENT, event) == MATCH
    assert match_of("matches", MATCH, RecordState()) == MATCH
    assert match_of("teams", EVENT, RecordState()) is None
    assert match_of("events", EVENT, RecordState()) is None


def test_a_json_request_goes_through_decoding_and_planning() -> None:
    raw = msgspec.json.encode(
        {
            "device_id": "phone-1",
            "seen": {"phone-2": 4},
            "changes": [
                {"seq": 1, "hlc": at(NOW), "table": "events", "id": str(EVENT),
                 "fields": {"match_id": str(MATCH), "kind": "corner", "x": 100}},
                {"seq": 2, "hlc": at(NOW + 1), "table": "events", "id": str(EVENT),
                 "op": "delete"},
            ],
        }
    )  # fmt: skip
    request = msgspec.json.decode(raw, type=PushRequest)
    plan = Store().push(request)
    assert [a.match_id for a in plan.accepted] == [MATCH, MATCH]
    assert plan.states[("events", EVENT)].is_deleted
    assert plan.device == DeviceCursor(2, Hlc(NOW + 1))


@pytest.mark.parametrize(
    ("device_id", "hlc"),
    [
        ("phone-1\n", at(NOW)),  # a trailing newline after the device id
        ("phone-1", at(NOW) + "\n"),  # a trailing newline after the HLC
        ("phone-1", "\u0661" * 15 + "-" + "\u0660" * 5),  # non-ASCII digits
    ],
)
def test_the_wire_rejects_ids_and_hlcs_outside_their_patterns(device_id: str, hlc: str) -> None:
    raw = msgspec.json.encode(
        {
            "device_id": device_id,
            "changes": [{"seq": 1, "hlc": hlc, "table": "events", "id": str(EVENT)}],
        }
    )
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=PushRequest)
