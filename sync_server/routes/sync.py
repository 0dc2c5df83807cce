"""The sync endpoints: decode, call the store, answer. The store commits before we answer.

Until accounts exist the club comes from the ``Touchline-Club`` header; the tenant
dependency is the one place that will read it from the token instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from protocol.ingest import PushRejected
from protocol.wire import (
    ConflictList,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)
from sync_server.problems import ProblemError
from sync_server.settings import Settings
from sync_server.store import ChangeStore

CLUB_HEADER = "Touchline-Club"


@dataclass(frozen=True, slots=True)
class SyncScope:
    """Whose data a sync request reads and writes."""

    club_id: uuid.UUID


async def provide_tenant(
    club: Annotated[
        str,
        HeaderParameter(
            name=CLUB_HEADER, description="The club (tenancy unit) the request acts in; a UUID."
        ),
    ],
) -> SyncScope:
    try:
        return SyncScope(uuid.UUID(club))
    except ValueError:
        raise ProblemError(
            400, "invalid-club", "Invalid club id", f"{CLUB_HEADER} must be a UUID, got {club!r}"
        ) from None


def _problem(rejected: PushRejected) -> ProblemError:
    return ProblemError(
        rejected.status, rejected.code, rejected.title, rejected.detail, **rejected.extensions
    )


@post("/push", status_code=200, summary="Push a change set", operation_id="syncPush")
async def push(
    data: JSONBody[PushRequest],
    tenant: NamedDependency[SyncScope],
    store: NamedDependency[ChangeStore],
    settings: NamedDependency[Settings],
) -> PushResponse:
    """Apply a device's change set atomically and idempotently (see PROTOCOL.md)."""
    if len(data.changes) > settings.push_max_changes:
        raise ProblemError(
            413,
            "change-set-too-large",
            "Change set too large",
            f"{len(data.changes)} changes in one set; at most {settings.push_max_changes}, "
            "send the rest in the next push",
            max_changes=settings.push_max_changes,
        )
    try:
        return await store.push(tenant.club_id, data)
    except PushRejected as rejected:
        raise _problem(rejected) from None


@post("/pull", status_code=200, summary="Pull changes after a cursor", operation_id="syncPull")
async def pull(
    data: JSONBody[PullRequest],
    tenant: NamedDependency[SyncScope],
    store: NamedDependency[ChangeStore],
    settings: NamedDependency[Settings],
) -> PullResponse:
    """Changes other devices made after ``cursor``, in server order, one page at a time."""
    if data.limit > settings.pull_max_limit:
        # A smaller page than asked for is fine: the cursor and has_more say where to go on.
        data = msgspec.structs.replace(data, limit=settings.pull_max_limit)
    return await store.pull(tenant.club_id, data)


@get("/conflicts", summary="The conflict ledger", operation_id="syncConflicts")
async def list_conflicts(
    tenant: NamedDependency[SyncScope],
    store: NamedDependency[ChangeStore],
    match_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this match")] = None,
    since: FromQuery[int] = 0,
) -> ConflictList:
    """Every concurrent same-field write that lost, with both values, devices and times."""
    if since < 0:
        raise ProblemError(400, "invalid-query", "Invalid query", "since must be >= 0")
    return ConflictList(
        conflicts=await store.conflicts(tenant.club_id, match_id=match_id, since=since)
    )


@post(
    "/conflicts/{conflict_id:uuid}/reinstate",
    status_code=200,
    summary="Reinstate a conflict's losing value",
    operation_id="syncReinstate",
)
async def reinstate(
    conflict_id: FromPath[uuid.UUID],
    tenant: NamedDependency[SyncScope],
    store: NamedDependency[ChangeStore],
) -> ReinstateResponse:
    """Write the losing value again as a new change that causally supersedes the winner."""
    try:
        return await store.reinstate(tenant.club_id, conflict_id)
    except PushRejected as rejected:
        raise _problem(rejected) from None


router = Router(
    path="/api/sync",
    route_handlers=[push, pull, list_conflicts, reinstate],
    dependencies={"tenant": Provide(provide_tenant)},
    tags=["sync"],
)
