"""Club membership: invites and members (PROTOCOL.md §2.5)."""

from __future__ import annotations

import uuid

from litestar import Router, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.accounts import Invite, InviteRequest, Member, MemberList, RoleChange
from sync_server.auth import Principal, SessionCache, require_writer, utc_now
from sync_server.clubs import Clubs
from sync_server.problems import problem_responses
from sync_server.settings import Settings

# Every route here: a request Litestar rejects (400), no or a revoked token (401), not a
# writer (403), another club or member (404), rate limited (429), the database gone (503).
_ANY = (400, 401, 403, 404, 429, 503)
# Routes with a JSON body: undecodable (400), too large (413), failing validation (422).
_BODY = (400, 413, 422)


@post(
    "/{club_id:uuid}/invites",
    status_code=201,
    guards=[require_writer],
    operation_id="clubInvite",
    summary="Invite someone to the club",
    responses=problem_responses(*_ANY, *_BODY),
)
async def create_invite(
    club_id: FromPath[uuid.UUID],
    data: JSONBody[InviteRequest],
    principal: NamedDependency[Principal],
    clubs: NamedDependency[Clubs],
) -> Invite:
    """A one-time code, valid for a few days, to sign up into this club with ``role``."""
    return await clubs.create_invite(principal, club_id, data.role, utc_now())


@get(
    "/{club_id:uuid}/members",
    guards=[require_writer],
    operation_id="clubMembers",
    summary="The club's members",
    responses=problem_responses(*_ANY),
)
async def list_members(
    club_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    clubs: NamedDependency[Clubs],
) -> MemberList:
    return await clubs.members(principal, club_id)


@patch(
    "/{club_id:uuid}/members/{user_id:uuid}",
    guards=[require_writer],
    operation_id="clubChangeRole",
    summary="Change a member's role (owner only)",
    # 409: the owner's own role cannot change.
    responses=problem_responses(*_ANY, *_BODY, 409),
)
async def change_role(
    club_id: FromPath[uuid.UUID],
    user_id: FromPath[uuid.UUID],
    data: JSONBody[RoleChange],
    principal: NamedDependency[Principal],
    clubs: NamedDependency[Clubs],
) -> Member:
    return await clubs.change_role(principal, club_id, user_id, data.role)


@delete(
    "/{club_id:uuid}/members/{user_id:uuid}",
    status_code=204,
    guards=[require_writer],
    operation_id="clubRemoveMember",
    summary="Remove a member; their devices' tokens stop working at once",
    responses=problem_responses(*_ANY),
)
async def remove_member(
    club_id: FromPath[uuid.UUID],
    user_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    clubs: NamedDependency[Clubs],
) -> None:
    await clubs.remove_member(principal, club_id, user_id, utc_now())


def _provide_clubs(
    engine: NamedDependency[AsyncEngine],
    settings: NamedDependency[Settings],
    sessions: NamedDependency[SessionCache],
) -> Clubs:
    return Clubs(engine=engine, settings=settings, sessions=sessions)


router = Router(
    path="/api/clubs",
    route_handlers=[create_invite, list_members, change_role, remove_member],
    dependencies={"clubs": Provide(_provide_clubs, sync_to_thread=False)},
    tags=["clubs"],
)
