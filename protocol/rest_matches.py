"""Wire types of the REST API for matches, the match clock and the lineup (JSON via msgspec).

Requests reject unknown members; responses may grow new members, so clients decode them
leniently. Every write is recorded as a change of the caller's REST device and merged like a
push, so these are views of the same merged records the sync protocol carries (PROTOCOL.md §3).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from protocol.hlc import END_OF_TEXT
from protocol.schema import MAX_TEXT
from protocol.viewer import ViewerEvent, ViewerMatch

__all__ = [
    "ClockAction",
    "ClockRequest",
    "Lineup",
    "LineupEntry",
    "LineupEntryIn",
    "LineupPut",
    "MatchClock",
    "MatchCreate",
    "MatchDetail",
    "MatchDetailView",
    "MatchList",
    "MatchOut",
    "MatchUpdate",
    "PeriodFormat",
]

Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Timestamp = Annotated[
    str,
    msgspec.Meta(
        pattern=(
            r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
            r"(Z|[+-][0-9]{2}:[0-9]{2})" + END_OF_TEXT
        ),
        description="RFC 3339, for example 2026-11-21T10:00:00Z",
    ),
]
DurationMins = Annotated[int, msgspec.Meta(ge=1, le=600)]
Minute = Annotated[float, msgspec.Meta(ge=0, le=1000)]
PeriodFormat = Literal["half", "quarter"]
ClockAction = Literal[
    "start", "pause", "resume", "end_period", "start_period", "finish", "abandon", "postpone"
]
MAX_LINEUP = 200


# -- matches ------------------------------------------------------------------------------------


class MatchCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A new match. ``id`` may be chosen by the client (an offline-created match, or an
    idempotent re-create); the server draws a random one otherwise. ``period_format`` and
    ``duration_mins`` default to the club's settings (``half`` and 50 unless changed)."""

    home_team_id: uuid.UUID
    away_team_id: uuid.UUID
    kickoff_ts: Timestamp
    period_format: PeriodFormat | msgspec.UnsetType = msgspec.UNSET
    duration_mins: DurationMins | msgspec.UnsetType = msgspec.UNSET
    competition: Text | None = None
    venue: Text | None = None
    season_id: uuid.UUID | None = None
    notes: Text | None = None
    id: uuid.UUID | None = None


class MatchUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Changes only the members it carries; ``null`` clears an optional member."""

    home_team_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    away_team_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    kickoff_ts: Timestamp | msgspec.UnsetType = msgspec.UNSET
    period_format: PeriodFormat | msgspec.UnsetType = msgspec.UNSET
    duration_mins: DurationMins | msgspec.UnsetType = msgspec.UNSET
    competition: Text | msgspec.UnsetType | None = msgspec.UNSET
    venue: Text | msgspec.UnsetType | None = msgspec.UNSET
    season_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    notes: Text | msgspec.UnsetType | None = msgspec.UNSET


class MatchOut(msgspec.Struct, frozen=True, kw_only=True):
    """A match's own fields as merged. Fields never written are ``null`` (records synced by
    devices need not carry them all)."""

    id: uuid.UUID
    home_team_id: uuid.UUID | None
    away_team_id: uuid.UUID | None
    home_team: str | None
    """The home team's name."""
    away_team: str | None
    kickoff_ts: str | None
    period_format: str | None
    duration_mins: int | None
    competition: str | None
    venue: str | None
    season_id: uuid.UUID | None
    notes: str | msgspec.UnsetType | None = msgspec.UNSET
    """Coaches and owners only: absent for the viewer role."""
    deleted: bool
    """True when the match is archived (``DELETE``); ``POST …/restore`` brings it back."""


class MatchList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[MatchOut]
    next_cursor: str | None
    """Pass back as ``cursor`` for the next page; ``null`` on the last page."""


class MatchDetail(ViewerMatch, frozen=True, kw_only=True):
    """The mobile format's ``match`` (``id``, ``home_team``, ``away_team``, ``score``,
    ``status``, ``current_period``, ``clock_time``, …) with the match's own fields."""

    home_team_id: uuid.UUID | None
    away_team_id: uuid.UUID | None
    season_id: uuid.UUID | None
    duration_mins: int | None
    notes: str | msgspec.UnsetType | None = msgspec.UNSET
    """Coaches and owners only: absent for the viewer role."""
    deleted: bool


class MatchDetailView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/matches/{id}``: the mobile format of the app, plus extra members."""

    match: MatchDetail
    recent_events: list[ViewerEvent]
    """Live events, newest first (by period, then clock), at most 30. ``player`` is the full
    name for coaches and owners, the viewer-safe name (``Jamie S.`` or ``#7``) for viewers."""
    server_time_ms: int | msgspec.UnsetType = msgspec.UNSET
    """Only while the clock runs: the server time (whole seconds) the view was made at, to
    tick ``period_elapsed_ms`` on locally. Absent when the clock is stopped, so the answer
    (and its ETag) stays the same until something changes."""


# -- the match clock ----------------------------------------------------------------------------


class ClockRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One press of a match-clock button, recorded as a ``clock_actions`` record."""

    action: ClockAction
    at: Timestamp | None = None
    """When the button was pressed; the server's time when absent."""


class MatchClock(msgspec.Struct, frozen=True, kw_only=True):
    """The clock derived from every live clock action of the match (PROTOCOL.md §9.2)."""

    match_id: uuid.UUID
    action_id: uuid.UUID
    """The ``clock_actions`` record this press created (delete it through sync to undo)."""
    status: str
    """The app's words: scheduled, live, half_time, extra_time, finished, abandoned,
    postponed."""
    current_period: int
    clock_time: str
    """MM:SS within the current period."""
    running: bool
    period_elapsed_ms: int
    server_time_ms: int


# -- the lineup ---------------------------------------------------------------------------------


class LineupEntryIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One player of the lineup. ``start_min`` is the match minute the player went on (0 for
    a starter; absent for a player on the bench), ``end_min`` the minute they went off."""

    player_id: uuid.UUID
    position: Text | None = None
    start_min: Minute | None = None
    end_min: Minute | None = None


class LineupPut(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole lineup: players not listed are removed (their rows archived)."""

    players: Annotated[list[LineupEntryIn], msgspec.Meta(max_length=MAX_LINEUP)]


class LineupEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID | None
    """The lineup row: ``uuid5(match_id, player_id)``. ``null`` for a player who is not in
    the lineup but came on through a substitution event."""
    player_id: uuid.UUID
    player: str | None
    """The player's full name."""
    squad_number: int | None
    position: str | None
    start_min: float | None
    end_min: float | None
    minutes_played: float
    """Derived from the lineup and the match's substitution events, to 0.1 minute."""
    in_lineup: bool


class Lineup(msgspec.Struct, frozen=True, kw_only=True):
    match_id: uuid.UUID
    players: list[LineupEntry]
    """Starters first, then by name."""
