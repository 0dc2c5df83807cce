"""Wire types of the sync protocol (JSON via msgspec). PROTOCOL.md describes each field.

Requests reject unknown fields: a client that sends a field the server does not understand
learns it at once instead of having it silently ignored. Responses are plain structs that
clients should decode leniently, so the server can add fields without breaking them.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from protocol.hlc import END_OF_TEXT, HLC_PATTERN
from protocol.schema import Scalar, TableName

DeviceId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+" + END_OF_TEXT)
]
HlcText = Annotated[str, msgspec.Meta(pattern=HLC_PATTERN)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
Cursor = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Op = Literal["upsert", "delete", "restore"]
# Field values as the OpenAPI schema documents them. The server's docs render the `Scalar`
# union as `oneOf`, which an integer (both an "integer" and a "number") matches twice and so
# fails: every integer value broke the schema. A list of types matches it once. (Litestar
# reads `extra` from a struct field's own Meta only, hence one alias per shape.)
_SCALAR_SCHEMA = {"type": ["string", "integer", "number", "boolean", "null"]}
WireScalar = Annotated[
    Scalar, msgspec.Meta(extra_json_schema={"extra": {"one_of": None, **_SCALAR_SCHEMA}})
]
WireFields = Annotated[
    dict[str, Scalar],
    msgspec.Meta(extra_json_schema={"extra": {"additional_properties": _SCALAR_SCHEMA}}),
]
FieldMap = Annotated[
    dict[Annotated[str, msgspec.Meta(min_length=1, max_length=64)], Scalar],
    msgspec.Meta(extra_json_schema={"extra": {"additional_properties": _SCALAR_SCHEMA}}),
]


class Change(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One change a device made to one record."""

    seq: Seq
    """Dense per device: the device's first change is 1, the next 2, and so on."""
    hlc: HlcText
    """The device's hybrid logical clock when it made the change."""
    table: TableName
    id: uuid.UUID
    op: Op = "upsert"
    fields: FieldMap = {}
    """For ``upsert``: the fields written and their new values. Empty for delete/restore."""


class PushRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A change set: consecutive changes of one device, applied atomically."""

    device_id: DeviceId
    changes: Annotated[list[Change], msgspec.Meta(min_length=1)]
    seen: dict[DeviceId, Cursor] = {}
    """The version vector of what the device had integrated when it made the earliest change
    of this set; it tells a causal overwrite from a conflict."""


class ConflictSide(msgspec.Struct, frozen=True, kw_only=True):
    value: WireScalar
    device_id: str
    seq: int
    hlc: str


class ConflictRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Two values written to one field without either writer seeing the other."""

    id: uuid.UUID
    server_seq: int
    """The server sequence of the change whose arrival revealed the conflict."""
    table: TableName
    record_id: uuid.UUID
    match_id: uuid.UUID | None
    field: str
    winner: ConflictSide
    loser: ConflictSide
    detected_at: str
    reinstated_seq: int | None = None
    """Set when a coach reinstated the losing value: the server sequence of that change."""
    reinstated_by: uuid.UUID | None = None
    """The user who reinstated it."""


class Restamp(msgspec.Struct, frozen=True, kw_only=True):
    """A change whose effective HLC differs from the one the device sent (clock too fast)."""

    seq: int
    hlc: str


class PushResponse(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    acked_seq: int
    """Every change of this device up to this sequence is durably stored."""
    applied: int
    duplicates: int
    cursor: int
    """The club's server sequence once this push was stored."""
    restamped: list[Restamp]
    conflicts: list[ConflictRecord]
    server_time_ms: int


class PullRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    device_id: DeviceId
    cursor: Cursor = 0
    match_id: uuid.UUID | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    include_own: bool = False


class LoggedChange(msgspec.Struct, frozen=True, kw_only=True):
    """A change as the server stored it, with its place in the club's log."""

    server_seq: int
    device_id: str
    seq: int
    hlc: str
    """The effective HLC (see ``Restamp``); replicas merge on this value."""
    table: TableName
    id: uuid.UUID
    op: Op
    fields: WireFields


class PullResponse(msgspec.Struct, frozen=True, kw_only=True):
    changes: list[LoggedChange]
    conflicts: list[ConflictRecord]
    cursor: int
    """Pass this back as ``cursor`` to continue; everything up to it has been delivered."""
    has_more: bool
    server_time_ms: int


class ReinstateResponse(msgspec.Struct, frozen=True, kw_only=True):
    conflict: ConflictRecord
    change: LoggedChange
    cursor: int


class ConflictList(msgspec.Struct, frozen=True, kw_only=True):
    conflicts: list[ConflictRecord]
