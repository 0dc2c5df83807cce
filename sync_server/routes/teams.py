"""REST endpoints for a club's teams, players, seasons and settings (PROTOCOL.md, REST API).

Thin views over the merged records: every write is a change of the caller's REST device
through `Records.write` (so it is merged, logged, pulled and in the conflict ledger like any
push), every read is the merged state. Teams and players carry coaches' notes, dates of birth
and surnames, so only owners and coaches read them; seasons and the club's settings hold
nothing private, so viewers read those too. Writes need an owner or a coach.

Archived records (deleted by a sync client) are left out of lists unless
``include_deleted=true``; asked for by id they are answered with ``"deleted": true``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import cast

from litestar import Router, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from protocol.ingest import ServerWrite
from protocol.merge import RecordState
from protocol.rest_clubs import (
    DEFAULT_DURATION_MINS,
    DEFAULT_PERIOD_FORMAT,
    DEFAULT_VIEWER_NAMES,
    ClubSettings,
    ClubSettingsUpdate,
    PeriodFormat,
    Player,
    PlayerCreate,
    PlayerList,
    PlayerUpdate,
    Season,
    SeasonCreate,
    SeasonList,
    Team,
    TeamCreate,
    TeamList,
    ViewerNames,
)
from protocol.schema import PERIOD_FORMATS, VIEWER_NAMES, Scalar, TableName
from sync_server import tables
from sync_server.auth import Principal, require_writer
from sync_server.problems import ProblemError
from sync_server.records import DEFAULT_PAGE, MAX_PAGE, Records
from sync_server.routes.rest_common import (
    ANY_ERRORS as _ANY,
)
from sync_server.routes.rest_common import (
    BODY_ERRORS as _BODY,
)
from sync_server.routes.rest_common import (
    QUERY_ERRORS as _QUERY,
)
from sync_server.routes.rest_common import (
    WRITER_ERRORS as _WRITER,
)
from sync_server.routes.rest_common import (
    Cursor,
    IncludeDeleted,
    Limit,
)
from sync_server.routes.rest_common import (
    as_date as _date,
)
from sync_server.routes.rest_common import (
    as_int as _int,
)
from sync_server.routes.rest_common import (
    as_text as _text,
)
from sync_server.routes.rest_common import (
    as_uuid as _uuid,
)
from sync_server.routes.rest_common import (
    carried as _carried,
)
from sync_server.routes.rest_common import (
    responses as _responses,
)

__all__ = ["router"]


# -- conversions ---------------------------------------------------------------------------


def _viewer_names(value: Scalar) -> ViewerNames | None:
    return cast(ViewerNames, value) if value in VIEWER_NAMES else None


def _period_format(value: Scalar) -> PeriodFormat | None:
    return cast(PeriodFormat, value) if value in PERIOD_FORMATS else None


def _team(record_id: uuid.UUID, state: RecordState) -> Team:
    v = state.values()
    return Team(
        id=record_id,
        name=_text(v.get("name")) or "",
        short_name=_text(v.get("short_name")),
        is_opponent=v.get("is_opponent") is True,
        color=_text(v.get("color")),
        notes=_text(v.get("notes")),
        viewer_names=_viewer_names(v.get("viewer_names")),
        deleted=state.is_deleted,
    )


def _player(record_id: uuid.UUID, state: RecordState) -> Player:
    v = state.values()
    return Player(
        id=record_id,
        full_name=_text(v.get("full_name")) or "",
        squad_number=_int(v.get("squad_number")),
        preferred_pos=_text(v.get("preferred_pos")),
        dob=_date(v.get("dob")),
        notes=_text(v.get("notes")),
        current_team=_uuid(v.get("current_team")),
        deleted=state.is_deleted,
    )


def _season(record_id: uuid.UUID, state: RecordState) -> Season:
    v = state.values()
    return Season(
        id=record_id,
        label=_text(v.get("label")) or "",
        start_date=_date(v.get("start_date")),
        end_date=_date(v.get("end_date")),
        is_current=v.get("is_current") is True,
        deleted=state.is_deleted,
    )


def _settings(club_id: uuid.UUID, state: RecordState | None) -> ClubSettings:
    """The stored settings with defaults for what was never written (or was archived)."""
    v: Mapping[str, Scalar] = {} if state is None or state.is_deleted else state.values()
    return ClubSettings(
        club_id=club_id,
        viewer_names=_viewer_names(v.get("viewer_names")) or DEFAULT_VIEWER_NAMES,
        default_period_format=_period_format(v.get("default_period_format"))
        or DEFAULT_PERIOD_FORMAT,
        default_duration_mins=_int(v.get("default_duration_mins")) or DEFAULT_DURATION_MINS,
    )


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "validation-failed",
        "Request failed validation",
        f"{field}: {message}",
        errors=[{"field": field, "message": message, "source": "body"}],
    )


async def _create(
    records: Records,
    principal: Principal,
    table: TableName,
    record_id: uuid.UUID | None,
    fields: dict[str, Scalar],
    *also: ServerWrite,
) -> tuple[uuid.UUID, RecordState]:
    """Write a record (a new id unless the client chose one) and return its merged state."""
    record_id = record_id or uuid.uuid4()
    recorded = await records.write(principal, [ServerWrite(table, record_id, fields), *also])
    return record_id, recorded.states[(table, record_id)]


# -- teams ---------------------------------------------------------------------------------


@get(
    "/teams",
    guards=[require_writer],
    operation_id="teamsList",
    summary="The club's teams, opponents included",
    responses=_responses(*_WRITER, *_QUERY, cached=True),
)
async def list_teams(
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
    include_deleted: IncludeDeleted = False,
) -> TeamList:
    page = await records.page(
        principal.club_id,
        tables.teams,
        include_deleted=include_deleted,
        limit=limit,
        cursor=cursor,
    )
    return TeamList(items=[_team(*item) for item in page.items], next_cursor=page.next_cursor)


@post(
    "/teams",
    status_code=201,
    guards=[require_writer],
    operation_id="teamsCreate",
    summary="Create a team (an opponent with is_opponent: true)",
    responses=_responses(*_WRITER, *_BODY),
)
async def create_team(
    data: JSONBody[TeamCreate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> Team:
    return _team(*await _create(records, principal, "teams", data.id, _carried(data)))


@get(
    "/teams/{team_id:uuid}",
    guards=[require_writer],
    operation_id="teamsGet",
    summary="One team",
    responses=_responses(*_WRITER, 404, cached=True),
)
async def get_team(
    team_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> Team:
    state = await records.require(principal.club_id, tables.teams, team_id, include_deleted=True)
    return _team(team_id, state)


# -- players -------------------------------------------------------------------------------


@get(
    "/teams/{team_id:uuid}/players",
    guards=[require_writer],
    operation_id="teamPlayersList",
    summary="The players whose current team is this team",
    responses=_responses(*_WRITER, *_QUERY, 404, cached=True),
)
async def list_players(
    team_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
    include_deleted: IncludeDeleted = False,
) -> PlayerList:
    await records.require(principal.club_id, tables.teams, team_id, include_deleted=True)
    page = await records.page(
        principal.club_id,
        tables.players,
        where={"current_team": team_id},
        include_deleted=include_deleted,
        limit=limit,
        cursor=cursor,
    )
    return PlayerList(items=[_player(*item) for item in page.items], next_cursor=page.next_cursor)


@post(
    "/teams/{team_id:uuid}/players",
    status_code=201,
    guards=[require_writer],
    operation_id="teamPlayersCreate",
    summary="Add a player to this team",
    responses=_responses(*_WRITER, *_BODY, 404),
)
async def create_player(
    team_id: FromPath[uuid.UUID],
    data: JSONBody[PlayerCreate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> Player:
    await records.require(principal.club_id, tables.teams, team_id, include_deleted=True)
    fields = {**_carried(data), "current_team": str(team_id)}
    return _player(*await _create(records, principal, "players", data.id, fields))


@get(
    "/players/{player_id:uuid}",
    guards=[require_writer],
    operation_id="playersGet",
    summary="One player",
    responses=_responses(*_WRITER, 404, cached=True),
)
async def get_player(
    player_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> Player:
    state = await records.require(
        principal.club_id, tables.players, player_id, include_deleted=True
    )
    return _player(player_id, state)


@put(
    "/players/{player_id:uuid}",
    guards=[require_writer],
    operation_id="playersUpdate",
    summary="Change a player's fields (only those the body carries)",
    responses=_responses(*_WRITER, *_BODY, 404),
)
async def update_player(
    player_id: FromPath[uuid.UUID],
    data: JSONBody[PlayerUpdate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> Player:
    state = await records.require(
        principal.club_id, tables.players, player_id, include_deleted=True
    )
    if isinstance(data.current_team, uuid.UUID) and (
        await records.state(principal.club_id, tables.teams, data.current_team) is None
    ):
        raise _invalid("$.current_team", f"the club has no team {data.current_team}")
    fields = _carried(data)
    if fields:
        recorded = await records.write(principal, [ServerWrite("players", player_id, fields)])
        state = recorded.states[("players", player_id)]
    return _player(player_id, state)


# -- seasons -------------------------------------------------------------------------------


@get(
    "/seasons",
    operation_id="seasonsList",
    summary="The club's seasons",
    responses=_responses(*_ANY, *_QUERY, cached=True),
)
async def list_seasons(
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
    include_deleted: IncludeDeleted = False,
) -> SeasonList:
    page = await records.page(
        principal.club_id,
        tables.seasons,
        include_deleted=include_deleted,
        limit=limit,
        cursor=cursor,
    )
    return SeasonList(items=[_season(*item) for item in page.items], next_cursor=page.next_cursor)


@post(
    "/seasons",
    status_code=201,
    guards=[require_writer],
    operation_id="seasonsCreate",
    summary="Create a season",
    responses=_responses(*_WRITER, *_BODY),
)
async def create_season(
    data: JSONBody[SeasonCreate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> Season:
    if (
        isinstance(data.start_date, date)
        and isinstance(data.end_date, date)
        and data.end_date < data.start_date
    ):
        raise _invalid("$.end_date", "must be on or after start_date")
    record_id = data.id or uuid.uuid4()
    unmark: list[ServerWrite] = []
    if data.is_current is True:
        # One current season: the others lose the mark in the same atomic write.
        unmark = [
            ServerWrite("seasons", other, {"is_current": False})
            for other in await _current_seasons(records, principal.club_id)
            if other != record_id
        ]
    return _season(
        *await _create(records, principal, "seasons", record_id, _carried(data), *unmark)
    )


async def _current_seasons(records: Records, club_id: uuid.UUID) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    cursor: str | None = None
    while True:
        page = await records.page(
            club_id,
            tables.seasons,
            where={"is_current": True},
            include_deleted=True,
            limit=MAX_PAGE,
            cursor=cursor,
        )
        found += [record_id for record_id, _ in page.items]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


@get(
    "/seasons/{season_id:uuid}",
    operation_id="seasonsGet",
    summary="One season",
    responses=_responses(*_ANY, 404, cached=True),
)
async def get_season(
    season_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> Season:
    state = await records.require(
        principal.club_id, tables.seasons, season_id, include_deleted=True
    )
    return _season(season_id, state)


# -- club settings -------------------------------------------------------------------------


def _own_club(principal: Principal, club_id: uuid.UUID) -> None:
    if club_id != principal.club_id:
        raise ProblemError(404, "not-found", "Club not found", f"no club {club_id}")


@get(
    "/clubs/{club_id:uuid}/settings",
    operation_id="clubSettingsGet",
    summary="The club's settings (defaults for what was never set)",
    responses=_responses(*_ANY, 404, cached=True),
)
async def get_settings(
    club_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> ClubSettings:
    _own_club(principal, club_id)
    return _settings(club_id, await records.state(club_id, tables.club_settings, club_id))


@put(
    "/clubs/{club_id:uuid}/settings",
    guards=[require_writer],
    operation_id="clubSettingsUpdate",
    summary="Change the club's settings (only those the body carries)",
    responses=_responses(*_WRITER, *_BODY, 404),
)
async def update_settings(
    club_id: FromPath[uuid.UUID],
    data: JSONBody[ClubSettingsUpdate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> ClubSettings:
    _own_club(principal, club_id)
    state = await records.state(club_id, tables.club_settings, club_id)
    fields = _carried(data, skip=())
    if not fields:
        return _settings(club_id, state)
    writes = [ServerWrite("club_settings", club_id, fields)]
    if state is not None and state.is_deleted:
        # Settings a sync client archived come back: the club always has its settings.
        writes.insert(0, ServerWrite("club_settings", club_id, {}, op="restore"))
    recorded = await records.write(principal, writes)
    return _settings(club_id, recorded.states[("club_settings", club_id)])


router = Router(
    path="/api",
    route_handlers=[
        list_teams,
        create_team,
        get_team,
        list_players,
        create_player,
        get_player,
        update_player,
        list_seasons,
        create_season,
        get_season,
        get_settings,
        update_settings,
    ],
    tags=["teams"],
)
