"""What one instance remembers of the clubs it pushed for, so a push can skip its read.

A club's memo holds the log head it was true at, the club's greatest HLC, the cursors of the
devices that pushed here and the merged states of records touched here lately. A push planned
on a memo writes only if the club's head is still the memo's (the write checks it under the
club's lock, sync_server.store_pg): every commit that changes a record, a cursor or the HLC
also moves the head, so a memo whose head matches is exact. A memo that is out of date costs
one wasted round trip, never a wrong merge.

Memory is bounded: at most ``max_clubs`` clubs and ``max_records`` record states over all
of them (the least recently used club is forgotten first), and ``max_records_per_club`` in
any one club (its least recently touched record first). A record the memo does not hold is
planned as new, and the write checks that it is.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from protocol import merge
from protocol.hlc import Hlc
from protocol.ingest import DeviceCursor, RecordKey

MAX_RECORDS: Final = 20_000
"""Record states kept over all clubs (a few hundred bytes each)."""
MAX_RECORDS_PER_CLUB: Final = 2_000
"""Record states kept for one club: a season's live matches, not its whole history."""
MAX_CLUBS: Final = 10_000
"""Clubs remembered (a memo without records still holds a head and device cursors)."""


@dataclass(slots=True)
class ClubMemo:
    head: int
    club_max: Hlc | None
    devices: dict[str, DeviceCursor] = field(default_factory=dict)
    records: OrderedDict[RecordKey, merge.RecordState] = field(default_factory=OrderedDict)


class ClubMemos:
    """Memos by club, least recently used first."""

    def __init__(
        self,
        *,
        max_clubs: int = MAX_CLUBS,
        max_records: int = MAX_RECORDS,
        max_records_per_club: int = MAX_RECORDS_PER_CLUB,
    ) -> None:
        self._clubs: OrderedDict[uuid.UUID, ClubMemo] = OrderedDict()
        self._max_clubs = max_clubs
        self._max_records = max_records
        self._max_per_club = max_records_per_club
        self._records = 0

    def __len__(self) -> int:
        return len(self._clubs)

    @property
    def records(self) -> int:
        """Record states held over all clubs."""
        return self._records

    def get(self, club_id: uuid.UUID) -> ClubMemo | None:
        memo = self._clubs.get(club_id)
        if memo is not None:
            self._clubs.move_to_end(club_id)
        return memo

    def forget(self, club_id: uuid.UUID) -> None:
        memo = self._clubs.pop(club_id, None)
        if memo is not None:
            self._records -= len(memo.records)

    def committed(
        self,
        club_id: uuid.UUID,
        *,
        before: int,
        after: int,
        club_max: Hlc | None,
        device_id: str,
        device: DeviceCursor,
        states: Mapping[RecordKey, merge.RecordState],
    ) -> None:
        """Record a commit that moved the club's head from ``before`` to ``after``, with
        nothing else committed in between (the club's lock was held): the device's cursor
        and the states of the records it read or wrote are what they are at ``after``.

        A memo still at ``before`` moves on with it; any other is replaced by one holding
        only what this commit knew."""
        memo = self._clubs.get(club_id)
        if memo is None or memo.head != before:
            self.forget(club_id)
            memo = ClubMemo(head=after, club_max=club_max)
            self._clubs[club_id] = memo
        else:
            self._clubs.move_to_end(club_id)
            memo.head, memo.club_max = after, club_max
        memo.devices[device_id] = device
        for key, state in states.items():
            if key in memo.records:
                memo.records.move_to_end(key)
            else:
                self._records += 1
            memo.records[key] = state
        while len(memo.records) > self._max_per_club:
            memo.records.popitem(last=False)
            self._records -= 1
        while len(self._clubs) > 1 and (
            self._records > self._max_records or len(self._clubs) > self._max_clubs
        ):
            _, oldest = self._clubs.popitem(last=False)
            self._records -= len(oldest.records)
