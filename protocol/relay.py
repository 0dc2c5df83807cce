"""The realtime relay's wire messages (PROTOCOL.md §17) and the viewer's deltas.

Pure: what the server says to a live socket, what a socket may say back, what instances tell
each other on the bus, and how one viewer view differs from the next. The server's relay
(``sync_server.relay``) only moves these messages around.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import msgspec

from protocol.merge import RecordState, Write
from protocol.merge import apply as merge_apply
from protocol.schema import Scalar, TableName
from protocol.viewer import (
    RECENT_EVENTS,
    MatchView,
    ViewerEvent,
    ViewerMatch,
    match_view,
    mm_ss,
)
from protocol.wire import ConflictRecord, LoggedChange, PushRequest, PushResponse

__all__ = [
    "BusMessage",
    "ClientMessage",
    "EditingRecord",
    "PresentDevice",
    "viewer_delta",
]

# -- between instances: the bus --------------------------------------------------------------


class Committed(msgspec.Struct, frozen=True, tag="committed", tag_field="k"):
    """A club's log grew to ``seq``. ``matches`` names the matches the new changes belong to;
    ``None`` means some changes were club-wide (teams, players, settings), which can alter
    what any of the club's matches shows (a player's name)."""

    club: uuid.UUID
    seq: int
    matches: list[uuid.UUID] | None
    at_ms: int = 0
    """When it committed (epoch ms): the start of the merge-to-send latency."""
    after: int = -1
    """The log head before the commit (-1: unknown); channels of other matches that were
    exactly there move on to ``seq`` without reading the log."""
    origin: str = ""
    """The instance whose commit sent this notice itself (PostgreSQL: a NOTIFY inside the
    transaction); empty when the instance published it on the bus after the commit."""


class LinkRevoked(msgspec.Struct, frozen=True, tag="link_revoked", tag_field="k"):
    link: uuid.UUID


class SessionsChanged(msgspec.Struct, frozen=True, tag="sessions_changed", tag_field="k"):
    """Sessions were revoked or a member's role changed somewhere: look them up again."""

    origin: str
    """The instance that published it (it has already acted)."""


class EditingRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    table: TableName
    id: uuid.UUID


class PresentDevice(msgspec.Struct, frozen=True):
    device_id: str
    user_id: uuid.UUID
    editing: EditingRecord | None = None


class PresenceShared(msgspec.Struct, frozen=True, tag="presence", tag_field="k"):
    """One instance's coach devices on one match, as of now. Instances repeat it at every
    heartbeat; a copy older than the presence lifetime is forgotten (its instance died)."""

    origin: str
    club: uuid.UUID
    match: uuid.UUID
    devices: list[PresentDevice]


BusMessage = Committed | LinkRevoked | SessionsChanged | PresenceShared

# -- server to socket -----------------------------------------------------------------------


class Snapshot(msgspec.Struct, frozen=True, tag="snapshot", tag_field="type"):
    seq: int
    view: MatchView


class Delta(msgspec.Struct, frozen=True, tag="delta", tag_field="type", omit_defaults=True):
    """What one merge changed in the viewer's view, as one message: the match header when
    the scoreboard, status, period or clock changed, the events added or changed (oldest
    first), and the events archived."""

    seq: int
    server_time_ms: int
    match: ViewerMatch | None = None
    events: list[ViewerEvent] = []
    removed: list[uuid.UUID] = []


ViewerMessage = Snapshot | Delta


class Catchup(msgspec.Struct, frozen=True, tag="catchup", tag_field="type"):
    seq: int
    changes: list[LoggedChange]
    conflicts: list[ConflictRecord]
    more: bool


class Changes(msgspec.Struct, frozen=True, tag="changes", tag_field="type"):
    seq: int
    changes: list[LoggedChange]
    conflicts: list[ConflictRecord]


class Presence(msgspec.Struct, frozen=True, tag="presence", tag_field="type"):
    seq: int
    devices: list[PresentDevice]


class Ack(msgspec.Struct, frozen=True, tag="ack", tag_field="type"):
    seq: int
    id: str
    result: PushResponse


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    status: int
    code: str
    title: str
    detail: str
    extensions: dict[str, Any] = {}


class Error(msgspec.Struct, frozen=True, tag="error", tag_field="type", omit_defaults=True):
    seq: int
    problem: Problem
    id: str | None = None
    """The client message it answers, when it answers one."""


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat", tag_field="type"):
    seq: int
    server_time_ms: int


class Pong(msgspec.Struct, frozen=True, tag="pong", tag_field="type"):
    seq: int
    server_time_ms: int


class Resync(msgspec.Struct, frozen=True, tag="resync", tag_field="type"):
    seq: int
    reason: str


ServerMessage = (
    ViewerMessage | Catchup | Changes | Presence | Ack | Error | Heartbeat | Pong | Resync
)

# -- socket to server -----------------------------------------------------------------------

ClientMessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class PushMessage(
    msgspec.Struct, frozen=True, tag="push", tag_field="type", forbid_unknown_fields=True
):
    id: ClientMessageId
    change_set: PushRequest


class Editing(
    msgspec.Struct, frozen=True, tag="editing", tag_field="type", forbid_unknown_fields=True
):
    record: EditingRecord | None


class Ping(msgspec.Struct, frozen=True, tag="ping", tag_field="type", forbid_unknown_fields=True):
    pass


ClientMessage = PushMessage | Editing | Ping

# -- the viewer's deltas --------------------------------------------------------------------

ANCHOR_TOLERANCE_MS = 1_000
"""A running clock's start may drift by rounding; only a larger jump is a change."""


def viewer_delta(before: MatchView, after: MatchView, seq: int) -> Delta | None:
    """What a viewer holding ``before`` needs to hold ``after``, or None when nothing it
    shows changed. A running clock ticking on is not a change: pages tick it locally."""
    old = {event.id: event for event in before.recent_events}
    new_ids = set()
    changed = []
    for event in reversed(after.recent_events):  # oldest first, as they happened
        new_ids.add(event.id)
        if old.get(event.id) != event:
            changed.append(event)
    removed = [event_id for event_id in old if event_id not in new_ids]
    header = after.match if _header_changed(before, after) else None
    if header is None and not changed and not removed:
        return None
    return Delta(
        seq=seq,
        server_time_ms=after.server_time_ms,
        match=header,
        events=changed,
        removed=removed,
    )


def _header_changed(before: MatchView, after: MatchView) -> bool:
    a, b = before.match, after.match
    if a.clock_running != b.clock_running:
        return True
    if a.clock_running:
        # The period's start as each view saw it: equal up to rounding unless the clock moved.
        start_a = before.server_time_ms - a.period_elapsed_ms
        start_b = after.server_time_ms - b.period_elapsed_ms
        if abs(start_a - start_b) > ANCHOR_TOLERANCE_MS:
            return True
    elif a.period_elapsed_ms != b.period_elapsed_ms:
        return True
    still = {"clock_time": "", "period_elapsed_ms": 0}
    return msgspec.structs.replace(a, **still) != msgspec.structs.replace(b, **still)


def view_at(view: MatchView, now_ms: int, *, recent: int = RECENT_EVENTS) -> MatchView:
    """``view`` as a viewer arriving at ``now_ms`` should get it: a running clock moved on to
    now, and only the ``recent`` newest events (the relay keeps them all, to diff)."""
    match = view.match
    if match.clock_running and now_ms > view.server_time_ms:
        elapsed = match.period_elapsed_ms + (now_ms - view.server_time_ms)
        match = msgspec.structs.replace(match, period_elapsed_ms=elapsed, clock_time=mm_ss(elapsed))
    return MatchView(
        match=match,
        recent_events=view.recent_events[:recent],
        server_time_ms=max(now_ms, view.server_time_ms),
    )


VIEW_TABLES: frozenset[str] = frozenset({"matches", "events", "clock_actions"})
"""The match-scoped tables a viewer's view is made of (besides club-wide names)."""


class MatchReplica:
    """What the relay keeps per watched match to make the viewer's view without a database
    read per change: the match's records as merged states, which the log's changes are
    merged into, and the club-wide values the view names (players, teams, naming).

    Built for a change at a time: merging one updates that record's values only, and the
    names it lacks are found from the changed records, not by scanning them all."""

    def __init__(
        self,
        match_id: uuid.UUID,
        states: Iterable[tuple[str, uuid.UUID, RecordState]],
        *,
        players: Mapping[str, Mapping[str, Scalar]],
        teams: Mapping[str, Mapping[str, Scalar]],
        naming: str,
    ) -> None:
        self.match_id = match_id
        self._match: RecordState | None = None
        self._events: dict[uuid.UUID, RecordState] = {}
        self._live: dict[uuid.UUID, dict[str, Scalar]] = {}
        """Values of the events that are not archived."""
        self._clock: dict[uuid.UUID, RecordState] = {}
        self.players: dict[str, Mapping[str, Scalar]] = dict(players)
        self.teams: dict[str, Mapping[str, Scalar]] = dict(teams)
        self.naming = naming
        self._unnamed: set[uuid.UUID] = set()
        """Records whose players and teams have not been checked against the names held."""
        for table, record_id, state in states:
            self._put(table, record_id, state)

    def apply(self, change: LoggedChange) -> None:
        """Merge a logged change of this match (others are ignored)."""
        if change.table not in VIEW_TABLES:
            return
        write = Write(change.device_id, change.seq, change.hlc, change.op, change.fields)
        self._put(change.table, change.id, merge_apply(self._state(change.table, change.id), write))

    def _state(self, table: str, record_id: uuid.UUID) -> RecordState | None:
        if table == "events":
            return self._events.get(record_id)
        if table == "clock_actions":
            return self._clock.get(record_id)
        return self._match if record_id == self.match_id else None

    def _put(self, table: str, record_id: uuid.UUID, state: RecordState) -> None:
        if table == "events":
            self._events[record_id] = state
            if state.is_deleted:
                self._live.pop(record_id, None)
            else:
                self._live[record_id] = state.values()
                self._unnamed.add(record_id)
        elif table == "clock_actions":
            self._clock[record_id] = state
        elif record_id == self.match_id:
            self._match = state
            self._unnamed.add(record_id)

    def forget_names(self) -> None:
        """Names may have changed (club-wide changes): check every record again."""
        self.players.clear()
        self.teams.clear()
        self._unnamed = {self.match_id, *self._live}

    def missing(self) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        """Players and teams the view names but this replica has no values for."""
        players: set[uuid.UUID | None] = set()
        teams: set[uuid.UUID | None] = set()
        for record_id in self._unnamed:
            if record_id == self.match_id:
                match = self._match_values() or {}
                teams |= {_uuid(match.get("home_team_id")), _uuid(match.get("away_team_id"))}
            elif (event := self._live.get(record_id)) is not None:
                players.add(_uuid(event.get("player_id")))
                teams.add(_uuid(event.get("team_id")))
        teams |= {_uuid(p.get("current_team")) for p in self.players.values()}
        return (
            {p for p in players if p is not None and str(p) not in self.players},
            {t for t in teams if t is not None and str(t) not in self.teams},
        )

    def named(self) -> None:
        """The names ``missing`` asked for are held now."""
        self._unnamed.clear()

    def view(self, now_ms: int) -> MatchView | None:
        """The viewer's view with every event, or None when the match is gone or archived."""
        match = self._match_values()
        if match is None:
            return None
        return match_view(
            self.match_id,
            match,
            teams=self.teams,
            players=self.players,
            events=self._live.items(),
            clock_actions=self._clock.values(),
            now_ms=now_ms,
            recent=len(self._live),
            default_naming=self.naming,
        )

    def _match_values(self) -> dict[str, Scalar] | None:
        state = self._match
        return None if state is None or state.is_deleted else state.values()


def _uuid(value: Scalar) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None
