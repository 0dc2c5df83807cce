"""What a family viewer may see of a match: the mobile format of the app, and nothing more.

Children's privacy is decided here, once, for every viewer-facing payload: no date of birth,
no notes, no coach's email, no sentiment ratings, and never a surname. A player shows as
first name plus last initial ("Jamie S."), or as a squad number ("#7") when the team's
``viewer_names`` setting asks for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from protocol import derive
from protocol.merge import RecordState
from protocol.schema import VIEWER_NAMES, Scalar

RECENT_EVENTS = 30
DEFAULT_NAMING = VIEWER_NAMES[0]

# The app's status words; derive.clock speaks the database's.
STATUS: Mapping[str, str] = {
    "not_started": "scheduled",
    "in_progress": "live",
    "half_time": "half_time",
    "extra_time": "extra_time",
    "completed": "finished",
    "abandoned": "abandoned",
    "postponed": "postponed",
}

Side = Literal["home", "away"]
Record = Mapping[str, Scalar]


class Scoreboard(msgspec.Struct, frozen=True, kw_only=True):
    home: int
    away: int


class ViewerMatch(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    home_team: str | None
    away_team: str | None
    score: Scoreboard
    status: str
    """scheduled, live, half_time, extra_time, finished, abandoned or postponed."""
    current_period: int
    clock_time: str
    """Time within the current period as MM:SS when the view was made."""
    clock_running: bool
    """When true, a page ticks the clock on locally from ``period_elapsed_ms``."""
    period_elapsed_ms: int
    period_format: str | None
    kickoff_ts: str | None
    competition: str | None
    venue: str | None


class ViewerEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    kind: str
    player: str | None
    team: Side | None
    timestamp: str
    """MM:SS on the clock of its period."""
    period: int | None


class MatchView(msgspec.Struct, frozen=True, kw_only=True):
    match: ViewerMatch
    recent_events: list[ViewerEvent]
    """Newest first."""
    server_time_ms: int


def viewer_name(full_name: Scalar, squad_number: Scalar, naming: str) -> str | None:
    """A player's name as viewers see it: "Jamie S." or "#7"; never a surname."""
    if naming == "squad_number":
        return f"#{squad_number}" if isinstance(squad_number, int) else None
    if not isinstance(full_name, str):
        return None
    parts = full_name.split()
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]} {parts[-1][0].upper()}."


def mm_ss(milliseconds: int) -> str:
    seconds = max(0, milliseconds) // 1000
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def match_view(
    match_id: uuid.UUID,
    match: Record,
    *,
    teams: Mapping[str, Record],
    players: Mapping[str, Record],
    events: Iterable[tuple[uuid.UUID, Record]],
    clock_actions: Iterable[RecordState],
    now_ms: int,
    recent: int = RECENT_EVENTS,
    full_names: bool = False,
    default_naming: str = DEFAULT_NAMING,
) -> MatchView:
    """The viewer's view of one match from its merged, live (not archived) records.

    ``teams`` and ``players`` are keyed by id as text; ``events`` are the match's live events.
    Players appear viewer-safe ("Jamie S." or "#7": the team's ``viewer_names``, else
    ``default_naming``, the club's setting) unless ``full_names`` is true, which is for
    coaches only: it shows each player's full name.
    """
    if default_naming not in VIEWER_NAMES:
        default_naming = DEFAULT_NAMING
    home_id, away_id = match.get("home_team_id"), match.get("away_team_id")
    live_events = list(events)
    score = derive.score(match, (values for _, values in live_events))
    clock = derive.clock(
        clock_actions, period_format=_text(match.get("period_format")), now_ms=now_ms
    )

    def side(team_id: Scalar) -> Side | None:
        if team_id is not None and team_id == home_id:
            return "home"
        if team_id is not None and team_id == away_id:
            return "away"
        return None

    def naming_for(event: Record) -> str:
        player = players.get(str(event.get("player_id")), {})
        for team_id in (event.get("team_id"), player.get("current_team")):
            choice = teams.get(str(team_id), {}).get("viewer_names")
            if isinstance(choice, str) and choice in VIEWER_NAMES:
                return choice
        return default_naming

    newest_first = sorted(live_events, key=_event_order, reverse=True)[:recent]
    return MatchView(
        match=ViewerMatch(
            id=match_id,
            home_team=_team_name(teams, home_id),
            away_team=_team_name(teams, away_id),
            score=Scoreboard(home=score.home, away=score.away),
            status=STATUS.get(clock.status, clock.status),
            current_period=clock.period,
            clock_time=clock.clock_time,
            clock_running=clock.running,
            period_elapsed_ms=clock.period_elapsed_ms,
            period_format=_text(match.get("period_format")),
            kickoff_ts=_text(match.get("kickoff_ts")),
            competition=_text(match.get("competition")),
            venue=_text(match.get("venue")),
        ),
        recent_events=[
            ViewerEvent(
                id=event_id,
                kind=str(event.get("kind")),
                player=(
                    _full_name(players, event)
                    if full_names
                    else _player_label(players, event, naming_for(event))
                ),
                team=side(event.get("team_id")),
                timestamp=mm_ss(_int(event.get("clock_ms"))),
                period=_int_or_none(event.get("period_number")),
            )
            for event_id, event in newest_first
        ],
        server_time_ms=now_ms,
    )


def _event_order(item: tuple[uuid.UUID, Record]) -> tuple[int, int, str, str]:
    event_id, event = item
    created = event.get("created_at")
    return (
        _int(event.get("period_number")),
        _int(event.get("clock_ms")),
        created if isinstance(created, str) else "",
        str(event_id),
    )


def _player_label(players: Mapping[str, Record], event: Record, naming: str) -> str | None:
    player = players.get(str(event.get("player_id")))
    if player is None:
        return None
    return viewer_name(player.get("full_name"), player.get("squad_number"), naming)


def _full_name(players: Mapping[str, Record], event: Record) -> str | None:
    player = players.get(str(event.get("player_id")))
    return None if player is None else _text(player.get("full_name"))


def _team_name(teams: Mapping[str, Record], team_id: Scalar) -> str | None:
    return _text(teams.get(str(team_id), {}).get("name"))


def _text(value: Scalar) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Scalar) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _int_or_none(value: Scalar) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
