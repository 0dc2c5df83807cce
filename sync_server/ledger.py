"""Conflict ledger rows: how a :class:`ConflictRecord` is stored and read back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Row

from protocol import merge
from protocol.schema import Scalar
from protocol.wire import ConflictRecord, ConflictSide
from sync_server.projection import as_utc

_SCALAR: msgspec.json.Decoder[Scalar] = msgspec.json.Decoder(Scalar)
_encode = msgspec.json.encode


def side(version: merge.FieldVersion) -> ConflictSide:
    return ConflictSide(
        value=version.value, device_id=version.device_id, seq=version.seq, hlc=version.hlc
    )


def conflict_row(club_id: uuid.UUID, record: ConflictRecord, when: datetime) -> dict[str, Any]:
    return {
        "club_id": club_id,
        "id": record.id,
        "server_seq": record.server_seq,
        "table_name": record.table,
        "record_id": record.record_id,
        "match_id": record.match_id,
        "field": record.field,
        "winner_value": _encode(record.winner.value).decode(),
        "winner_device": record.winner.device_id,
        "winner_device_seq": record.winner.seq,
        "winner_hlc": record.winner.hlc,
        "loser_value": _encode(record.loser.value).decode(),
        "loser_device": record.loser.device_id,
        "loser_device_seq": record.loser.seq,
        "loser_hlc": record.loser.hlc,
        "detected_at": when,
        "reinstated_seq": None,
        "reinstated_by": None,
    }


def conflict_from_row(row: Row[Any]) -> ConflictRecord:
    detected = as_utc(row.detected_at)
    return ConflictRecord(
        id=row.id,
        server_seq=int(row.server_seq),
        table=row.table_name,
        record_id=row.record_id,
        match_id=row.match_id,
        field=row.field,
        winner=ConflictSide(
            value=_SCALAR.decode(row.winner_value),
            device_id=row.winner_device,
            seq=int(row.winner_device_seq),
            hlc=row.winner_hlc,
        ),
        loser=ConflictSide(
            value=_SCALAR.decode(row.loser_value),
            device_id=row.loser_device,
            seq=int(row.loser_device_seq),
            hlc=row.loser_hlc,
        ),
        detected_at=detected.isoformat(),
        reinstated_seq=row.reinstated_seq,
        reinstated_by=row.reinstated_by,
    )
