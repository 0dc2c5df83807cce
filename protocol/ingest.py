"""How the server takes in a change set, as a pure function.

The store loads what this needs (the device's cursor, the records the changes touch, the
stored copies of re-sent changes), calls :func:`plan_push`, and writes the plan in one
transaction. Everything that decides (sequence rules, validation, effective clocks, merging,
conflicts) happens here, so it can be tested without a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import merge
from protocol.hlc import Hlc, stamp
from protocol.schema import TABLES, Scalar, TableName, check_value
from protocol.vector_clock import VersionVector
from protocol.wire import Change, ConflictRecord, Op, PushRequest, Restamp

RecordKey = tuple[str, uuid.UUID]


class PushRejected(Exception):
    """A change set the server refuses as a whole; nothing of it is applied."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extensions = extensions


@dataclass(frozen=True, slots=True)
class DeviceCursor:
    """What the server knows of a device: its last stored sequence and effective HLC."""

    last_seq: int = 0
    last_hlc: Hlc | None = None


@dataclass(frozen=True, slots=True)
class StoredChange:
    """A change already in the log, to recognise a re-sent one."""

    seq: int
    sent_hlc: str
    hlc: str
    table: str
    record_id: uuid.UUID
    op: str
    fields: Mapping[str, Scalar]

    def matches(self, change: Change) -> bool:
        """True when ``change`` is this stored change sent again, to the letter."""
        if (self.sent_hlc, self.table, self.record_id, self.op) != (
            change.hlc,
            change.table,
            change.id,
            change.op,
        ):
            return False
        return self.fields.keys() == change.fields.keys() and all(
            merge.same_value(self.fields[name], value) for name, value in change.fields.items()
        )


@dataclass(frozen=True, slots=True)
class AcceptedChange:
    change: Change
    hlc: Hlc
    """The effective HLC, fixed now for every replica."""
    match_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class PlannedConflict:
    change_index: int
    """Index into ``PushPlan.accepted`` of the change whose arrival revealed it."""
    table: str
    record_id: uuid.UUID
    match_id: uuid.UUID | None
    conflict: merge.FieldConflict


@dataclass(slots=True)
class PushPlan:
    accepted: list[AcceptedChange] = field(default_factory=list)
    duplicates: int = 0
    restamped: list[Restamp] = field(default_factory=list)
    states: dict[RecordKey, merge.RecordState] = field(default_factory=dict)
    """The merged state of every record a new change touched."""
    conflicts: list[PlannedConflict] = field(default_factory=list)
    device: DeviceCursor = field(default_factory=DeviceCursor)
    club_max: Hlc | None = None
    """The greatest effective HLC in the club once this plan is stored."""


def record_keys(request: PushRequest) -> set[RecordKey]:
    """The records a change set touches (the store loads their states before planning)."""
    return {(change.table, change.id) for change in request.changes}


def match_of(table: str, record_id: uuid.UUID, state: merge.RecordState) -> uuid.UUID | None:
    """The match a record belongs to, or None for club-wide records (teams, players...)."""
    spec = TABLES[table]
    if spec.record_is_match:
        return record_id
    if spec.match_field is None:
        return None
    version = state.fields.get(spec.match_field)
    return uuid.UUID(str(version.value)) if version is not None else None


@dataclass(frozen=True, slots=True)
class CheckedChangeSet:
    """A change set that passed every rule needing no stored state, with its parsed HLCs.

    Checking needs no lock, so a server checks before it takes the club's write lock and
    hands this to :func:`plan_push`, which then does not check again.
    """

    request: PushRequest
    hlcs: tuple[Hlc, ...]


def check_change_set(request: PushRequest) -> CheckedChangeSet:
    """Check what needs no stored state: consecutive sequences, fields and values.

    Raises :class:`PushRejected` (422) listing every problem of every change.
    """
    return CheckedChangeSet(request, _check_shape(request.changes))


def plan_push(
    request: PushRequest | CheckedChangeSet,
    *,
    device: DeviceCursor,
    stored: Mapping[int, StoredChange],
    records: Mapping[RecordKey, merge.RecordState],
    now_ms: int,
    max_skew_ms: int,
    club_max: Hlc | None,
) -> PushPlan:
    """Decide what a change set does, or raise :class:`PushRejected` saying what is wrong.

    ``club_max`` is the greatest effective HLC already stored in the club (None for a new
    club); it is required so that no caller can forget the floor of the skew cap.

    Invariants the plan keeps: a device's sequences are dense (the first new change is
    ``last_seq + 1``); a change already stored is acknowledged and not applied again; the
    effective HLCs of one device strictly increase.
    """
    checked = request if isinstance(request, CheckedChangeSet) else check_change_set(request)
    request = checked.request
    plan = PushPlan(device=device, club_max=club_max)
    fresh: list[tuple[int, Change]] = []
    for index, change in enumerate(request.changes):
        if change.seq <= device.last_seq:
            _recognise(index, change, stored.get(change.seq), plan)
        else:
            fresh.append((index, change))
    if fresh and fresh[0][1].seq != device.last_seq + 1:
        expected = device.last_seq + 1
        raise PushRejected(
            409,
            "sequence-gap",
            "Sequence gap",
            f"device {request.device_id} must send seq {expected} next, "
            f"got {fresh[0][1].seq}; re-send from seq {expected}",
            expected_seq=expected,
        )

    seen: VersionVector = dict(request.seen)
    states = dict(records)
    last_hlc = device.last_hlc
    for index, change in fresh:
        key = (change.table, change.id)
        current = states.get(key)
        _check_against_state(index, change, current)
        effective = stamp(
            checked.hlcs[index],
            now_ms=now_ms,
            max_skew_ms=max_skew_ms,
            previous=last_hlc,
            floor=plan.club_max,
        )
        last_hlc = effective
        plan.club_max = effective if plan.club_max is None else max(plan.club_max, effective)
        write = merge.Write(
            request.device_id, change.seq, effective.encode(), change.op, change.fields
        )
        merged = merge.apply(current, write)
        match_id = match_of(change.table, change.id, merged)
        for found in merge.conflicts(current, write, seen):
            plan.conflicts.append(
                PlannedConflict(len(plan.accepted), change.table, change.id, match_id, found)
            )
        states[key] = merged
        plan.states[key] = merged
        if effective.encode() != change.hlc:
            plan.restamped.append(Restamp(seq=change.seq, hlc=effective.encode()))
        plan.accepted.append(AcceptedChange(change, effective, match_id))
    if fresh:
        plan.device = DeviceCursor(fresh[-1][1].seq, last_hlc)
    return plan


def _check_shape(changes: Sequence[Change]) -> tuple[Hlc, ...]:
    """Rules that need no stored state: dense sequences inside the set, valid fields."""
    errors: list[dict[str, str]] = []
    hlcs: list[Hlc] = []
    first = changes[0].seq
    for index, change in enumerate(changes):
        where = f"$.changes[{index}]"
        if change.seq != first + index:
            errors.append(
                {
                    "field": f"{where}.seq",
                    "message": f"expected {first + index}: sequences "
                    "in a change set must be consecutive",
                }
            )
        if change.op != "upsert" and change.fields:
            errors.append({"field": f"{where}.fields", "message": f"{change.op} carries no fields"})
        try:
            hlcs.append(Hlc.parse(change.hlc))
        except ValueError as exc:
            errors.append({"field": f"{where}.hlc", "message": str(exc)})
        spec = TABLES[change.table]
        for name, value in change.fields.items():
            field_spec = spec.fields.get(name)
            problem = "unknown field" if field_spec is None else check_value(field_spec, value)
            if problem is not None:
                errors.append({"field": f"{where}.fields.{name}", "message": problem})
    if errors:
        raise PushRejected(
            422,
            "invalid-change-set",
            "Invalid change set",
            f"{len(errors)} problem(s), first: {errors[0]['field']}: {errors[0]['message']}",
            errors=errors,
        )
    return tuple(hlcs)


def _check_against_state(index: int, change: Change, current: merge.RecordState | None) -> None:
    """Rules that depend on the record: creation needs its required fields, and so on."""
    spec = TABLES[change.table]
    where = f"$.changes[{index}]"
    errors: list[dict[str, str]] = []
    if current is None and change.op != "upsert":
        errors.append(
            {
                "field": f"{where}.id",
                "message": f"cannot {change.op} a record the server does not have",
            }
        )
    elif current is None:
        for name, field_spec in spec.fields.items():
            if field_spec.required and change.fields.get(name) is None:
                errors.append(
                    {"field": f"{where}.fields.{name}", "message": "required to create the record"}
                )
    else:
        for name, value in change.fields.items():
            existing = current.fields.get(name)
            if (
                spec.fields[name].immutable
                and existing is not None
                and not merge.same_value(existing.value, value)
            ):
                errors.append(
                    {"field": f"{where}.fields.{name}", "message": "cannot change once set"}
                )
    if errors:
        raise PushRejected(
            422,
            "invalid-change-set",
            "Invalid change set",
            f"{errors[0]['field']}: {errors[0]['message']}",
            errors=errors,
        )


def _recognise(index: int, change: Change, stored: StoredChange | None, plan: PushPlan) -> None:
    """A change the server already has: acknowledge it, unless the sequence was reused."""
    if stored is None or not stored.matches(change):
        raise PushRejected(
            409,
            "sequence-reused",
            "Sequence reused",
            f"seq {change.seq} is already stored with different content; "
            "a device must never reuse a sequence number",
            field=f"$.changes[{index}].seq",
        )
    plan.duplicates += 1
    if stored.hlc != stored.sent_hlc:
        plan.restamped.append(Restamp(seq=change.seq, hlc=stored.hlc))


def reinstating_change(
    conflict: ConflictRecord, current: merge.RecordState, device: DeviceCursor, now_ms: int
) -> tuple[Change, dict[str, int]]:
    """The change (by the server's own device) that writes a conflict's losing value back.

    Its HLC is after whatever holds the register now, and the returned version vector says
    it has seen that holder, so it is a causal overwrite rather than a new conflict.
    """
    if conflict.field == merge.DELETED:
        holder = current.deleted
    else:
        holder = current.fields.get(conflict.field)
    floor = [Hlc(now_ms, 0)]
    if holder is not None:
        floor.append(Hlc.parse(holder.hlc).successor())
    if device.last_hlc is not None:
        floor.append(device.last_hlc.successor())
    hlc = max(floor).encode()
    seen = {holder.device_id: holder.seq} if holder is not None else {}
    seq = device.last_seq + 1
    if conflict.field == merge.DELETED:
        op: Op = "delete" if conflict.loser.value is True else "restore"
        change = Change(seq=seq, hlc=hlc, table=conflict.table, id=conflict.record_id, op=op)
    else:
        change = Change(
            seq=seq,
            hlc=hlc,
            table=conflict.table,
            id=conflict.record_id,
            fields={conflict.field: conflict.loser.value},
        )
    return change, seen


@dataclass(frozen=True, slots=True)
class ServerWrite:
    """A change the server makes on its own account (a signup's team, for example)."""

    table: TableName
    record_id: uuid.UUID
    fields: Mapping[str, Scalar]
    op: Op = "upsert"


def server_change_set(
    writes: Sequence[ServerWrite],
    device: DeviceCursor,
    now_ms: int,
    device_id: str,
    seen: Mapping[str, int] | None = None,
) -> PushRequest:
    """The next change set of a device the server writes for (its own, or a REST caller's):
    dense sequences after the device's last, HLCs from the wall clock that never go back.

    ``seen`` is what the writer had seen: nothing for the server's own new records, the
    club's whole log for a REST write (its caller saw the server's state, so it overwrites
    that state causally and only later, unseen writes conflict with it)."""
    hlc = Hlc(now_ms, 0)
    if device.last_hlc is not None:
        hlc = max(hlc, device.last_hlc.successor())
    changes = []
    for offset, write in enumerate(writes):
        changes.append(
            Change(
                seq=device.last_seq + 1 + offset,
                hlc=hlc.encode(),
                table=write.table,
                id=write.record_id,
                op=write.op,
                fields=dict(write.fields) if write.op == "upsert" else {},
            )
        )
        hlc = hlc.successor()
    return PushRequest(device_id=device_id, changes=changes, seen=dict(seen or {}))
