"""The merge rules: convergence, field-level merge, causality, deletes and conflicts."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.hlc import Hlc
from protocol.merge import (
    DELETED,
    EMPTY,
    FieldConflict,
    FieldVersion,
    RecordState,
    Write,
    apply,
    conflicts,
    decode_state,
    encode_state,
    same_value,
)
from protocol.schema import Scalar
from protocol.vector_clock import covers
from protocol.wire import Op

DEVICES = ("d1", "d2", "d3")
RECORDS = ("r1", "r2")
FIELDS = ("a", "b", "c")
VALUE_POOL: tuple[Scalar, ...] = (None, 0, 1, 1.0, 0.0, True, False, "1", "", "x")
"""Values that Python's ``==`` confuses (0, 0.0, False; 1, 1.0, True) but JSON keeps apart."""

Keyed = tuple[str, Write]
"""A write and the record it goes to."""
States = dict[str, RecordState]


def hlc(wall: int, logical: int = 0) -> str:
    return Hlc(wall, logical).encode()


@st.composite
def histories(draw: st.DrawFn, max_per_device: int = 6) -> list[Keyed]:
    """Writes as the server hands them out: each device numbers its writes 1, 2, ... with
    strictly increasing HLCs. HLCs come from a small range, so different devices often write
    at the very same HLC and the device-id tie-break matters. Logical counters stay below 3."""
    writes: list[Keyed] = []
    for device in DEVICES:
        stamps = sorted(
            draw(st.sets(st.tuples(st.integers(0, 6), st.integers(0, 2)), max_size=max_per_device))
        )
        for seq, (wall, logical) in enumerate(stamps, start=1):
            record = draw(st.sampled_from(RECORDS))
            op: Op = draw(st.sampled_from(["upsert", "upsert", "upsert", "delete", "restore"]))
            fields: dict[str, Scalar] = (
                draw(
                    st.dictionaries(
                        st.sampled_from(FIELDS), st.sampled_from(VALUE_POOL), min_size=1
                    )
                )
                if op == "upsert"
                else {}
            )
            writes.append((record, Write(device, seq, hlc(wall, logical), op, fields)))
    return writes


def fold(writes: Iterable[Keyed], states: Mapping[str, RecordState] | None = None) -> States:
    merged = dict(states or {})
    for record, write in writes:
        merged[record] = apply(merged.get(record), write)
    return merged


def typed_version(version: FieldVersion | None) -> tuple[str, str, str, str, int] | None:
    if version is None:
        return None
    value = version.value
    return (type(value).__name__, repr(value), version.hlc, version.device_id, version.seq)


def typed(states: Mapping[str, RecordState]) -> dict[str, object]:
    """A form of the states where ``1``, ``1.0`` and ``True`` are different values."""
    return {
        record: (
            sorted((name, typed_version(v)) for name, v in state.fields.items()),
            typed_version(state.deleted),
        )
        for record, state in states.items()
    }


def assert_same(left: Mapping[str, RecordState], right: Mapping[str, RecordState]) -> None:
    assert left == right
    assert typed(left) == typed(right)


def as_writes(state: RecordState) -> list[Write]:
    """A record's state as single-register writes, the way a replica hands it on."""
    writes = [
        Write(v.device_id, v.seq, v.hlc, "upsert", {name: v.value})
        for name, v in state.fields.items()
    ]
    if state.deleted is not None:
        d = state.deleted
        writes.append(Write(d.device_id, d.seq, d.hlc, "delete" if d.value else "restore", {}))
    return writes


def join(left: Mapping[str, RecordState], right: Mapping[str, RecordState]) -> States:
    """Merge two replicas' states by applying one's registers to the other."""
    return fold(((record, w) for record, state in right.items() for w in as_writes(state)), left)


def register_maximum(writes: Iterable[Keyed]) -> States:
    """The reference model: each register holds the write with the greatest (hlc, device)."""
    best: dict[tuple[str, str], FieldVersion] = {}
    for record, write in writes:
        for name, version in write.versions():
            current = best.get((record, name))
            if current is None or (version.hlc, version.device_id) > (
                current.hlc,
                current.device_id,
            ):
                best[(record, name)] = version
    states: States = {}
    for record in {record for record, _ in best}:
        fields = {name: v for (r, name), v in best.items() if r == record and name != DELETED}
        states[record] = RecordState(fields=fields, deleted=best.get((record, DELETED)))
    return states


# -- convergence -------------------------------------------------------------------------------


@given(histories())
def test_state_is_the_register_wise_maximum(writes: list[Keyed]) -> None:
    assert_same(fold(writes), register_maximum(writes))


@given(st.data())
def test_any_order_gives_the_same_state(data: st.DataObject) -> None:
    writes = data.draw(histories())
    shuffled = data.draw(st.permutations(writes))
    assert_same(fold(shuffled), fold(writes))


@given(st.data())
def test_duplicated_writes_give_the_same_state(data: st.DataObject) -> None:
    writes = data.draw(histories())
    extra = data.draw(st.lists(st.sampled_from(writes), max_size=2 * len(writes))) if writes else []
    redelivered = data.draw(st.permutations(writes + extra))
    assert_same(fold(redelivered), fold(writes))


@given(histories())
def test_applying_a_write_twice_changes_nothing(writes: list[Keyed]) -> None:
    once = fold(writes)
    for record, write in writes:
        assert apply(once[record], write) == once[record]


@given(st.data())
def test_batches_merged_separately_give_the_same_state(data: st.DataObject) -> None:
    """Split the writes into batches (a write may land in several), fold each batch into its
    own replica, then merge the replicas in any order: same state as folding everything."""
    writes = data.draw(histories())
    batch_count = data.draw(st.integers(1, 4))
    batches: list[list[Keyed]] = [[] for _ in range(batch_count)]
    for keyed in writes:
        targets = data.draw(st.sets(st.integers(0, batch_count - 1), min_size=1))
        for target in targets:
            batches[target].append(keyed)
    replicas = [fold(batch) for batch in batches]
    order = data.draw(st.permutations(range(batch_count)))
    merged: States = {}
    for index in order:
        merged = join(merged, replicas[index])
    assert_same(merged, fold(writes))


@given(st.data())
def test_joining_replicas_is_associative_commutative_and_idempotent(data: st.DataObject) -> None:
    """Three replicas, each holding some of one history's writes (possibly overlapping)."""
    writes = data.draw(histories())
    parts: list[list[Keyed]] = [[], [], []]
    for keyed in writes:
        for target in data.draw(st.sets(st.integers(0, 2))):
            parts[target].append(keyed)
    sa, sb, sc = (fold(part) for part in parts)
    assert_same(join(sa, sb), join(sb, sa))
    assert_same(join(join(sa, sb), sc), join(sa, join(sb, sc)))
    assert_same(join(sa, sa), sa)


def test_apply_on_nothing_starts_from_the_empty_state() -> None:
    write = Write("d1", 1, hlc(1), "upsert", {"a": 1})
    assert apply(None, write) == apply(EMPTY, write)
    assert EMPTY.fields == {}  # the shared empty state is never mutated
    assert apply(None, write).values() == {"a": 1}


def test_an_ignored_write_returns_the_state_unchanged() -> None:
    state = apply(None, Write("d1", 2, hlc(5), "upsert", {"a": 1}))
    assert apply(state, Write("d2", 1, hlc(4), "upsert", {"a": 2})) is state


# -- field-level merge --------------------------------------------------------------------------


@given(
    st.dictionaries(st.sampled_from(FIELDS[:2]), st.sampled_from(VALUE_POOL), min_size=1),
    st.dictionaries(st.sampled_from((*FIELDS[2:], "d")), st.sampled_from(VALUE_POOL), min_size=1),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_concurrent_edits_to_different_fields_both_apply(
    left: dict[str, Scalar], right: dict[str, Scalar], left_wall: int, right_wall: int
) -> None:
    base = apply(None, Write("d3", 1, hlc(0), "upsert", {name: "old" for name in FIELDS}))
    edit_left = Write("d1", 1, hlc(left_wall, 1), "upsert", left)
    edit_right = Write("d2", 1, hlc(right_wall, 1), "upsert", right)
    for first, second in ((edit_left, edit_right), (edit_right, edit_left)):
        values = apply(apply(base, first), second).values()
        for name, value in {**left, **right}.items():
            assert same_value(values[name], value)


# -- causality and the tie-break -------------------------------------------------------------------


@given(
    histories(),
    st.sampled_from(("a-first", *DEVICES, "z-last")),
    st.sampled_from(RECORDS),
    st.sampled_from(["upsert", "delete", "restore"]),
    st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(VALUE_POOL), min_size=1),
)
def test_a_write_with_a_greater_hlc_always_wins_whatever_the_device_id(
    writes: list[Keyed], device: str, record: str, op: Op, fields: dict[str, Scalar]
) -> None:
    """An edit made after seeing others has a greater HLC than all of them, so it takes every
    register it writes, whichever device made it."""
    later = Write(device, 100, hlc(7), op, fields if op == "upsert" else {})
    for state in (fold(writes).get(record), fold([*writes, (record, later)]).get(record)):
        after = apply(state, later)
        for name, version in later.versions():
            holder = after.deleted if name == DELETED else after.fields[name]
            assert holder == version
            assert typed_version(holder) == typed_version(version)


@given(histories(), st.sampled_from(("a-first", *DEVICES, "z-last")), st.sampled_from(RECORDS))
def test_a_write_older_than_every_register_changes_nothing_it_writes(
    writes: list[Keyed], device: str, record: str
) -> None:
    """Histories start at wall 1 here, so a write at wall 0 is older than everything."""
    shifted = [
        (r, Write(w.device_id, w.seq, hlc(t.wall_ms + 1, t.logical), w.op, w.fields))
        for r, w in writes
        for t in (Hlc.parse(w.hlc),)
    ]
    state = fold(shifted).get(record) or EMPTY
    early = Write(device, 100, hlc(0, 5), "upsert", {name: "early" for name in FIELDS})
    after = apply(state, early)
    for name in FIELDS:
        if name in state.fields:
            assert after.fields[name] == state.fields[name]
        else:
            assert after.fields[name].value == "early"
    assert after.deleted == state.deleted


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_equal_hlcs_are_decided_by_the_greater_device_id(order: Sequence[int]) -> None:
    writes = [
        Write("phone-a", 1, hlc(10), "upsert", {"a": "from a"}),
        Write("phone-b", 1, hlc(10), "upsert", {"a": "from b"}),
    ]
    state: RecordState | None = None
    for index in order:
        state = apply(state, writes[index])
    assert state is not None
    assert state.values() == {"a": "from b"}


def test_the_later_hlc_wins_before_the_device_id_is_looked_at() -> None:
    state = apply(None, Write("zz", 1, hlc(10, 0), "upsert", {"a": "zz"}))
    state = apply(state, Write("aa", 1, hlc(10, 1), "upsert", {"a": "aa"}))
    assert state.values() == {"a": "aa"}


# -- deletes and restores ------------------------------------------------------------------------

CREATE = Write("d1", 1, hlc(1), "upsert", {"kind": "goal", "notes": "created"})


@given(st.data(), st.integers(2, 9), st.integers(2, 9), st.sampled_from(DEVICES))
def test_a_delete_wins_over_a_concurrent_edit_but_the_edit_lands_in_its_field(
    data: st.DataObject, delete_wall: int, edit_wall: int, editor: str
) -> None:
    """Rule: an edit does not bring an archived record back; it stays archived, and the edit
    is kept in its field (it shows once the record is restored)."""
    delete = Write("d2", 1, hlc(delete_wall), "delete", {})
    edit = Write(editor, 7, hlc(edit_wall, 1), "upsert", {"notes": "edited"})
    writes = data.draw(st.permutations([CREATE, delete, edit]))
    state: RecordState | None = None
    for write in writes:
        state = apply(state, write)
    assert state is not None
    assert state.is_deleted
    assert state.values() == {"kind": "goal", "notes": "edited"}


@given(st.data(), st.integers(2, 9), st.integers(2, 9))
def test_restore_brings_back_edits_made_concurrently_with_the_delete(
    data: st.DataObject, delete_wall: int, edit_wall: int
) -> None:
    delete = Write("d2", 1, hlc(delete_wall), "delete", {})
    edit = Write("d3", 1, hlc(edit_wall, 1), "upsert", {"notes": "edited"})
    restore = Write("d1", 2, hlc(10), "restore", {})
    writes = data.draw(st.permutations([CREATE, delete, edit, restore]))
    state: RecordState | None = None
    for write in writes:
        state = apply(state, write)
    assert state is not None
    assert not state.is_deleted
    assert state.values() == {"kind": "goal", "notes": "edited"}


def test_concurrent_delete_and_restore_are_decided_like_any_register() -> None:
    deleted = apply(apply(None, CREATE), Write("d1", 2, hlc(5), "delete", {}))
    restore = Write("d2", 1, hlc(5), "restore", {})
    delete_again = Write("d3", 1, hlc(4), "delete", {})
    after = apply(apply(deleted, restore), delete_again)
    assert not after.is_deleted  # (5, d2) beats (5, d1) and (4, d3)
    assert after.deleted == FieldVersion(False, hlc(5), "d2", 1)
    assert [name for name, _ in after.registers()] == ["kind", "notes", DELETED]


def test_a_record_never_deleted_is_live() -> None:
    state = apply(None, CREATE)
    assert state.deleted is None
    assert not state.is_deleted
    assert [name for name, _ in state.registers()] == ["kind", "notes"]


# -- stored form -----------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
versions = st.builds(
    FieldVersion,
    scalars,
    st.builds(Hlc, st.integers(0, 10**15 - 1), st.integers(0, 99_999)).map(Hlc.encode),
    st.text(min_size=1, max_size=10),
    st.integers(1, 2**53),
)
record_states = st.builds(
    RecordState,
    fields=st.dictionaries(st.text(min_size=1, max_size=10), versions, max_size=6),
    deleted=st.none() | versions,
)


@given(record_states)
def test_encode_then_decode_state_round_trips(state: RecordState) -> None:
    decoded = decode_state(encode_state(state))
    assert decoded == state
    assert typed({"r": decoded}) == typed({"r": state})
    assert decode_state(encode_state(state).decode()) == state


@given(histories())
def test_merged_states_round_trip_through_the_stored_form(writes: list[Keyed]) -> None:
    states = fold(writes)
    decoded = {record: decode_state(encode_state(state)) for record, state in states.items()}
    assert_same(decoded, states)


def test_the_empty_state_is_stored_as_an_empty_object() -> None:
    assert encode_state(EMPTY) == b"{}"
    assert decode_state(b"{}") == EMPTY


# -- conflicts ---------------------------------------------------------------------------------

A1 = Write("phone-a", 1, hlc(10), "upsert", {"notes": "from a", "kind": "goal"})


def test_no_conflict_on_a_record_the_server_does_not_have() -> None:
    assert conflicts(None, A1, {}) == []


def test_no_conflict_with_the_same_device() -> None:
    state = apply(None, A1)
    own = Write("phone-a", 2, hlc(5), "upsert", {"notes": "mine again"})
    assert conflicts(state, own, {}) == []


def test_no_conflict_when_the_author_had_seen_the_current_write() -> None:
    state = apply(None, A1)
    overwrite = Write("phone-b", 1, hlc(11), "upsert", {"notes": "from b"})
    assert conflicts(state, overwrite, {"phone-a": 1}) == []
    assert conflicts(state, overwrite, {"phone-a": 3}) == []


def test_no_conflict_when_concurrent_writers_agree_on_the_value() -> None:
    state = apply(None, A1)
    same = Write("phone-b", 1, hlc(11), "upsert", {"notes": "from a"})
    assert conflicts(state, same, {}) == []


@pytest.mark.parametrize(
    ("stored", "incoming"),
    [(1, 1.0), (1, True), (1.0, True), (0, False), (0, None), ("1", 1)],
)
def test_values_of_different_json_types_conflict(stored: Scalar, incoming: Scalar) -> None:
    state = apply(None, Write("phone-a", 1, hlc(10), "upsert", {"sentiment": stored}))
    write = Write("phone-b", 1, hlc(11), "upsert", {"sentiment": incoming})
    [found] = conflicts(state, write, {})
    assert typed_version(found.winner) == typed_version(
        FieldVersion(incoming, hlc(11), "phone-b", 1)
    )
    assert typed_version(found.loser) == typed_version(state.fields["sentiment"])


@pytest.mark.parametrize(
    ("incoming_wall", "winner_device"), [(11, "phone-b"), (9, "phone-a"), (10, "phone-b")]
)
def test_a_concurrent_write_of_another_value_is_a_conflict(
    incoming_wall: int, winner_device: str
) -> None:
    state = apply(None, A1)
    write = Write("phone-b", 1, hlc(incoming_wall), "upsert", {"notes": "from b", "x": 5.0})
    [found] = conflicts(state, write, {"phone-a": 0, "other": 9})
    assert found.field == "notes"
    assert found.winner.device_id == winner_device
    assert {found.winner.value, found.loser.value} == {"from a", "from b"}
    assert apply(state, write).fields["notes"] == found.winner


def test_a_concurrent_delete_and_restore_conflict_on_the_archived_register() -> None:
    state = apply(apply(None, A1), Write("phone-a", 2, hlc(12), "delete", {}))
    restore = Write("phone-b", 1, hlc(11), "restore", {})
    assert conflicts(state, restore, {"phone-a": 1}) == [
        FieldConflict(
            DELETED,
            winner=FieldVersion(True, hlc(12), "phone-a", 2),
            loser=FieldVersion(False, hlc(11), "phone-b", 1),
        )
    ]


@given(
    histories(),
    st.sampled_from(RECORDS),
    st.sampled_from(DEVICES),
    st.integers(0, 8),
    st.sampled_from(["upsert", "delete", "restore"]),
    st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(VALUE_POOL), min_size=1),
    st.dictionaries(st.sampled_from(DEVICES), st.integers(0, 6)),
)
def test_conflicts_follow_the_rule_and_name_the_register_winner(
    writes: list[Keyed],
    record: str,
    device: str,
    wall: int,
    op: Op,
    fields: dict[str, Scalar],
    seen: dict[str, int],
) -> None:
    state = fold(writes).get(record)
    # Logical counter 3 never occurs in histories: no write shares (hlc, device) with this one.
    write = Write(device, 100, hlc(wall, 3), op, fields if op == "upsert" else {})
    found = conflicts(state, write, seen)
    expected: list[str] = []
    if state is not None:
        for name, incoming in write.versions():
            current = state.deleted if name == DELETED else state.fields.get(name)
            if (
                current is not None
                and current.device_id != device
                and not covers(seen, current.device_id, current.seq)
                and not same_value(current.value, incoming.value)
            ):
                expected.append(name)
    assert [conflict.field for conflict in found] == expected
    after = apply(state, write)
    incoming_versions = dict(write.versions())
    for conflict in found:
        assert state is not None
        current = state.deleted if conflict.field == DELETED else state.fields[conflict.field]
        holder = after.deleted if conflict.field == DELETED else after.fields[conflict.field]
        assert holder == conflict.winner
        assert conflict.winner.beats(conflict.loser)
        assert {conflict.winner, conflict.loser} == {current, incoming_versions[conflict.field]}
        assert not same_value(conflict.winner.value, conflict.loser.value)
