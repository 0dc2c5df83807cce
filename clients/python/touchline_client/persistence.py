"""A device's whole sync state as one JSON file, replaced atomically.

The file holds everything a device needs to carry on after its process died: the outbox
(with each change's ``seen`` vector), its next sequence, its hybrid clock, what it has
integrated, its pull cursors, the confirmed records and the conflicts it knows about.

Writing is "write a temporary file beside the target, fsync it, ``os.replace`` it over the
target, fsync the directory": a reader (or a restarted device) sees either the old state or
the new one, never a torn mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Final, Literal

import msgspec

from protocol.merge import RecordState
from protocol.wire import ConflictRecord
from touchline_client.outbox import PendingChange

__all__ = ["FORMAT_VERSION", "DeviceState", "StoredRecord", "load_state", "save_state"]

FORMAT_VERSION: Final = 1


class StoredRecord(msgspec.Struct, frozen=True, array_like=True):
    """One confirmed record: its table, id and merged state."""

    table: str
    id: uuid.UUID
    state: RecordState


class DeviceState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything :class:`touchline_client.SyncDevice` keeps, as saved on disk."""

    format: Literal[1] = FORMAT_VERSION
    device_id: str
    next_seq: int
    """The sequence the device's next change gets (dense per device, never reused)."""
    hlc: str
    """The greatest HLC the device issued or received; its clock never goes back."""
    integrated: dict[str, int]
    """Other devices' sequences integrated contiguously from the server's log."""
    cursor: int
    """Club-wide pull cursor: every change up to it has been integrated."""
    match_cursors: dict[uuid.UUID, int] = {}
    """Pull cursors of match-scoped pulls that ran ahead of the club-wide one."""
    outbox: list[PendingChange] = []
    records: list[StoredRecord] = []
    conflicts: list[ConflictRecord] = []


_DECODER = msgspec.json.Decoder(DeviceState)


def save_state(path: Path, state: DeviceState) -> None:
    """Write ``state`` to ``path`` atomically and durably."""
    encoded = msgspec.json.encode(state)
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def load_state(path: Path) -> DeviceState:
    """Read a state written by :func:`save_state`; raises ``msgspec.DecodeError`` if corrupt."""
    return _DECODER.decode(path.read_bytes())


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open a directory for this.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
