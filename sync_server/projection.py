"""The typed columns of a domain row, projected from a record's merged state.

The merged state (``sync_state``) is the truth; the typed columns beside it exist so that
queries and reports read plain SQL values.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from protocol import merge
from protocol.hlc import Hlc
from protocol.schema import TABLES, FieldType, Scalar


def _to_uuid(value: Scalar) -> uuid.UUID:
    return uuid.UUID(str(value))


def _to_date(value: Scalar) -> date:
    return date.fromisoformat(str(value))


def _to_datetime(value: Scalar) -> datetime:
    return datetime.fromisoformat(str(value))


_COLUMN_VALUE: Mapping[FieldType, Callable[[Scalar], Any]] = {
    FieldType.UUID: _to_uuid,
    FieldType.DATE: _to_date,
    FieldType.TIMESTAMP: _to_datetime,
}


def from_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp with its zone: SQLite keeps none, and everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def domain_row(
    table_name: str, club_id: uuid.UUID, record_id: uuid.UUID, state: merge.RecordState, seq: int
) -> dict[str, Any]:
    spec = TABLES[table_name]
    row: dict[str, Any] = {
        "club_id": club_id,
        "id": record_id,
        "sync_state": merge.encode_state(state).decode(),
        "is_deleted": state.is_deleted,
        "deleted_at": from_ms(Hlc.parse(state.deleted.hlc).wall_ms)
        if state.is_deleted and state.deleted is not None
        else None,
        "updated_seq": seq,
    }
    for name, field_spec in spec.fields.items():
        version = state.fields.get(name)
        value = None if version is None else version.value
        convert = _COLUMN_VALUE.get(field_spec.type)
        row[name] = convert(value) if convert is not None and value is not None else value
    return row
