"""The change store seam: where pushes are applied and pulls are read.

Every implementation passes the contract suite in ``tests/test_store_contract.py``. The store
owns transactions: ``push`` returns only after its changes are durable, so the caller may
acknowledge and publish.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.compaction import CompactionReport
from protocol.ingest import RecordKey, ServerWrite
from protocol.merge import RecordState
from protocol.wire import (
    ConflictRecord,
    LoggedChange,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)


@dataclass(frozen=True, slots=True)
class Announcement:
    """What one commit added to a club's log, for the realtime relay."""

    club_id: uuid.UUID
    after: int
    """The log head before the commit."""
    seq: int
    """The log head after it: the commit's entries are ``after + 1 … seq``."""
    matches: list[uuid.UUID] | None
    """The matches the new entries belong to; None when some were club-wide."""
    entries: list[tuple[uuid.UUID | None, LoggedChange]] | None
    """The entries with their match, or None when the relay must read them from the log."""
    conflicts: list[ConflictRecord]
    notified: bool = False
    """The commit itself told the other instances (a NOTIFY inside the transaction)."""


Announce = Callable[[Announcement], None]
"""Called after a commit that added changes; the realtime relay listens here."""


@dataclass(frozen=True, slots=True)
class CommitNotice:
    """How a commit can tell the relay's other instances itself: PostgreSQL delivers a
    NOTIFY sent inside a transaction when, and only if, it commits, in commit order."""

    channel: str
    payload: Callable[[Announcement], str | None]
    """The notification for a commit about to happen; None when it must go by the bus."""


def touched_matches(match_ids: Iterable[uuid.UUID | None]) -> list[uuid.UUID] | None:
    """The distinct matches of a commit's changes, or None if any change was club-wide."""
    found: dict[uuid.UUID, None] = {}
    for match_id in match_ids:
        if match_id is None:
            return None
        found[match_id] = None
    return list(found)


SERVER_DEVICE = "server"
"""The device id under which the server itself records changes (reinstated conflict values).
Clients may not push as this device."""


@dataclass(frozen=True, slots=True)
class RecordedChanges:
    """What recording changes for a device stored: the log entries, the conflicts they
    revealed and the merged state of every record they touched."""

    changes: list[LoggedChange]
    conflicts: list[ConflictRecord]
    states: Mapping[RecordKey, RecordState]


class WallClock(Protocol):
    """Physical time in epoch milliseconds; tests inject a fake one."""

    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@runtime_checkable
class ChangeStore(Protocol):
    announce: Announce | None
    """Set by the relay: called after every commit that added changes to a club's log."""

    commit_notice: CommitNotice | None
    """Set by the relay when its bus is the store's own database: a store that can sends the
    notification inside the commit (and says so in the announcement)."""

    async def push(self, club_id: uuid.UUID, request: PushRequest) -> PushResponse:
        """Apply a change set atomically and idempotently; raise ``PushRejected`` if refused."""
        ...

    async def pull(self, club_id: uuid.UUID, request: PullRequest) -> PullResponse:
        """Changes after ``request.cursor`` in server order, and conflicts recorded meanwhile."""
        ...

    async def conflicts(
        self, club_id: uuid.UUID, *, match_id: uuid.UUID | None, since: int
    ) -> list[ConflictRecord]:
        """The conflict ledger, oldest first."""
        ...

    async def reinstate(
        self, club_id: uuid.UUID, conflict_id: uuid.UUID, *, by: uuid.UUID | None = None
    ) -> ReinstateResponse:
        """Write a conflict's losing value again, causally after the winner; ``by`` is the
        user who asked."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction that other writes of the store wait for (SQLite has one
        writer); account changes that must commit with a server change run inside it."""
        ...

    async def record(
        self,
        conn: AsyncConnection,
        club_id: uuid.UUID,
        writes: Sequence[ServerWrite],
        *,
        device_id: str = SERVER_DEVICE,
        causal: bool = False,
    ) -> RecordedChanges:
        """Record changes the server makes, inside ``conn``'s transaction: its own (as
        ``server``) or a REST caller's (as that caller's REST device, ``causal`` so that the
        writes overwrite everything the club's log holds)."""
        ...

    async def compact(self, club_id: uuid.UUID, match_id: uuid.UUID) -> CompactionReport:
        """Drop the log entries of a finished match that hold no winning version any more,
        in one transaction (PROTOCOL.md §6.6); raise ``CompactionRefused`` (nothing changed)
        when the match is not at a causally stable point."""
        ...

    async def ping(self) -> None:
        """Raise when the backing database cannot be reached."""
        ...

    async def close(self) -> None:
        """Close the connections the store opened itself (its engine stays open)."""
        ...
