"""What this instance last knew of each club's log, so a push can skip its reads.

A push needs the club's log head and greatest HLC, the device's cursor and the merged state of
the records it touches. Read under the club's lock, the push takes four round trips (the
lock, the read, the write, the commit) where the write alone would do. An instance that has
just written a club knows all of it already: it wrote them. A :class:`ClubHead` keeps that
knowledge, tagged with the log head it holds at.

Invariant: everything in a head is exactly what the database holds while the club's
``log_seq`` still equals ``head.seq``, because every writer of a club's records, devices or
head moves ``log_seq`` forward in the same transaction. The store never trusts a head
blindly: its write commits only if ``log_seq`` still equals ``head.seq`` and the records and
device the head does not know are still absent (``store_pg``). A stale head costs one wasted
round trip and a fall back to the locked read, never a wrong merge.

Bounded: a head keeps its most recently written records and devices, and the instance keeps
its most recently used clubs' heads, within a budget of records over all of them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

from protocol import merge
from protocol.hlc import Hlc
from protocol.ingest import DeviceCursor, RecordKey

if TYPE_CHECKING:
    from sync_server.store_sql import PlannedWrites

MAX_CLUBS: Final = 2_048
MAX_RECORDS: Final = 16_384
"""Records kept over all clubs: a record's merged state takes about 2 KB, so at most about
32 MB."""
RECORDS_PER_CLUB: Final = 256
DEVICES_PER_CLUB: Final = 64

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class ClubHead:
    """A club's log head ``seq``, its greatest HLC, and some devices' cursors and records'
    merged states, all exact as of ``seq``. Records and devices not here are unknown, not
    absent."""

    seq: int
    club_max: Hlc | None
    devices: dict[str, DeviceCursor] = field(default_factory=dict)
    records: dict[RecordKey, merge.RecordState] = field(default_factory=dict)
    max_records: int = RECORDS_PER_CLUB
    max_devices: int = DEVICES_PER_CLUB

    def advance(self, writes: PlannedWrites, states: Mapping[RecordKey, merge.RecordState]) -> None:
        """Take in one commit made on top of this head: its writes (the head they reached,
        the pushing device's cursor) and the merged state of every record it wrote."""
        self.seq = writes.log_seq
        self.club_max = writes.club_max
        _remember(self.devices, {writes.device_id: writes.device}, self.max_devices)
        _remember(self.records, states, self.max_records)


def _remember(kept: dict[K, V], new: Mapping[K, V], limit: int) -> None:
    """Put ``new`` last in ``kept`` (most recent), dropping the oldest beyond ``limit``."""
    for key, value in new.items():
        kept.pop(key, None)
        kept[key] = value
    for _ in range(len(kept) - limit):
        del kept[next(iter(kept))]


class ClubHeads:
    """The heads this instance knows, and a turn per club: the instance's own pushes to one
    club take turns, so each starts from the head the previous one left (the database
    serialises them anyway, under the club's lock)."""

    def __init__(
        self,
        *,
        max_clubs: int = MAX_CLUBS,
        max_records: int = MAX_RECORDS,
        records_per_club: int = RECORDS_PER_CLUB,
        devices_per_club: int = DEVICES_PER_CLUB,
    ) -> None:
        self._max_clubs = max_clubs
        self._max_records = max_records
        self._records = 0
        """Records kept over all heads."""
        self._records_per_club = records_per_club
        self._devices_per_club = devices_per_club
        self._heads: OrderedDict[uuid.UUID, ClubHead] = OrderedDict()
        self._turns: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._heads)

    @property
    def records(self) -> int:
        return self._records

    @asynccontextmanager
    async def turn(self, club_id: uuid.UUID) -> AsyncIterator[None]:
        """Wait for the other pushes of this instance to the club, then hold it."""
        lock, users = self._turns.get(club_id) or (asyncio.Lock(), 0)
        self._turns[club_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[club_id]
            if users == 1:
                del self._turns[club_id]
            else:
                self._turns[club_id] = (lock, users - 1)

    def get(self, club_id: uuid.UUID) -> ClubHead | None:
        head = self._heads.get(club_id)
        if head is not None:
            self._heads.move_to_end(club_id)
        return head

    def forget(self, club_id: uuid.UUID) -> None:
        """Drop what is known of the club: it may have moved on without this instance."""
        head = self._heads.pop(club_id, None)
        if head is not None:
            self._records -= len(head.records)

    def advance(
        self,
        club_id: uuid.UUID,
        head: ClubHead,
        writes: PlannedWrites,
        states: Mapping[RecordKey, merge.RecordState],
    ) -> None:
        """``head.advance`` within the instance's budget, if the head is still the club's (the
        budget may have let go of it meanwhile)."""
        if self._heads.get(club_id) is not head:
            return
        before = len(head.records)
        head.advance(writes, states)
        self._records += len(head.records) - before
        self._trim()

    def _trim(self) -> None:
        """Let go of the least recently used clubs beyond the budgets (never the last one)."""
        while len(self._heads) > 1 and (
            len(self._heads) > self._max_clubs or self._records > self._max_records
        ):
            _, head = self._heads.popitem(last=False)
            self._records -= len(head.records)

    def start(
        self, club_id: uuid.UUID, seq: int, club_max: Hlc | None, read: ClubHead | None = None
    ) -> ClubHead:
        """A fresh head for the club at ``seq``. ``read``: what was read under the club's lock
        at the head before, kept if this instance's own head was at that same point."""
        known = self._heads.get(club_id)
        self.forget(club_id)
        head = ClubHead(
            seq, club_max, max_records=self._records_per_club, max_devices=self._devices_per_club
        )
        if read is not None:
            if known is not None and known.seq == read.seq:
                _remember(head.devices, known.devices, head.max_devices)
                _remember(head.records, known.records, head.max_records)
            _remember(head.devices, read.devices, head.max_devices)
            _remember(head.records, read.records, head.max_records)
        self._heads[club_id] = head
        self._records += len(head.records)
        self._trim()
        return head
