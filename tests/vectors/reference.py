"""The reference implementation both sides of the golden vectors are held to.

`generate.py` writes the vectors with it and `tests/test_golden_vectors.py` checks the
protocol package against them with it: an in-memory server around ``plan_push`` (the same
ingest the real stores run), and the canonical JSON of merged records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from protocol import merge
from protocol.hlc import Hlc
from protocol.ingest import DeviceCursor, PushRejected, RecordKey, StoredChange, plan_push
from protocol.wire import PushRequest

__all__ = ["SKEW", "Json", "Server", "records_json", "version_json"]

Json = Any
SKEW: Final = 60_000
"""The server's clock-skew cap in the ingest vectors (PROTOCOL.md §4.2)."""


def version_json(version: merge.FieldVersion | None) -> Json:
    if version is None:
        return None
    return {
        "value": version.value,
        "hlc": version.hlc,
        "device_id": version.device_id,
        "seq": version.seq,
    }


def records_json(replica: Mapping[RecordKey, merge.RecordState]) -> list[Json]:
    """Records sorted by (table, id), fields sorted by name: one canonical order for both."""
    out = []
    ordered = sorted(replica.items(), key=lambda item: (item[0][0], str(item[0][1])))
    for (table, record_id), state in ordered:
        out.append(
            {
                "table": table,
                "id": str(record_id),
                "fields": {name: version_json(v) for name, v in sorted(state.fields.items())},
                "archived": version_json(state.deleted),
                "is_archived": state.is_deleted,
            }
        )
    return out


# -- ingest: change sets in, log, records and conflicts out ----------------------------------


@dataclass
class Server:
    """The state ``plan_push`` needs, kept in memory."""

    max_skew_ms: int = SKEW
    devices: dict[str, DeviceCursor] = field(default_factory=dict)
    stored: dict[str, dict[int, StoredChange]] = field(default_factory=dict)
    records: dict[RecordKey, merge.RecordState] = field(default_factory=dict)
    club_max: Hlc | None = None
    log: list[Json] = field(default_factory=list)

    def push(self, request: PushRequest, now_ms: int) -> Json:
        device = self.devices.get(request.device_id, DeviceCursor())
        try:
            plan = plan_push(
                request,
                device=device,
                stored=self.stored.get(request.device_id, {}),
                records=self.records,
                now_ms=now_ms,
                max_skew_ms=self.max_skew_ms,
                club_max=self.club_max,
            )
        except PushRejected as rejected:
            return {"error": {"status": rejected.status, "code": rejected.code}}
        stored = self.stored.setdefault(request.device_id, {})
        for accepted in plan.accepted:
            change = accepted.change
            effective = accepted.hlc.encode()
            stored[change.seq] = StoredChange(
                change.seq, change.hlc, effective, change.table, change.id, change.op,
                dict(change.fields),
            )  # fmt: skip
            self.log.append(
                {
                    "server_seq": len(self.log) + 1,
                    "device_id": request.device_id,
                    "seq": change.seq,
                    "hlc": effective,
                    "table": change.table,
                    "id": str(change.id),
                    "op": change.op,
                    "fields": dict(change.fields),
                }
            )
        self.records.update(plan.states)
        self.devices[request.device_id] = plan.device
        self.club_max = plan.club_max
        return {
            "acked_seq": plan.device.last_seq,
            "applied": len(plan.accepted),
            "duplicates": plan.duplicates,
            "restamped": [{"seq": r.seq, "hlc": r.hlc} for r in plan.restamped],
            "conflicts": [
                {
                    "table": c.table,
                    "record_id": str(c.record_id),
                    "field": c.conflict.field,
                    "winner": version_json(c.conflict.winner),
                    "loser": version_json(c.conflict.loser),
                }
                for c in plan.conflicts
            ],
        }
