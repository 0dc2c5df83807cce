"""The merge rules, as plain functions over values.

A record is a set of last-writer-wins registers, one per field, plus one for its archived flag.
Each register holds the write with the greatest (hlc, device_id): a maximum, so applying the
same writes in any order, batching or number of times gives the same state (convergence).
Because an HLC issued after seeing a write is greater than that write's HLC, a causally later
edit always wins; only writes made without seeing each other ever need the tie-break, and the
tie-break (later HLC, then greater device id) is the same on every replica.

Deletes are writes too: ``delete`` sets the archived register to true, ``restore`` to false.
An edit concurrent with a delete still lands in its field register, so it is there when the
record is restored; it does not bring the record back by itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import msgspec

from protocol.schema import Scalar
from protocol.vector_clock import covers
from protocol.wire import Op

DELETED = "_deleted"
"""The register name of the archived flag, as it appears in conflict records."""


class FieldVersion(msgspec.Struct, frozen=True, array_like=True):
    """The value of one register and the write that put it there."""

    value: Scalar
    hlc: str
    device_id: str
    seq: int

    def beats(self, other: FieldVersion | None) -> bool:
        """True when this write wins the register over ``other``."""
        if other is None:
            return True
        return (self.hlc, self.device_id) > (other.hlc, other.device_id)


class RecordState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The merged state of one record: its field registers and its archived register."""

    fields: dict[str, FieldVersion] = {}
    deleted: FieldVersion | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted is not None and self.deleted.value is True

    def values(self) -> dict[str, Scalar]:
        """The current value of every field written so far."""
        return {name: version.value for name, version in self.fields.items()}

    def registers(self) -> Iterator[tuple[str, FieldVersion]]:
        yield from self.fields.items()
        if self.deleted is not None:
            yield DELETED, self.deleted


EMPTY = RecordState()


@dataclass(frozen=True, slots=True)
class Write:
    """A change reduced to what the merge needs, with its effective HLC."""

    device_id: str
    seq: int
    hlc: str
    op: Op
    fields: Mapping[str, Scalar]

    def versions(self) -> Iterator[tuple[str, FieldVersion]]:
        """The register writes this change makes."""
        if self.op == "upsert":
            for name, value in self.fields.items():
                yield name, FieldVersion(value, self.hlc, self.device_id, self.seq)
        else:
            yield DELETED, FieldVersion(self.op == "delete", self.hlc, self.device_id, self.seq)


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """Two different values written to one register by writers that had not seen each other."""

    field: str
    winner: FieldVersion
    loser: FieldVersion


def apply(state: RecordState | None, write: Write) -> RecordState:
    """The record after merging ``write``. Commutative, associative and idempotent."""
    state = state or EMPTY
    fields = state.fields
    deleted = state.deleted
    copied = False
    for name, incoming in write.versions():
        if name == DELETED:
            if incoming.beats(deleted):
                deleted = incoming
        elif incoming.beats(fields.get(name)):
            if not copied:
                fields = dict(fields)
                copied = True
            fields[name] = incoming
    if fields is state.fields and deleted is state.deleted:
        return state
    return RecordState(fields=fields, deleted=deleted)


def conflicts(
    state: RecordState | None, write: Write, seen: Mapping[str, int]
) -> list[FieldConflict]:
    """The real conflicts ``write`` has with ``state``, given its author's version vector.

    A register's current write conflicts with the incoming one when it came from another
    device, the author of ``write`` had not integrated it (``seen`` does not cover it), and
    the two values differ. Whichever wins the register, the other is the loser on record.
    """
    if state is None:
        return []
    found: list[FieldConflict] = []
    for name, incoming in write.versions():
        current = state.deleted if name == DELETED else state.fields.get(name)
        if current is None or current.device_id == write.device_id:
            continue
        if covers(seen, current.device_id, current.seq) or same_value(
            current.value, incoming.value
        ):
            continue
        if incoming.beats(current):
            found.append(FieldConflict(name, winner=incoming, loser=current))
        else:
            found.append(FieldConflict(name, winner=current, loser=incoming))
    return found


def same_value(left: Scalar, right: Scalar) -> bool:
    """Equality that keeps JSON types apart (``1``, ``1.0`` and ``true`` are different)."""
    return type(left) is type(right) and left == right


def encode_state(state: RecordState) -> bytes:
    """The compact JSON form stored beside each record (its per-field version metadata)."""
    return _ENCODER.encode(state)


def decode_state(raw: bytes | str) -> RecordState:
    return _DECODER.decode(raw)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(RecordState)
