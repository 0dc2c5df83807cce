"""Wire types of the REST API for a club's teams, players, seasons and settings (JSON via msgspec).

These are plain views of the synced records of PROTOCOL.md §3: a REST write is recorded as a
change of the caller's REST device and merged like any push, so the constraints here are the
table's own (§3.1 to §3.3, §3.9), checked early so that errors name the request's fields.

Requests reject unknown fields. In a create or update request, a member that is absent is
not written at all, and ``null`` clears an optional field; so an update changes exactly the
fields it carries. Responses may grow new fields: decode them leniently.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Final, Literal

import msgspec

from protocol.schema import MAX_TEXT

__all__ = [
    "DEFAULT_DURATION_MINS",
    "DEFAULT_PERIOD_FORMAT",
    "DEFAULT_VIEWER_NAMES",
    "ClubSettings",
    "ClubSettingsUpdate",
    "PeriodFormat",
    "Player",
    "PlayerCreate",
    "PlayerList",
    "PlayerUpdate",
    "Season",
    "SeasonCreate",
    "SeasonList",
    "Team",
    "TeamCreate",
    "TeamList",
    "ViewerNames",
]

# PostgreSQL's text cannot hold a NUL character; refused here rather than failing there.
_NO_NUL: Final = r"^[^\x00]*$"
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT, pattern=_NO_NUL)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT, pattern=_NO_NUL)]
"""A name or label: required, so never empty."""
# Litestar drops a bound of 0 from the OpenAPI schema (a falsy value); `extra` restores it.
SquadNumber = Annotated[
    int, msgspec.Meta(ge=0, le=999, extra_json_schema={"extra": {"minimum": 0}})
]
DurationMins = Annotated[int, msgspec.Meta(ge=1, le=600)]
ViewerNames = Literal["first_name_initial", "squad_number"]
"""How players appear to family viewers: "Jamie S." or "#7" (protocol.schema.VIEWER_NAMES)."""
PeriodFormat = Literal["half", "quarter"]
"""Two halves or four quarters (protocol.schema.PERIOD_FORMATS)."""

DEFAULT_VIEWER_NAMES: Final[ViewerNames] = "first_name_initial"
DEFAULT_PERIOD_FORMAT: Final[PeriodFormat] = "half"
DEFAULT_DURATION_MINS: Final = 50
"""The app's default match length (``matches.duration_mins`` defaults to 50)."""

_UNSET = msgspec.UNSET
_Unset = msgspec.UnsetType


# -- teams ---------------------------------------------------------------------------------


class TeamCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A new team of the club: the coach's own or an opponent (``is_opponent: true``).

    ``id`` may be chosen by the client (a team created offline); creating it again with the
    same id writes the given fields again and creates nothing new."""

    id: uuid.UUID | None = None
    name: Name
    short_name: Text | _Unset | None = _UNSET
    is_opponent: bool | _Unset = _UNSET
    color: Text | _Unset | None = _UNSET
    notes: Text | _Unset | None = _UNSET
    viewer_names: ViewerNames | _Unset | None = _UNSET
    """How this team's players appear to family viewers; absent: the club's setting."""


class Team(msgspec.Struct, frozen=True, kw_only=True):
    """A team as the server's merged state holds it."""

    id: uuid.UUID
    name: str
    short_name: str | None
    is_opponent: bool
    """False when never written."""
    color: str | None
    notes: str | None
    viewer_names: ViewerNames | None
    deleted: bool
    """True when the team is archived (a sync client deleted it)."""


class TeamList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of teams, in a stable order; pass ``next_cursor`` as ``cursor`` to go on."""

    items: list[Team]
    next_cursor: str | None
    """None on the last page."""


# -- players -------------------------------------------------------------------------------


class PlayerCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A new player of the team in the path (which becomes the player's ``current_team``)."""

    id: uuid.UUID | None = None
    full_name: Name
    squad_number: SquadNumber | _Unset | None = _UNSET
    preferred_pos: Text | _Unset | None = _UNSET
    dob: date | _Unset | None = _UNSET
    """Date of birth, ``YYYY-MM-DD``."""
    notes: Text | _Unset | None = _UNSET


class PlayerUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The fields to change; absent fields keep their value, ``null`` clears one."""

    full_name: Name | _Unset = _UNSET
    squad_number: SquadNumber | _Unset | None = _UNSET
    preferred_pos: Text | _Unset | None = _UNSET
    dob: date | _Unset | None = _UNSET
    notes: Text | _Unset | None = _UNSET
    current_team: uuid.UUID | _Unset | None = _UNSET
    """Move the player to another team of the club (it must exist)."""


class Player(msgspec.Struct, frozen=True, kw_only=True):
    """A player as the server's merged state holds it."""

    id: uuid.UUID
    full_name: str
    squad_number: int | None
    preferred_pos: str | None
    dob: date | None
    notes: str | None
    current_team: uuid.UUID | None
    deleted: bool


class PlayerList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of players, in a stable order; pass ``next_cursor`` as ``cursor`` to go on."""

    items: list[Player]
    next_cursor: str | None


# -- seasons -------------------------------------------------------------------------------


class SeasonCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A new season. A match names it by ``season_id``; its competition is free text.

    ``is_current: true`` makes it the club's one current season: every other season marked
    current is unmarked in the same write."""

    id: uuid.UUID | None = None
    label: Name
    start_date: date | _Unset | None = _UNSET
    end_date: date | _Unset | None = _UNSET
    """On or after ``start_date`` when both are given."""
    is_current: bool | _Unset = _UNSET


class Season(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    label: str
    start_date: date | None
    end_date: date | None
    is_current: bool
    """False when never written."""
    deleted: bool


class SeasonList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of seasons, in a stable order; pass ``next_cursor`` as ``cursor`` to go on."""

    items: list[Season]
    next_cursor: str | None


# -- club settings -------------------------------------------------------------------------


class ClubSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The club's settings, a synced record (``club_settings``, id = the club's id), with the
    defaults filled in for whatever was never written."""

    club_id: uuid.UUID
    viewer_names: ViewerNames
    """How players appear to family viewers unless their team says otherwise."""
    default_period_format: PeriodFormat
    """The period format a new match starts with."""
    default_duration_mins: int
    """The length of a new match, in minutes."""


class ClubSettingsUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The settings to change; absent ones keep their value, ``null`` restores the default."""

    viewer_names: ViewerNames | _Unset | None = _UNSET
    default_period_format: PeriodFormat | _Unset | None = _UNSET
    default_duration_mins: DurationMins | _Unset | None = _UNSET
