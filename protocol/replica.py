"""An in-memory replica: the merged state of every record a device or test has seen."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from protocol import merge
from protocol.ingest import RecordKey
from protocol.schema import Scalar
from protocol.wire import LoggedChange


class Replica:
    """Records keyed by (table, id), each a :class:`merge.RecordState`."""

    def __init__(self) -> None:
        self._records: dict[RecordKey, merge.RecordState] = {}

    def apply(self, change: LoggedChange) -> None:
        """Merge a change as the server logged it (order, batching and repeats don't matter)."""
        write = merge.Write(change.device_id, change.seq, change.hlc, change.op, change.fields)
        self.apply_write(change.table, change.id, write)

    def apply_write(self, table: str, record_id: uuid.UUID, write: merge.Write) -> None:
        key = (table, record_id)
        self._records[key] = merge.apply(self._records.get(key), write)

    def state(self, table: str, record_id: uuid.UUID) -> merge.RecordState | None:
        return self._records.get((table, record_id))

    def put_state(self, table: str, record_id: uuid.UUID, state: merge.RecordState) -> None:
        """Replace a record's state wholesale (used when rebuilding from a snapshot)."""
        self._records[(table, record_id)] = state

    def records(self, table: str) -> Iterator[tuple[uuid.UUID, merge.RecordState]]:
        for (name, record_id), state in self._records.items():
            if name == table:
                yield record_id, state

    def live(self, table: str) -> dict[uuid.UUID, dict[str, Scalar]]:
        """The current values of every record of ``table`` that is not archived."""
        return {rid: state.values() for rid, state in self.records(table) if not state.is_deleted}

    def snapshot(self) -> dict[RecordKey, merge.RecordState]:
        """A copy of every record's state; equal snapshots mean converged replicas."""
        return dict(self._records)

    def __len__(self) -> int:
        return len(self._records)
