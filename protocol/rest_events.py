"""Wire types of the REST match events (JSON via msgspec): create, edit, read and list.

An event names its side as ``team: "home"`` or ``"away"`` (resolved against the match's
``home_team_id`` / ``away_team_id``) or as ``team_id``. An ``own_goal``'s team is the side
whose player put the ball in their own net, so it counts for the *other* side (PROTOCOL.md
§9.1). Requests reject unknown fields; answers may grow new fields, so clients decode them
leniently.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal, get_args

import msgspec

from protocol.schema import EVENT_KINDS, MAX_TEXT

__all__ = [
    "EventCreate",
    "EventKind",
    "EventOut",
    "EventPage",
    "EventUpdate",
    "Side",
]

EventKind = Literal[
    # The enum of the app's PostgreSQL schema.
    "goal", "assist", "key_pass", "save", "interception", "tackle", "foul", "penalty",
    "free_kick", "ball_out", "own_goal",
    # Used by the app's own code.
    "ball_won", "ball_lost", "corner",
    # Added by later app versions.
    "yellow_card", "red_card", "offside", "shot_on_target", "shot_off_target", "clearance",
    "block", "cross", "header", "formation_change",
    # Substitutions, so that minutes played derive from the log.
    "substitution",
]  # fmt: skip
"""Every kind of ``protocol.schema.EVENT_KINDS``, spelled out so the OpenAPI schema lists them."""

if get_args(EventKind) != EVENT_KINDS:  # pragma: no cover - guards against drift at import
    raise RuntimeError("protocol.rest_events.EventKind must list exactly schema.EVENT_KINDS")

Side = Literal["home", "away"]

MAX_CLOCK_MS: Final = 24 * 3600 * 1000

PeriodNumber = Annotated[int, msgspec.Meta(ge=0, le=99)]
ClockMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_CLOCK_MS)]
Sentiment = Annotated[int, msgspec.Meta(ge=-4, le=4)]
Pitch = Annotated[float, msgspec.Meta(ge=0, le=100)]
Notes = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
UNSET: Final = msgspec.UNSET
Unset = msgspec.UnsetType


class EventCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A new event of the match named by the path. Only ``kind`` is required."""

    id: uuid.UUID | None = None
    """The client's id for the event (created offline, or a retry); the server makes one
    when absent. Sending the same id again updates that event instead of adding another."""
    kind: EventKind
    team: Side | None = None
    """The side the event belongs to, resolved against the match's home and away teams.
    For ``own_goal``: the side whose player scored in their own net."""
    team_id: uuid.UUID | None = None
    """Instead of ``team``: the match's home or away team id (both may be sent if they agree)."""
    player_id: uuid.UUID | None = None
    """A player of the club."""
    period_number: PeriodNumber | None = None
    clock_ms: ClockMs | None = None
    """Time on the clock within the period, in milliseconds (it restarts each period)."""
    notes: Notes | None = None
    sentiment: Sentiment | None = None
    """The coach's rating of the action, -4 (poor) to 4 (excellent)."""
    x: Pitch | None = None
    """Pitch position across, percent (0 to 100)."""
    y: Pitch | None = None
    """Pitch position along, percent (0 to 100)."""
    related_event_id: uuid.UUID | None = None
    """Another event of the same match (for example the goal an assist belongs to)."""
    season_id: uuid.UUID | None = None
    """A season of the club; the match's season when absent."""
    created_at: Timestamp | None = None
    """When the event was logged (RFC 3339 with an offset); the server's time when absent."""


class EventUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An edit: only the members present change; ``null`` clears an optional field.

    ``match_id`` cannot change (an unknown member is refused). ``team: null`` or
    ``team_id: null`` clears the event's team.
    """

    kind: EventKind | Unset = UNSET
    team: Side | Unset | None = UNSET
    team_id: uuid.UUID | Unset | None = UNSET
    player_id: uuid.UUID | Unset | None = UNSET
    period_number: PeriodNumber | Unset | None = UNSET
    clock_ms: ClockMs | Unset | None = UNSET
    notes: Notes | Unset | None = UNSET
    sentiment: Sentiment | Unset | None = UNSET
    x: Pitch | Unset | None = UNSET
    y: Pitch | Unset | None = UNSET
    related_event_id: uuid.UUID | Unset | None = UNSET
    season_id: uuid.UUID | Unset | None = UNSET
    created_at: Timestamp | Unset | None = UNSET


class EventOut(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the merged state holds it now."""

    id: uuid.UUID
    match_id: uuid.UUID
    kind: EventKind
    team: Side | None
    """``home`` or ``away`` by the match's teams now; ``null`` when the event names neither."""
    team_id: uuid.UUID | None
    player_id: uuid.UUID | None
    period_number: int | None
    clock_ms: int | None
    notes: str | None
    sentiment: int | None
    x: float | None
    y: float | None
    related_event_id: uuid.UUID | None
    season_id: uuid.UUID | None
    created_at: str | None
    """RFC 3339, as it was written."""
    deleted: bool
    """True for an archived event (``POST /api/events/{id}/restore`` brings it back)."""


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a match's events, ordered by id (stable, so paging has no gaps)."""

    items: list[EventOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; ``null`` on the last page."""
