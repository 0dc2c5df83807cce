"""Share links for family, and the read-only match view they open (PROTOCOL.md §2.6)."""

from __future__ import annotations

import uuid

from litestar import Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.accounts import ShareLink
from protocol.viewer import MatchView
from sync_server.auth import Principal, require_writer, utc_now
from sync_server.match_view import load_match_view
from sync_server.problems import ProblemError, problem_responses
from sync_server.relay.hub import Hub
from sync_server.settings import Settings
from sync_server.share_links import ShareLinks
from sync_server.store import SystemClock

# A request Litestar rejects (400), rate limited (429), the database gone (503), and for a
# coach's routes: no or a revoked token (401), not a writer (403), no such match or link (404).
_ANY = (400, 429, 503)
_COACH = (*_ANY, 401, 403, 404)


@get(
    "/matches/{match_id:uuid}/share",
    guards=[require_writer],
    operation_id="shareGet",
    summary="The match's active share link, created if there is none",
    responses=problem_responses(*_COACH),
)
async def get_share(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    share_links: NamedDependency[ShareLinks],
) -> ShareLink:
    return await share_links.current(principal, match_id, utc_now(), fresh=False)


@post(
    "/matches/{match_id:uuid}/share",
    status_code=201,
    guards=[require_writer],
    operation_id="shareMint",
    summary="Mint a new share link",
    responses=problem_responses(*_COACH),
)
async def mint_share(
    match_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    share_links: NamedDependency[ShareLinks],
) -> ShareLink:
    return await share_links.current(principal, match_id, utc_now(), fresh=True)


@delete(
    "/matches/{match_id:uuid}/share/{share_id:uuid}",
    status_code=204,
    guards=[require_writer],
    operation_id="shareRevoke",
    summary="Revoke a share link",
    responses=problem_responses(*_COACH),
)
async def revoke_share(
    match_id: FromPath[uuid.UUID],
    share_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    share_links: NamedDependency[ShareLinks],
    hub: NamedDependency[Hub],
) -> None:
    await share_links.revoke(principal, match_id, share_id, utc_now())
    # Open sockets and streams of the link end now, on every instance (PROTOCOL.md §17).
    hub.link_revoked(share_id)


@get(
    "/watch/{token:str}",
    opt={"exclude_from_auth": True},
    operation_id="watchMatch",
    summary="What a share link shows: the match in the mobile format, viewer-safe",
    # 404: unknown link or removed match; 410: the link expired or was revoked.
    responses=problem_responses(*_ANY, 404, 410),
)
async def watch(
    token: FromPath[str],
    share_links: NamedDependency[ShareLinks],
    engine: NamedDependency[AsyncEngine],
) -> MatchView:
    shared = await share_links.resolve(token, utc_now())
    view = await load_match_view(engine, shared.club_id, shared.match_id, SystemClock().now_ms())
    if view is None:
        raise ProblemError(
            404, "not-found", "Match not found", "the match behind this link was removed"
        )
    return view


def provide_share_links(
    engine: NamedDependency[AsyncEngine],
    settings: NamedDependency[Settings],
    hub: NamedDependency[Hub],
) -> ShareLinks:
    return ShareLinks(engine=engine, settings=settings, resolved=hub.links)


router = Router(
    path="/api",
    route_handlers=[get_share, mint_share, revoke_share, watch],
    dependencies={"share_links": Provide(provide_share_links, sync_to_thread=False)},
    tags=["share links"],
)
