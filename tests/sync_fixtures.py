"""Builders for change sets, shared by the store contract and endpoint tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from protocol.hlc import ZERO, Hlc
from protocol.schema import Scalar, TableName
from protocol.wire import Change, Op, PushRequest

BASE_MS = 1_780_000_000_000


@dataclass
class FakeClock:
    """Physical time the test controls."""

    now: int = BASE_MS

    def now_ms(self) -> int:
        return self.now


@dataclass
class ScriptedDevice:
    """Writes change sets the way a well-behaved device would (dense seqs, rising HLCs)."""

    device_id: str
    clock: FakeClock
    skew_ms: int = 0
    seq: int = 0
    logical: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    last: Hlc = ZERO

    def change(
        self,
        table: TableName,
        record_id: uuid.UUID,
        fields: dict[str, Scalar] | None = None,
        op: Op = "upsert",
    ) -> Change:
        self.seq += 1
        wall = self.clock.now + self.skew_ms
        self.last = Hlc(wall, 0) if wall > self.last.wall_ms else self.last.successor()
        return Change(
            seq=self.seq, hlc=self.last.encode(), table=table, id=record_id, op=op,
            fields=fields or {},
        )  # fmt: skip

    def saw(self, hlc: str, device_id: str, seq: int) -> None:
        """Integrate a change pulled from another device (HLC receive rule + vector)."""
        self.last = max(self.last, Hlc.parse(hlc))
        self.seen[device_id] = max(self.seen.get(device_id, 0), seq)

    def push(self, *changes: Change) -> PushRequest:
        return PushRequest(device_id=self.device_id, changes=list(changes), seen=dict(self.seen))


def new_match_changes(
    device: ScriptedDevice, match_id: uuid.UUID, home: uuid.UUID, away: uuid.UUID
) -> list[Change]:
    return [
        device.change("teams", home, {"name": "Riverside U10"}),
        device.change("teams", away, {"name": "Hillview U10", "is_opponent": True}),
        device.change(
            "matches",
            match_id,
            {
                "home_team_id": str(home),
                "away_team_id": str(away),
                "kickoff_ts": "2026-11-21T10:00:00+00:00",
                "period_format": "half",
                "duration_mins": 50,
            },
        ),
    ]


def goal(device: ScriptedDevice, match_id: uuid.UUID, team: uuid.UUID, **extra: Scalar) -> Change:
    fields: dict[str, Scalar] = {
        "match_id": str(match_id), "kind": "goal", "team_id": str(team),
        "period_number": 1, "clock_ms": 60_000,
    }  # fmt: skip
    fields.update(extra)
    return device.change("events", uuid.uuid4(), fields)
