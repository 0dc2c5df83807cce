"""REST endpoints for matches, the match clock and the lineup (PROTOCOL.md, REST API).

Thin views over the merged records: every write is a change of the caller's REST device
through `Records.write` (merged, logged, pulled and in the conflict ledger like any push);
every read is the merged state, and the score, status, clock and minutes played derive from
it (protocol.derive). Owners and coaches read everything; the viewer role reads matches, the
mobile match view and the score in their viewer-safe form (no notes, no surnames) and writes
nothing. The lineup names players and is for owners and coaches only.

Archived matches are left out of lists unless ``include_deleted=true``; asked for by id they
are answered with ``"deleted": true``. The clock and the lineup of an archived match cannot be
written (404) until it is restored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Final

import msgspec
from litestar import Router, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol import derive
from protocol.ingest import ServerWrite
from protocol.merge import RecordState
from protocol.rest_matches import (
    ClockRequest,
    Lineup,
    LineupEntry,
    LineupPut,
    MatchClock,
    MatchCreate,
    MatchDetail,
    MatchDetailView,
    MatchList,
    MatchOut,
    MatchUpdate,
)
from protocol.schema import PERIOD_FORMATS, Scalar
from protocol.viewer import STATUS, Scoreboard
from sync_server import tables
from sync_server.auth import Principal, require_writer, utc_now
from sync_server.match_view import MatchRecords, load_match_records
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
    as_float as _float,
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
from sync_server.routes.rest_common import (
    to_scalar as _scalar,
)
from sync_server.store import SystemClock

__all__ = ["router"]

# Used when neither the request nor the club's settings name them (the app's defaults).
_DEFAULT_PERIOD_FORMAT: Final = "half"
_DEFAULT_DURATION_MINS: Final = derive.DEFAULT_DURATION_MINS

SeasonFilter = Annotated[
    uuid.UUID | None, QueryParameter(description="Only the matches of this season")
]


# -- conversions -------------------------------------------------------------------------------


def _given(value: uuid.UUID | msgspec.UnsetType | None) -> uuid.UUID | None:
    return None if isinstance(value, msgspec.UnsetType) else value


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "validation-failed",
        "Request failed validation",
        f"{field}: {message}",
        errors=[{"field": field, "message": message, "source": "body"}],
    )


def _match_out(
    record_id: uuid.UUID,
    state: RecordState,
    teams: Mapping[str, Mapping[str, Scalar]],
    *,
    with_notes: bool,
) -> MatchOut:
    v = state.values()
    home, away = _uuid(v.get("home_team_id")), _uuid(v.get("away_team_id"))
    return MatchOut(
        id=record_id,
        home_team_id=home,
        away_team_id=away,
        home_team=_text(teams.get(str(home), {}).get("name")),
        away_team=_text(teams.get(str(away), {}).get("name")),
        kickoff_ts=_text(v.get("kickoff_ts")),
        period_format=_text(v.get("period_format")),
        duration_mins=_int(v.get("duration_mins")),
        competition=_text(v.get("competition")),
        venue=_text(v.get("venue")),
        season_id=_uuid(v.get("season_id")),
        notes=_text(v.get("notes")) if with_notes else msgspec.UNSET,
        deleted=state.is_deleted,
    )


async def _matches_out(
    records: Records, principal: Principal, items: list[tuple[uuid.UUID, RecordState]]
) -> list[MatchOut]:
    team_ids = {
        team_id
        for _, state in items
        for name in ("home_team_id", "away_team_id")
        if (team_id := _uuid(state.values().get(name))) is not None
    }
    teams = await records.values_by_id(principal.club_id, tables.teams, sorted(team_ids))
    return [
        _match_out(record_id, state, teams, with_notes=principal.can_write)
        for record_id, state in items
    ]


def _now_ms() -> int:
    return SystemClock().now_ms()


def _rfc3339_now() -> str:
    return utc_now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _require_match(
    engine: AsyncEngine,
    principal: Principal,
    match_id: uuid.UUID,
    *,
    include_deleted: bool = True,
    lineup: bool = False,
) -> MatchRecords:
    loaded = await load_match_records(
        engine, principal.club_id, match_id, include_deleted=include_deleted, lineup=lineup
    )
    if loaded is None:
        raise ProblemError(404, "not-found", "Match not found", f"no match {match_id}")
    return loaded


async def _check_references(
    records: Records,
    principal: Principal,
    *,
    teams: Mapping[str, uuid.UUID | None],
    season: uuid.UUID | None,
) -> None:
    """422 for a team or season the club does not have (archived ones are fine)."""
    for field, team_id in teams.items():
        if team_id is not None and (
            await records.state(principal.club_id, tables.teams, team_id) is None
        ):
            raise _invalid(field, f"the club has no team {team_id}")
    if (
        season is not None
        and await records.state(principal.club_id, tables.seasons, season) is None
    ):
        raise _invalid("$.season_id", f"the club has no season {season}")


# -- matches -----------------------------------------------------------------------------------


@get(
    "/matches",
    operation_id="matchesList",
    summary="The club's matches (viewers: without notes)",
    responses=_responses(*_ANY, *_QUERY, cached=True),
)
async def list_matches(
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
    season_id: SeasonFilter = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
    include_deleted: IncludeDeleted = False,
) -> MatchList:
    page = await records.page(
        principal.club_id,
        tables.matches,
        where={"season_id": season_id} if season_id is not None else None,
        include_deleted=include_deleted,
        limit=limit,
        cursor=cursor,
    )
    return MatchList(
        items=await _matches_out(records, principal, page.items), next_cursor=page.next_cursor
    )


@post(
    "/matches",
    status_code=201,
    guards=[require_writer],
    operation_id="matchesCreate",
    summary="Create a match",
    responses=_responses(*_WRITER, *_BODY),
)
async def create_match(
    data: JSONBody[MatchCreate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> MatchOut:
    """``period_format`` and ``duration_mins`` default to the club's settings."""
    if data.home_team_id == data.away_team_id:
        raise _invalid("$.away_team_id", "must differ from home_team_id")
    await _check_references(
        records,
        principal,
        teams={"$.home_team_id": data.home_team_id, "$.away_team_id": data.away_team_id},
        season=data.season_id,
    )
    fields = _carried(data)
    if "period_format" not in fields or "duration_mins" not in fields:
        defaults = await _club_defaults(records, principal.club_id)
        fields = {**defaults, **fields}
    match_id = data.id or uuid.uuid4()
    recorded = await records.write(principal, [ServerWrite("matches", match_id, fields)])
    state = recorded.states[("matches", match_id)]
    return (await _matches_out(records, principal, [(match_id, state)]))[0]


async def _club_defaults(records: Records, club_id: uuid.UUID) -> dict[str, Scalar]:
    settings = await records.state(club_id, tables.club_settings, club_id)
    values = {} if settings is None or settings.is_deleted else settings.values()
    period_format = values.get("default_period_format")
    duration = _int(values.get("default_duration_mins"))
    return {
        "period_format": period_format
        if period_format in PERIOD_FORMATS
        else _DEFAULT_PERIOD_FORMAT,
        "duration_mins": duration if duration is not None else _DEFAULT_DURATION_MINS,
    }


@get(
    "/matches/{match_id:uuid}",
    operation_id="matchesGet",
    summary="The match in the app's mobile format: score, status, clock and recent events",
    responses=_responses(*_ANY, 404, cached=True),
)
async def get_match(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    engine: NamedDependency[AsyncEngine],
) -> MatchDetailView:
    """Coaches and owners see players' full names and the match's notes; viewers see the
    viewer-safe form (``Jamie S.`` or ``#7``, no notes)."""
    loaded = await _require_match(engine, principal, match_id)
    # Whole seconds: a stopped clock's answer (and ETag) stays put, a running one's changes
    # at most once a second.
    now_ms = _now_ms() // 1000 * 1000
    view = loaded.view(now_ms, full_names=principal.can_write)
    v = loaded.match
    detail = MatchDetail(
        **msgspec.structs.asdict(view.match),
        home_team_id=_uuid(v.get("home_team_id")),
        away_team_id=_uuid(v.get("away_team_id")),
        season_id=_uuid(v.get("season_id")),
        duration_mins=_int(v.get("duration_mins")),
        notes=_text(v.get("notes")) if principal.can_write else msgspec.UNSET,
        deleted=loaded.deleted,
    )
    return MatchDetailView(
        match=detail,
        recent_events=view.recent_events,
        server_time_ms=now_ms if view.match.clock_running else msgspec.UNSET,
    )


@put(
    "/matches/{match_id:uuid}",
    guards=[require_writer],
    operation_id="matchesUpdate",
    summary="Change a match's fields (only those the body carries)",
    responses=_responses(*_WRITER, *_BODY, 404),
)
async def update_match(
    match_id: FromPath[uuid.UUID],
    data: JSONBody[MatchUpdate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> MatchOut:
    state = await records.require(principal.club_id, tables.matches, match_id, include_deleted=True)
    fields = _carried(data)
    current = state.values()
    home = fields.get("home_team_id", current.get("home_team_id"))
    away = fields.get("away_team_id", current.get("away_team_id"))
    if home is not None and home == away and {"home_team_id", "away_team_id"} & fields.keys():
        side = "away_team_id" if "away_team_id" in fields else "home_team_id"
        raise _invalid(f"$.{side}", "home_team_id and away_team_id must differ")
    await _check_references(
        records,
        principal,
        teams={
            "$.home_team_id": _given(data.home_team_id),
            "$.away_team_id": _given(data.away_team_id),
        },
        season=_given(data.season_id),
    )
    if fields:
        recorded = await records.write(principal, [ServerWrite("matches", match_id, fields)])
        state = recorded.states[("matches", match_id)]
    return (await _matches_out(records, principal, [(match_id, state)]))[0]


@delete(
    "/matches/{match_id:uuid}",
    status_code=204,
    guards=[require_writer],
    operation_id="matchesDelete",
    summary="Archive a match (restore brings it back)",
    responses=_responses(*_WRITER, 404),
)
async def delete_match(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> None:
    """Idempotent: archiving an archived match changes nothing."""
    state = await records.require(principal.club_id, tables.matches, match_id, include_deleted=True)
    if not state.is_deleted:
        await records.write(principal, [ServerWrite("matches", match_id, {}, "delete")])


@post(
    "/matches/{match_id:uuid}/restore",
    status_code=200,
    guards=[require_writer],
    operation_id="matchesRestore",
    summary="Bring an archived match back",
    responses=_responses(*_WRITER, 404),
)
async def restore_match(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> MatchOut:
    """Idempotent: restoring a live match changes nothing."""
    state = await records.require(principal.club_id, tables.matches, match_id, include_deleted=True)
    if state.is_deleted:
        recorded = await records.write(principal, [ServerWrite("matches", match_id, {}, "restore")])
        state = recorded.states[("matches", match_id)]
    return (await _matches_out(records, principal, [(match_id, state)]))[0]


@get(
    "/matches/{match_id:uuid}/score",
    operation_id="matchesScore",
    summary="The score, derived from the match's live goals and own goals",
    responses=_responses(*_ANY, 404, cached=True),
)
async def get_score(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    engine: NamedDependency[AsyncEngine],
) -> Scoreboard:
    score = (await _require_match(engine, principal, match_id)).score()
    return Scoreboard(home=score.home, away=score.away)


# -- the match clock ---------------------------------------------------------------------------


@post(
    "/matches/{match_id:uuid}/clock",
    status_code=200,
    guards=[require_writer],
    operation_id="matchesClock",
    summary="Press a match-clock button; answers the clock derived from every press",
    responses=_responses(*_WRITER, *_BODY, 404),
)
async def press_clock(
    match_id: FromPath[uuid.UUID],
    data: JSONBody[ClockRequest],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
    engine: NamedDependency[AsyncEngine],
) -> MatchClock:
    """Records a ``clock_actions`` record (a new id). A press that makes no sense in the
    derived state (a pause while stopped, a second start) is kept but changes nothing, so two
    coaches pressing at once converge on one clock."""
    await records.require(principal.club_id, tables.matches, match_id)
    action_id = uuid.uuid4()
    fields: dict[str, Scalar] = {
        "match_id": str(match_id),
        "action": data.action,
        "at": data.at if data.at is not None else _rfc3339_now(),
    }
    await records.write(principal, [ServerWrite("clock_actions", action_id, fields)])
    now_ms = _now_ms()
    clock = (await _require_match(engine, principal, match_id)).clock(now_ms)
    return MatchClock(
        match_id=match_id,
        action_id=action_id,
        status=STATUS.get(clock.status, clock.status),
        current_period=clock.period,
        clock_time=clock.clock_time,
        running=clock.running,
        period_elapsed_ms=clock.period_elapsed_ms,
        server_time_ms=now_ms,
    )


# -- the lineup --------------------------------------------------------------------------------


def lineup_row_id(match_id: uuid.UUID, player_id: uuid.UUID) -> uuid.UUID:
    """The deterministic id of a player's lineup row (PROTOCOL.md §2.1)."""
    return uuid.uuid5(match_id, str(player_id))


def _lineup(loaded: MatchRecords, now_ms: int) -> Lineup:
    clock = loaded.clock(now_ms)
    played = derive.minutes_played(
        (values for _, values in loaded.lineup),
        (values for _, values in loaded.events),
        period_length=derive.period_minutes(loaded.match),
        until=derive.played_until(clock, match=loaded.match),
    )
    entries: list[LineupEntry] = []
    listed: set[str] = set()
    for row_id, values in loaded.lineup:
        player_id = _uuid(values.get("player_id"))
        if player_id is None:
            continue
        listed.add(str(player_id))
        entries.append(_entry(loaded, player_id, row_id, values, played.get(str(player_id), 0.0)))
    for player, minutes in played.items():
        if player not in listed:
            entries.append(_entry(loaded, uuid.UUID(player), None, {}, minutes))
    entries.sort(key=lambda e: (e.start_min is None, (e.player or "").casefold(), e.player_id))
    return Lineup(match_id=loaded.match_id, players=entries)


def _entry(
    loaded: MatchRecords,
    player_id: uuid.UUID,
    row_id: uuid.UUID | None,
    values: Mapping[str, Scalar],
    minutes: float,
) -> LineupEntry:
    player = loaded.players.get(str(player_id), {})
    return LineupEntry(
        id=row_id,
        player_id=player_id,
        player=_text(player.get("full_name")),
        squad_number=_int(player.get("squad_number")),
        position=_text(values.get("position")),
        start_min=_float(values.get("start_min")),
        end_min=_float(values.get("end_min")),
        minutes_played=round(minutes, 1),
        in_lineup=row_id is not None,
    )


@get(
    "/matches/{match_id:uuid}/lineup",
    guards=[require_writer],
    operation_id="matchesLineupGet",
    summary="The lineup, with minutes played derived from it and the substitution events",
    responses=_responses(*_WRITER, 404, cached=True),
)
async def get_lineup(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    engine: NamedDependency[AsyncEngine],
) -> Lineup:
    return _lineup(await _require_match(engine, principal, match_id, lineup=True), _now_ms())


@put(
    "/matches/{match_id:uuid}/lineup",
    guards=[require_writer],
    operation_id="matchesLineupPut",
    summary="Replace the lineup (players not listed are removed)",
    responses=_responses(*_WRITER, *_BODY, 404),
)
async def put_lineup(
    match_id: FromPath[uuid.UUID],
    data: JSONBody[LineupPut],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
    engine: NamedDependency[AsyncEngine],
) -> Lineup:
    """Each player's row has the id ``uuid5(match_id, player_id)``, so two coaches setting
    the same player converge on one row. Only what differs from the stored lineup is
    written: sending the same lineup again records nothing."""
    await records.require(principal.club_id, tables.matches, match_id)
    seen: set[uuid.UUID] = set()
    for index, entry in enumerate(data.players):
        if entry.player_id in seen:
            raise _invalid(f"$.players[{index}].player_id", "listed twice")
        seen.add(entry.player_id)
        if (
            entry.start_min is not None
            and entry.end_min is not None
            and (entry.end_min < entry.start_min)
        ):
            raise _invalid(f"$.players[{index}].end_min", "must be >= start_min")
    known = await records.values_by_id(principal.club_id, tables.players, sorted(seen))
    for index, entry in enumerate(data.players):
        if str(entry.player_id) not in known:
            raise _invalid(
                f"$.players[{index}].player_id", f"the club has no player {entry.player_id}"
            )
    stored = await _lineup_rows(records, principal.club_id, match_id)
    writes: list[ServerWrite] = []
    wanted: set[uuid.UUID] = set()
    for entry in data.players:
        row_id = lineup_row_id(match_id, entry.player_id)
        wanted.add(row_id)
        desired = {
            "position": entry.position,
            "start_min": _scalar(entry.start_min),
            "end_min": _scalar(entry.end_min),
        }
        state = stored.get(row_id)
        if state is None:
            fields: dict[str, Scalar] = {
                "match_id": str(match_id),
                "player_id": str(entry.player_id),
            }
            fields |= {name: value for name, value in desired.items() if value is not None}
            writes.append(ServerWrite("lineup", row_id, fields))
            continue
        if state.is_deleted:
            writes.append(ServerWrite("lineup", row_id, {}, "restore"))
        current = state.values()
        changed = {name: value for name, value in desired.items() if current.get(name) != value}
        if changed:
            writes.append(ServerWrite("lineup", row_id, changed))
    writes += [
        ServerWrite("lineup", row_id, {}, "delete")
        for row_id, state in stored.items()
        if row_id not in wanted and not state.is_deleted
    ]
    if writes:
        await records.write(principal, writes)
    return _lineup(await _require_match(engine, principal, match_id, lineup=True), _now_ms())


async def _lineup_rows(
    records: Records, club_id: uuid.UUID, match_id: uuid.UUID
) -> dict[uuid.UUID, RecordState]:
    """Every lineup row of the match, archived ones included."""
    rows: dict[uuid.UUID, RecordState] = {}
    cursor: str | None = None
    while True:
        page = await records.page(
            club_id,
            tables.lineup,
            where={"match_id": match_id},
            include_deleted=True,
            limit=MAX_PAGE,
            cursor=cursor,
        )
        rows.update(page.items)
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


router = Router(
    path="/api",
    route_handlers=[
        list_matches,
        create_match,
        get_match,
        update_match,
        delete_match,
        restore_match,
        get_score,
        press_clock,
        get_lineup,
        put_lineup,
    ],
    tags=["matches"],
)
