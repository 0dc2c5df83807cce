"""Match events over REST: log, list, read, edit, archive and restore (PROTOCOL.md, REST).

A thin layer over the merge: every write is one change of the caller's REST device through
`Records.write`, so it appears in pulls and the conflict ledger like a pushed change. Events
carry notes and sentiment ratings, so every route here is for writing roles (owner, coach);
viewers read the viewer-safe match view of a share link instead.

``/api/events/{id}`` addresses archived events too (``"deleted": true``); only lists hide them
unless ``include_deleted=true``. An event whose match is missing or archived answers 404, as
does an id of another club.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, cast

import msgspec
from litestar import Router, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from protocol.ingest import ServerWrite
from protocol.merge import RecordState
from protocol.rest_events import (
    EventCreate,
    EventKind,
    EventOut,
    EventPage,
    EventUpdate,
    Side,
)
from protocol.schema import Scalar
from sync_server import tables
from sync_server.auth import Principal, require_writer, utc_now
from sync_server.problems import ProblemError, problem_responses
from sync_server.records import DEFAULT_PAGE, MAX_PAGE, Records
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

# Every route: a request Litestar rejects or a bad query (400), no or a revoked token (401),
# not a writer (403), no such match or event in the club (404), rate limited (429), the
# database gone (503).
from sync_server.routes.rest_common import (
    to_scalar as _scalar,
)

_ANY = (400, 401, 403, 404, 429, 503)
# Routes with a JSON body: too large (413), failing validation (422).
_BODY = (413, 422)

_SIDES: Mapping[Side, str] = {"home": "home_team_id", "away": "away_team_id"}
# Members of EventUpdate written as they are (after UUIDs and timestamps become text).
_PLAIN_FIELDS = (
    "kind",
    "player_id",
    "period_number",
    "clock_ms",
    "notes",
    "sentiment",
    "x",
    "y",
    "related_event_id",
    "season_id",
    "created_at",
)


@post(
    "/matches/{match_id:uuid}/events",
    status_code=201,
    guards=[require_writer],
    operation_id="eventCreate",
    summary="Log an event of a match",
    # 409: the body's id is an event of another match.
    responses=problem_responses(*_ANY, *_BODY, 409),
)
async def create_event(
    match_id: FromPath[uuid.UUID],
    data: JSONBody[EventCreate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> EventOut:
    """Record the event as a change of the caller's REST device; answers the merged event."""
    club_id = principal.club_id
    match = (await records.require(club_id, tables.matches, match_id)).values()
    event_id = data.id or uuid.uuid4()
    existing = await records.state(club_id, tables.events, event_id)
    if existing is not None and existing.values().get("match_id") != str(match_id):
        raise ProblemError(
            409,
            "id-in-use",
            "Id already in use",
            f"event {event_id} belongs to another match; an event cannot move between matches",
        )
    errors: list[dict[str, str]] = []
    fields: dict[str, Scalar] = {"match_id": str(match_id), "kind": data.kind}
    if data.team is not None or data.team_id is not None:
        fields["team_id"] = _resolve_team(match, data.team, data.team_id, errors)
    for name in _PLAIN_FIELDS[1:]:
        value = getattr(data, name)
        if value is not None:
            fields[name] = _scalar(value)
    await _check_references(records, club_id, match_id, event_id, fields, errors)
    # Filled in by the server (after the checks: they are not the caller's to answer for).
    if data.season_id is None and match.get("season_id") is not None:
        fields["season_id"] = match["season_id"]
    if data.created_at is None and existing is None:
        fields["created_at"] = utc_now().isoformat(timespec="milliseconds")
    return await _write(records, principal, event_id, fields, match)


@get(
    "/matches/{match_id:uuid}/events",
    guards=[require_writer],
    operation_id="eventList",
    summary="The match's events, a page at a time (ordered by id)",
    # 422: a query parameter of the wrong type.
    responses=problem_responses(*_ANY, 422),
)
async def list_events(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
    # Documented bounds only: outside them the answer is 400 invalid-query, as for every list.
    limit: Annotated[
        int, QueryParameter(schema_extra={"minimum": 1, "maximum": MAX_PAGE})
    ] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, QueryParameter(description="next_cursor of the previous page")
    ] = None,
    include_deleted: Annotated[
        bool, QueryParameter(description="Also list archived events")
    ] = False,
) -> EventPage:
    """Ordered by id, not by time: a stable order, so following ``next_cursor`` visits every
    event once with no gaps even while events are being logged."""
    match = (await records.require(principal.club_id, tables.matches, match_id)).values()
    page = await records.page(
        principal.club_id,
        tables.events,
        where={"match_id": match_id},
        include_deleted=include_deleted,
        limit=limit,
        cursor=cursor,
    )
    return EventPage(
        items=[_event_out(event_id, state, match) for event_id, state in page.items],
        next_cursor=page.next_cursor,
    )


@get(
    "/events/{event_id:uuid}",
    guards=[require_writer],
    operation_id="eventGet",
    summary="One event (archived ones too, with deleted: true)",
    responses=problem_responses(*_ANY),
)
async def get_event(
    event_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> EventOut:
    state, match = await _event_and_match(records, principal.club_id, event_id)
    return _event_out(event_id, state, match)


@put(
    "/events/{event_id:uuid}",
    guards=[require_writer],
    operation_id="eventUpdate",
    summary="Edit an event: only the members sent change",
    responses=problem_responses(*_ANY, *_BODY),
)
async def update_event(
    event_id: FromPath[uuid.UUID],
    data: JSONBody[EventUpdate],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> EventOut:
    """An archived event can be edited too; it stays archived until restored."""
    club_id = principal.club_id
    state, match = await _event_and_match(records, club_id, event_id)
    errors: list[dict[str, str]] = []
    fields: dict[str, Scalar] = {}
    team_sent = not isinstance(data.team, msgspec.UnsetType)
    team_id_sent = not isinstance(data.team_id, msgspec.UnsetType)
    if team_sent or team_id_sent:
        # null clears the team; a side or an id sets it.
        team = None if isinstance(data.team, msgspec.UnsetType) else data.team
        team_id = None if isinstance(data.team_id, msgspec.UnsetType) else data.team_id
        fields["team_id"] = _resolve_team(match, team, team_id, errors)
    for name in _PLAIN_FIELDS:
        value = getattr(data, name)
        if value is not msgspec.UNSET:
            fields[name] = _scalar(value)
    if not fields:
        return _event_out(event_id, state, match)
    match_id = uuid.UUID(str(state.values()["match_id"]))
    await _check_references(records, club_id, match_id, event_id, fields, errors)
    return await _write(records, principal, event_id, fields, match)


@delete(
    "/events/{event_id:uuid}",
    status_code=204,
    guards=[require_writer],
    operation_id="eventDelete",
    summary="Archive an event (restore brings it back)",
    responses=problem_responses(*_ANY),
)
async def delete_event(
    event_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> None:
    """Idempotent: archiving an archived event changes nothing."""
    state, _ = await _event_and_match(records, principal.club_id, event_id)
    if not state.is_deleted:
        await records.write(principal, [ServerWrite("events", event_id, {}, op="delete")])


@post(
    "/events/{event_id:uuid}/restore",
    status_code=200,
    guards=[require_writer],
    operation_id="eventRestore",
    summary="Bring an archived event back",
    responses=problem_responses(*_ANY),
)
async def restore_event(
    event_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    records: NamedDependency[Records],
) -> EventOut:
    """Idempotent: restoring a live event changes nothing. Edits made while it was archived
    are kept."""
    state, match = await _event_and_match(records, principal.club_id, event_id)
    if not state.is_deleted:
        return _event_out(event_id, state, match)
    recorded = await records.write(principal, [ServerWrite("events", event_id, {}, op="restore")])
    return _event_out(event_id, recorded.states.get(("events", event_id), state), match)


# -- helpers ------------------------------------------------------------------------------


async def _event_and_match(
    records: Records, club_id: uuid.UUID, event_id: uuid.UUID
) -> tuple[RecordState, dict[str, Scalar]]:
    """The event (archived or not) and its match's values; 404 when the match is gone too."""
    state = await records.require(club_id, tables.events, event_id, include_deleted=True)
    match_state = await records.state(
        club_id, tables.matches, uuid.UUID(str(state.values()["match_id"]))
    )
    if match_state is None or match_state.is_deleted:
        raise ProblemError(
            404,
            "not-found",
            "Event not found",
            f"no event {event_id}: its match was removed (restore the match to see it)",
        )
    return state, match_state.values()


def _resolve_team(
    match: Mapping[str, Scalar],
    team: Side | None,
    team_id: uuid.UUID | None,
    errors: list[dict[str, str]],
) -> Scalar:
    """The team id an event names through ``team`` and/or ``team_id``, or None to clear it."""
    if team is not None:
        resolved = match.get(_SIDES[team])
        if resolved is None:
            errors.append(_error("team", f"the match has no {team} team"))
        elif team_id is not None and str(team_id) != resolved:
            errors.append(_error("team_id", f"is not the match's {team} team"))
        return resolved
    if team_id is None:
        return None
    if str(team_id) not in (match.get("home_team_id"), match.get("away_team_id")):
        errors.append(_error("team_id", "is neither the match's home nor its away team"))
    return str(team_id)


async def _check_references(
    records: Records,
    club_id: uuid.UUID,
    match_id: uuid.UUID,
    event_id: uuid.UUID,
    fields: Mapping[str, Scalar],
    errors: list[dict[str, str]],
) -> None:
    """Ids in the body must name records of this club (422 naming the field otherwise)."""
    player_id, season_id = fields.get("player_id"), fields.get("season_id")
    if isinstance(player_id, str):
        found = await records.values_by_id(club_id, tables.players, [uuid.UUID(player_id)])
        if player_id not in found:
            errors.append(_error("player_id", f"no player {player_id} in this club"))
    if isinstance(season_id, str):
        found = await records.values_by_id(club_id, tables.seasons, [uuid.UUID(season_id)])
        if season_id not in found:
            errors.append(_error("season_id", f"no season {season_id} in this club"))
    related = fields.get("related_event_id")
    if isinstance(related, str):
        found = await records.values_by_id(club_id, tables.events, [uuid.UUID(related)])
        if related == str(event_id):
            errors.append(_error("related_event_id", "an event cannot relate to itself"))
        elif found.get(related, {}).get("match_id") != str(match_id):
            errors.append(_error("related_event_id", f"no event {related} in this match"))
    if errors:
        raise ProblemError(
            422,
            "validation-failed",
            "Request failed validation",
            "; ".join(f"{error['field']}: {error['message']}" for error in errors),
            errors=errors,
        )


async def _write(
    records: Records,
    principal: Principal,
    event_id: uuid.UUID,
    fields: dict[str, Scalar],
    match: Mapping[str, Scalar],
) -> EventOut:
    recorded = await records.write(principal, [ServerWrite("events", event_id, fields)])
    state = recorded.states.get(("events", event_id))
    if state is None:
        state = await records.require(
            principal.club_id, tables.events, event_id, include_deleted=True
        )
    return _event_out(event_id, state, match)


def _error(name: str, message: str) -> dict[str, str]:
    return {"field": f"$.{name}", "message": message, "source": "body"}


def _event_out(event_id: uuid.UUID, state: RecordState, match: Mapping[str, Scalar]) -> EventOut:
    values = state.values()
    team_id = values.get("team_id")
    side: Side | None = None
    if team_id is not None and team_id == match.get("home_team_id"):
        side = "home"
    elif team_id is not None and team_id == match.get("away_team_id"):
        side = "away"
    return EventOut(
        id=event_id,
        match_id=uuid.UUID(str(values["match_id"])),
        kind=cast(EventKind, values.get("kind")),
        team=side,
        team_id=_uuid(team_id),
        player_id=_uuid(values.get("player_id")),
        period_number=_int(values.get("period_number")),
        clock_ms=_int(values.get("clock_ms")),
        notes=_text(values.get("notes")),
        sentiment=_int(values.get("sentiment")),
        x=_float(values.get("x")),
        y=_float(values.get("y")),
        related_event_id=_uuid(values.get("related_event_id")),
        season_id=_uuid(values.get("season_id")),
        created_at=_text(values.get("created_at")),
        deleted=state.is_deleted,
    )


router = Router(
    path="/api",
    route_handlers=[
        create_event,
        list_events,
        get_event,
        update_event,
        delete_event,
        restore_event,
    ],
    tags=["events"],
)
