"""A watched match on one instance (its connections, sequence, replica and view), reading
its changes from the log page by page, and the error frames that end a connection."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from protocol import relay
from protocol.relay import Error, PresentDevice, Problem
from protocol.viewer import MatchView
from protocol.wire import PullRequest, PullResponse
from sync_server.relay.outbox import Frame, Outbox
from sync_server.store import ChangeStore

__all__ = ["Channel", "Pages", "error_frame", "now_ms"]

RELAY_DEVICE = "relay"
"""The device id the hub's own pulls name (they include every device's changes)."""
PAGE = 500


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class Channel:
    """One match's live connections on this instance and what they have been sent."""

    club_id: uuid.UUID
    match_id: uuid.UUID
    coaches: set[Outbox] = field(default_factory=set)
    viewers: set[Outbox] = field(default_factory=set)
    seq: int = -1
    """The log sequence every connection here has been brought up to; -1 until read."""
    target: int = 0
    """The highest sequence announced for this match (or its club)."""
    merged_at: float | None = None
    """Commit time (epoch seconds) of the oldest announced change not yet relayed."""
    view: MatchView | None = None
    """The viewers' view as last sent (every event), kept while viewers are connected."""
    replica: relay.MatchReplica | None = None
    """The match's records, kept up to date from the log while viewers are connected."""
    names_stale: bool = False
    """Club-wide changes arrived: the players' and teams' names may differ now."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    remote: dict[str, tuple[float, list[PresentDevice]]] = field(default_factory=dict)
    """Other instances' coach devices here: origin -> (when heard, devices)."""
    beat_at: float | None = None
    """When its next heartbeat is due (monotonic seconds); set at the first tick."""

    @property
    def idle(self) -> bool:
        return not self.coaches and not self.viewers and (self.task is None or self.task.done())

    # -- presence: coach devices here and, as heard on the bus, on other instances ----------

    def local_devices(self) -> list[PresentDevice]:
        """This instance's coach devices, one entry per device (its newest connection)."""
        devices: dict[str, PresentDevice] = {}
        for outbox in sorted(self.coaches, key=lambda o: o.opened_at):
            if outbox.device_id is not None and outbox.user_id is not None:
                devices[outbox.device_id] = PresentDevice(
                    outbox.device_id, outbox.user_id, outbox.editing
                )
        return list(devices.values())

    def present_devices(self) -> list[PresentDevice]:
        """Every coach device on the match, here first, then as other instances said."""
        devices = {device.device_id: device for device in self.local_devices()}
        for _, remote in self.remote.values():
            for device in remote:
                devices.setdefault(device.device_id, device)
        return sorted(devices.values(), key=by_device)

    def hear(self, origin: str, devices: list[PresentDevice], at: float) -> None:
        if devices:
            self.remote[origin] = (at, devices)
        else:
            self.remote.pop(origin, None)

    def forget_stale(self, before: float) -> bool:
        """Forget what instances not heard from since ``before`` said; True if any."""
        stale = [origin for origin, (heard, _) in self.remote.items() if heard < before]
        for origin in stale:
            del self.remote[origin]
        return bool(stale)


class Pages:
    """The match's changes after ``cursor``, page by page (an async iterator)."""

    def __init__(
        self, store: ChangeStore, club_id: uuid.UUID, match_id: uuid.UUID, cursor: int
    ) -> None:
        self._store = store
        self._club_id = club_id
        self._match_id = match_id
        self._cursor = cursor
        self._done = False

    def __aiter__(self) -> Pages:
        return self

    async def __anext__(self) -> PullResponse:
        if self._done:
            raise StopAsyncIteration
        page = await self._store.pull(
            self._club_id,
            PullRequest(
                device_id=RELAY_DEVICE,
                cursor=self._cursor,
                match_id=self._match_id,
                limit=PAGE,
                include_own=True,
            ),
        )
        self._cursor = page.cursor
        self._done = not page.has_more
        return page


def by_device(device: PresentDevice) -> str:
    return device.device_id


_TITLES = {
    "match-gone": ("Match not found", "the match was archived or deleted"),
    "link-revoked": ("This link has ended", "the coach revoked this link"),
    "link-expired": ("This link has ended", "this link has expired; ask the coach for a new one"),
    "session-revoked": ("Session ended", "this device logged out or was removed; log in again"),
    "forbidden": ("Read-only role", "your role no longer allows a coach's connection"),
}


def error_frame(seq: int, status: int, code: str) -> Frame:
    title, detail = _TITLES[code]
    return Frame(
        Error(seq=seq, problem=Problem(status=status, code=code, title=title, detail=detail))
    )
