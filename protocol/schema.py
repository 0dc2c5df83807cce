"""The syncable tables, their fields, and the rules a field value must satisfy.

Field values travel as JSON scalars. Timestamps are ISO 8601 strings with a zone
(``2026-03-01T10:00:00Z``), dates ``YYYY-MM-DD``, ids canonical lowercase UUIDs. ``null``
clears an optional field. The server rejects a change whose values break these rules, so every
replica only ever merges valid values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Final, Literal

Scalar = str | int | float | bool | None

TableName = Literal[
    "teams",
    "players",
    "seasons",
    "matches",
    "events",
    "lineup",
    "match_notes",
    "clock_actions",
    "club_settings",
    "player_teams",
    "default_lineups",
    "app_settings",
]

EVENT_KINDS: Final = (
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
)  # fmt: skip

CLOCK_ACTIONS: Final = (
    "start", "pause", "resume", "end_period", "start_period", "finish", "abandon", "postpone",
)  # fmt: skip

PERIOD_FORMATS: Final = ("half", "quarter")

VIEWER_NAMES: Final = ("first_name_initial", "squad_number")
"""How a team's players appear to family viewers: "Jamie S." (the default) or "#7"."""

MAX_TEXT = 10_000
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
# RFC 3339: what every client (JavaScript's Date included) parses the same way.
# The offset is RFC 3339's time-numoffset: hours 00-23 and minutes 00-59 (Python alone would
# also read "+05:60" as +06:00, which other clients refuse).
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
)


class FieldType(Enum):
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    UUID = "uuid"
    DATE = "date"
    TIMESTAMP = "timestamp"
    CHOICE = "choice"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    type: FieldType
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    """Must be present and non-null when the record is created, and can never be cleared."""
    immutable: bool = False
    """Fixed by the change that creates the record (it places the record in a match)."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: TableName
    fields: Mapping[str, FieldSpec]
    match_field: str | None = None
    """The field naming the match a record belongs to; pulls can be scoped by it."""
    record_is_match: bool = False
    fields_order: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields_order", tuple(self.fields))


def _text(*, required: bool = False) -> FieldSpec:
    return FieldSpec(FieldType.TEXT, required=required)


def _int(lo: int | None = None, hi: int | None = None) -> FieldSpec:
    return FieldSpec(FieldType.INT, minimum=lo, maximum=hi)


_UUID = FieldSpec(FieldType.UUID)
_MATCH = FieldSpec(FieldType.UUID, required=True, immutable=True)
_TIMESTAMP = FieldSpec(FieldType.TIMESTAMP)
_BOOL = FieldSpec(FieldType.BOOL)
_DATE_FIELD = FieldSpec(FieldType.DATE)
_PITCH = FieldSpec(FieldType.FLOAT, minimum=0, maximum=100)
_MINUTE = FieldSpec(FieldType.FLOAT, minimum=0, maximum=1000)

TABLES: Final[Mapping[str, TableSpec]] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "teams",
            {
                "name": _text(required=True),
                "short_name": _text(),
                "is_opponent": _BOOL,
                "color": _text(),
                "notes": _text(),
                "viewer_names": FieldSpec(FieldType.CHOICE, choices=VIEWER_NAMES),
            },
        ),
        TableSpec(
            "players",
            {
                "full_name": _text(required=True),
                "squad_number": _int(0, 999),
                "preferred_pos": _text(),
                "dob": _DATE_FIELD,
                "notes": _text(),
                "current_team": _UUID,
            },
        ),
        TableSpec(
            "seasons",
            {
                "label": _text(required=True),
                "start_date": _DATE_FIELD,
                "end_date": _DATE_FIELD,
                "is_current": _BOOL,
            },
        ),
        TableSpec(
            "matches",
            {
                "season_id": _UUID,
                "kickoff_ts": _TIMESTAMP,
                "competition": _text(),
                "home_team_id": _UUID,
                "away_team_id": _UUID,
                "venue": _text(),
                "duration_mins": _int(1, 600),
                "period_format": FieldSpec(FieldType.CHOICE, choices=PERIOD_FORMATS),
                "our_score": _int(0, 999),
                "opponent_score": _int(0, 999),
                "notes": _text(),
            },
            record_is_match=True,
        ),
        TableSpec(
            "events",
            {
                "match_id": _MATCH,
                "season_id": _UUID,
                "period_number": _int(0, 99),
                "clock_ms": _int(0, 24 * 3600 * 1000),
                "kind": FieldSpec(FieldType.CHOICE, choices=EVENT_KINDS, required=True),
                "team_id": _UUID,
                "player_id": _UUID,
                "related_event_id": _UUID,
                "notes": _text(),
                "sentiment": _int(-4, 4),
                "x": _PITCH,
                "y": _PITCH,
                "created_at": _TIMESTAMP,
            },
            match_field="match_id",
        ),
        TableSpec(
            "lineup",
            {
                "match_id": _MATCH,
                "player_id": FieldSpec(FieldType.UUID, required=True, immutable=True),
                "start_min": _MINUTE,
                "end_min": _MINUTE,
                "position": _text(),
            },
            match_field="match_id",
        ),
        TableSpec(
            "match_notes",
            {
                "match_id": _MATCH,
                "period_number": _int(0, 99),
                "note_text": _text(),
                "created_at": _TIMESTAMP,
            },
            match_field="match_id",
        ),
        TableSpec(
            "clock_actions",
            {
                "match_id": _MATCH,
                "action": FieldSpec(FieldType.CHOICE, choices=CLOCK_ACTIONS, required=True),
                "at": FieldSpec(FieldType.TIMESTAMP, required=True),
                "period_number": _int(0, 99),
            },
            match_field="match_id",
        ),
        # One record per club, whose id is the club's own id (PROTOCOL.md §3.9): two coaches
        # editing the settings offline write to one record and merge field by field.
        TableSpec(
            "club_settings",
            {
                "viewer_names": FieldSpec(FieldType.CHOICE, choices=VIEWER_NAMES),
                "default_period_format": FieldSpec(FieldType.CHOICE, choices=PERIOD_FORMATS),
                "default_duration_mins": _int(1, 600),
            },
        ),
        # A player's membership of a team over time (the app's playerTeams), beside the
        # player's `current_team`.
        TableSpec(
            "player_teams",
            {
                "player_id": FieldSpec(FieldType.UUID, required=True),
                "team_id": FieldSpec(FieldType.UUID, required=True),
                "start_date": _DATE_FIELD,
                "end_date": _DATE_FIELD,
                "is_active": _BOOL,
            },
        ),
        # A team's usual starting formation (the app's defaultLineups): `formation` is a JSON
        # array of {"player_id", "position", "x", "y"}, one text value so it merges as a whole.
        TableSpec(
            "default_lineups",
            {
                "team_id": FieldSpec(FieldType.UUID, required=True),
                "formation": _text(),
            },
        ),
        # The app's own key/value settings (theme, match defaults), kept as the app wrote them
        # so a device restored from the server gets them back. `value` is JSON text.
        TableSpec(
            "app_settings",
            {
                "key": FieldSpec(FieldType.TEXT, required=True, immutable=True),
                "value": _text(),
            },
        ),
    )
}


def check_value(spec: FieldSpec, value: Scalar) -> str | None:
    """Why ``value`` is not acceptable for a field of ``spec``, or None when it is."""
    if value is None:
        return "may not be null" if spec.required else None
    kind = spec.type
    if kind in (FieldType.INT, FieldType.FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {type(value).__name__}"
        if kind is FieldType.INT and not isinstance(value, int):
            return "expected an integer"
        if isinstance(value, float) and not math.isfinite(value):
            return "expected a finite number"
        if spec.minimum is not None and value < spec.minimum:
            return f"must be >= {spec.minimum:g}"
        if spec.maximum is not None and value > spec.maximum:
            return f"must be <= {spec.maximum:g}"
        return None
    if kind is FieldType.BOOL:
        return None if isinstance(value, bool) else "expected true or false"
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if kind is FieldType.TEXT:
        if "\x00" in value:
            # PostgreSQL text cannot hold U+0000; refusing it everywhere keeps stores alike.
            return "contains a NUL character (U+0000)"
        return None if len(value) <= MAX_TEXT else f"longer than {MAX_TEXT} characters"
    if kind is FieldType.CHOICE:
        return None if value in spec.choices else f"must be one of: {', '.join(spec.choices)}"
    if kind is FieldType.UUID:
        return None if _is_canonical_uuid(value) else "expected a lowercase canonical UUID"
    if kind is FieldType.DATE:
        return None if _is_date(value) else "expected a date as YYYY-MM-DD"
    return (
        None
        if _is_timestamp(value)
        else "expected an RFC 3339 timestamp such as 2026-03-01T10:00:00Z"
    )


def _is_canonical_uuid(text: str) -> bool:
    # A pattern rather than uuid.UUID(): this runs for every id of every change pushed.
    return _CANONICAL_UUID.fullmatch(text) is not None


def _is_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_timestamp(text: str) -> bool:
    if not _RFC3339.match(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
