"""One device's sync state, without I/O: what it holds, what it owes the server, what it saw.

A device keeps two things apart:

- the *confirmed* replica: every change the server acknowledged (own changes, merged with
  their effective HLC) or delivered (other devices' changes, pulled);
- the *outbox*: own changes not acknowledged yet, each with the version vector its author had.

What the coach sees, :meth:`DeviceReplica.view`, is the confirmed replica with the outbox
merged on top. Merging is a per-register maximum, so that is exactly what every replica holds
once the outbox is pushed, unless the server restamps a change of a device whose clock runs
fast; the effective HLC is adopted when the push is acknowledged.

This class builds requests and takes in answers; :class:`touchline_client.SyncDevice` sends
them. Taking in the same answer twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from protocol import merge
from protocol.hlc import Hlc, HybridClock
from protocol.replica import Replica
from protocol.schema import Scalar, TableName
from protocol.wire import (
    Change,
    ConflictRecord,
    LoggedChange,
    Op,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
)
from touchline_client.edits import InvalidChange, check_edit
from touchline_client.outbox import Outbox, PendingChange
from touchline_client.persistence import DeviceState, StoredRecord

__all__ = ["DeviceReplica"]


class DeviceReplica:
    """The state of one device; physical time comes from the injected ``now_ms``."""

    def __init__(self, device_id: str, *, now_ms: Callable[[], int]) -> None:
        self.device_id = device_id
        self._now_ms = now_ms
        self._clock = HybridClock(now_ms)
        self._next_seq = 1
        self._integrated: dict[str, int] = {}
        self._cursor = 0
        self._match_cursors: dict[uuid.UUID, int] = {}
        self._outbox = Outbox()
        self._confirmed = Replica()
        self._conflicts: dict[uuid.UUID, ConflictRecord] = {}

    # -- local edits ------------------------------------------------------------------------

    def record(
        self, table: TableName, record_id: uuid.UUID, op: Op, fields: Mapping[str, Scalar]
    ) -> Change:
        """Make a change (after checking it as the server would) and queue it for pushing."""
        check_edit(table, record_id, op, fields, self.current(table, record_id))
        change = Change(
            seq=self._next_seq,
            hlc=self._clock.now().encode(),
            table=table,
            id=record_id,
            op=op,
            fields=dict(fields),
        )
        self._outbox.append(PendingChange(change=change, seen=dict(self._integrated)))
        self._next_seq += 1
        return change

    def create(
        self, table: TableName, record_id: uuid.UUID, fields: Mapping[str, Scalar]
    ) -> Change:
        if self.current(table, record_id) is not None:
            raise InvalidChange(f"{table} {record_id} already exists; update it instead")
        return self.record(table, record_id, "upsert", fields)

    def update(
        self, table: TableName, record_id: uuid.UUID, fields: Mapping[str, Scalar]
    ) -> Change:
        if not fields:
            raise InvalidChange("an update needs at least one field")
        if self.current(table, record_id) is None:
            raise InvalidChange(f"cannot update {table} {record_id}: no such record")
        return self.record(table, record_id, "upsert", fields)

    def current(self, table: str, record_id: uuid.UUID) -> merge.RecordState | None:
        """One record as the device sees it (pending changes included), None if unknown."""
        state = self._confirmed.state(table, record_id)
        for pending in self._outbox:
            change = pending.change
            if change.table == table and change.id == record_id:
                state = merge.apply(state, self._write(change, change.hlc))
        return state

    def _write(self, change: Change, hlc: str) -> merge.Write:
        return merge.Write(self.device_id, change.seq, hlc, change.op, change.fields)

    # -- what the device holds --------------------------------------------------------------

    def view(self) -> Replica:
        """Confirmed records with pending changes merged on top: what the coach sees."""
        replica = Replica()
        for (table, record_id), state in self._confirmed.snapshot().items():
            replica.put_state(table, record_id, state)
        for pending in self._outbox:
            change = pending.change
            replica.apply_write(change.table, change.id, self._write(change, change.hlc))
        return replica

    @property
    def confirmed(self) -> Replica:
        return self._confirmed

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def cursor(self) -> int:
        return self._cursor

    @property
    def version_vector(self) -> dict[str, int]:
        vector = dict(self._integrated)
        if self.last_seq:
            vector[self.device_id] = self.last_seq
        return vector

    @property
    def clock(self) -> Hlc:
        return self._clock.last

    @property
    def conflicts(self) -> list[ConflictRecord]:
        return list(self._conflicts.values())

    # -- push -------------------------------------------------------------------------------

    def push_request(self, max_changes: int) -> PushRequest | None:
        """The next change set to push: the outbox's leading run sharing one ``seen``."""
        run = self._outbox.next_run(max_changes)
        if not run:
            return None
        return PushRequest(
            device_id=self.device_id, changes=[p.change for p in run], seen=run[0].seen
        )

    def acknowledge(self, response: PushResponse) -> tuple[int, list[ConflictRecord]]:
        """Move acknowledged changes to the confirmed replica with their effective HLC;
        returns how many moved and the conflicts not known before."""
        effective = {restamp.seq: restamp.hlc for restamp in response.restamped}
        acked = self._outbox.acknowledge(response.acked_seq)
        for pending in acked:
            change = pending.change
            hlc = effective.get(change.seq, change.hlc)
            self._confirmed.apply_write(change.table, change.id, self._write(change, hlc))
        return len(acked), self.learn_conflicts(response.conflicts)

    # -- pull -------------------------------------------------------------------------------

    def pull_request(self, match_id: uuid.UUID | None, limit: int) -> PullRequest:
        # Everything up to the club-wide cursor is integrated, so a match's pull can start
        # there when that is further along than the match's own cursor.
        cursor = self._cursor
        if match_id is not None:
            cursor = max(cursor, self._match_cursors.get(match_id, 0))
        return PullRequest(device_id=self.device_id, cursor=cursor, match_id=match_id, limit=limit)

    def accept_page(
        self, request: PullRequest, page: PullResponse
    ) -> tuple[int, list[ConflictRecord]]:
        """Integrate one pulled page and advance the cursor it was pulled with."""
        for change in page.changes:
            self.integrate(change)
        new = self.learn_conflicts(page.conflicts)
        if request.match_id is None:
            self._cursor = max(self._cursor, page.cursor)
            self._match_cursors = {m: c for m, c in self._match_cursors.items() if c > self._cursor}
        elif page.cursor > self._cursor:
            known = self._match_cursors.get(request.match_id, 0)
            self._match_cursors[request.match_id] = max(known, page.cursor)
        return len(page.changes), new

    def integrate(self, change: LoggedChange) -> None:
        """Merge a change the server logged: clock, replica and version vector."""
        self._clock.receive(Hlc.parse(change.hlc))
        self._confirmed.apply(change)
        # The vector claims *every* change of a device up to its entry, so it only moves over
        # consecutive sequences: a match-scoped pull skips other matches' changes and leaves
        # the entry where it is until a club-wide pull fills the gap. (Claiming too much would
        # hide real conflicts; claiming too little at worst ledgers a harmless one.)
        known = self._integrated.get(change.device_id, 0)
        if change.device_id != self.device_id and change.seq == known + 1:
            self._integrated[change.device_id] = change.seq

    def learn_conflicts(self, conflicts: list[ConflictRecord]) -> list[ConflictRecord]:
        """Remember conflicts (a reinstated copy replaces an older one); returns the new."""
        new = [c for c in conflicts if c.id not in self._conflicts]
        for conflict in conflicts:
            known = self._conflicts.get(conflict.id)
            if known is None or (conflict.reinstated_seq or 0) >= (known.reinstated_seq or 0):
                self._conflicts[conflict.id] = conflict
        return new

    # -- persistence ------------------------------------------------------------------------

    def to_state(self) -> DeviceState:
        return DeviceState(
            device_id=self.device_id,
            next_seq=self._next_seq,
            hlc=self._clock.last.encode(),
            integrated=dict(self._integrated),
            cursor=self._cursor,
            match_cursors=dict(self._match_cursors),
            outbox=list(self._outbox),
            records=[
                StoredRecord(table, record_id, state)
                for (table, record_id), state in self._confirmed.snapshot().items()
            ],
            conflicts=list(self._conflicts.values()),
        )

    @classmethod
    def from_state(cls, saved: DeviceState, *, now_ms: Callable[[], int]) -> DeviceReplica:
        replica = cls(saved.device_id, now_ms=now_ms)
        outbox = Outbox(saved.outbox)
        if outbox.first_seq is not None and outbox.first_seq + len(outbox) != saved.next_seq:
            raise ValueError("the saved outbox does not end right before the next sequence")
        replica._clock = HybridClock(now_ms, Hlc.parse(saved.hlc))
        replica._next_seq = saved.next_seq
        replica._integrated = dict(saved.integrated)
        replica._cursor = saved.cursor
        replica._match_cursors = dict(saved.match_cursors)
        replica._outbox = outbox
        for record in saved.records:
            replica._confirmed.put_state(record.table, record.id, record.state)
        replica._conflicts = {conflict.id: conflict for conflict in saved.conflicts}
        return replica
