"""The sync endpoints: decode, call the store, answer. The store commits before we answer.

Every request acts in the club of its access token. Pushing needs a writing role (owner or
coach) and must come from the device the token was issued to. Pulls and the conflict ledger
carry the club's raw records (dates of birth, notes), so they are for writing roles too;
viewers read through the viewer-safe match views.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from protocol.ingest import PushRejected
from protocol.wire import (
    ConflictList,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)
from sync_server.auth import Principal, require_writer
from sync_server.metrics import SyncMetrics
from sync_server.problems import ProblemError, problem_responses
from sync_server.relay.hub import Hub
from sync_server.settings import Settings
from sync_server.store import ChangeStore

# Every route here: no or a revoked token (401), not a writer or not this token's device
# (403), rate limited (429), the database gone (503).
_ANY = (401, 403, 429, 503)
# Routes with a JSON body: undecodable (400), too large (413), failing validation (422).
_BODY = (400, 413, 422)
# The largest cursor (see `protocol.wire.Cursor`): beyond it, integers leave JSON's safe range.
MAX_CURSOR = 2**53


def _own_device(principal: Principal, device_id: str) -> None:
    if device_id != principal.device_id:
        raise ProblemError(
            403,
            "wrong-device",
            "Not this token's device",
            f"this access token belongs to device {principal.device_id!r}, not {device_id!r}; "
            "log in with device_id set to the device that pushes",
            token_device_id=principal.device_id,
        )


def _problem(rejected: PushRejected) -> ProblemError:
    return ProblemError(
        rejected.status, rejected.code, rejected.title, rejected.detail, **rejected.extensions
    )


@post(
    "/push",
    status_code=200,
    summary="Push a change set",
    operation_id="syncPush",
    # 409: a sequence gap or a reused sequence.
    responses=problem_responses(*_ANY, *_BODY, 409),
)
async def push(
    data: JSONBody[PushRequest],
    principal: NamedDependency[Principal],
    store: NamedDependency[ChangeStore],
    settings: NamedDependency[Settings],
    hub: NamedDependency[Hub],
) -> PushResponse:
    """Apply a device's change set atomically and idempotently (see PROTOCOL.md)."""
    return await apply_push(store, settings, principal, data, hub.metrics.sync, "http")


async def apply_push(
    store: ChangeStore,
    settings: Settings,
    principal: Principal,
    data: PushRequest,
    metrics: SyncMetrics,
    transport: str,
) -> PushResponse:
    """A push as every transport does it (HTTP and the live socket); refusals raise
    ``ProblemError``."""
    try:
        answer = await _push(store, settings, principal, data)
    except ProblemError:
        metrics.pushes.labels(transport, "refused").inc()
        raise
    metrics.pushes.labels(transport, "applied" if answer.applied else "duplicate").inc()
    return answer


async def _push(
    store: ChangeStore, settings: Settings, principal: Principal, data: PushRequest
) -> PushResponse:
    _own_device(principal, data.device_id)
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
        return await store.push(principal.club_id, data)
    except PushRejected as rejected:
        raise _problem(rejected) from None


@post(
    "/pull",
    status_code=200,
    summary="Pull changes after a cursor",
    operation_id="syncPull",
    responses=problem_responses(*_ANY, *_BODY),
)
async def pull(
    data: JSONBody[PullRequest],
    principal: NamedDependency[Principal],
    store: NamedDependency[ChangeStore],
    settings: NamedDependency[Settings],
    hub: NamedDependency[Hub],
) -> PullResponse:
    """Changes other devices made after ``cursor``, in server order, one page at a time."""
    _own_device(principal, data.device_id)
    if data.limit > settings.pull_max_limit:
        # A smaller page than asked for is fine: the cursor and has_more say where to go on.
        data = msgspec.structs.replace(data, limit=settings.pull_max_limit)
    answer = await store.pull(principal.club_id, data)
    hub.metrics.sync.pulls.inc()
    hub.metrics.sync.changes_pulled.inc(len(answer.changes))
    return answer


@get(
    "/conflicts",
    summary="The conflict ledger",
    operation_id="syncConflicts",
    # 400 or 422: an invalid query parameter.
    responses=problem_responses(*_ANY, 400, 422),
)
async def list_conflicts(
    principal: NamedDependency[Principal],
    store: NamedDependency[ChangeStore],
    match_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this match")] = None,
    # Documented bounds only: outside them the answer is 400 invalid-query (PROTOCOL.md),
    # not the 422 that Litestar's own checks (ge/le) would give.
    since: Annotated[int, QueryParameter(schema_extra={"minimum": 0, "maximum": MAX_CURSOR})] = 0,
) -> ConflictList:
    """Every concurrent same-field write that lost, with both values, devices and times."""
    # Bounded like every cursor: a larger number overflowed the database's integer (a 500).
    if not 0 <= since <= MAX_CURSOR:
        raise ProblemError(
            400, "invalid-query", "Invalid query", f"since must be >= 0 and <= {MAX_CURSOR}"
        )
    return ConflictList(
        conflicts=await store.conflicts(principal.club_id, match_id=match_id, since=since)
    )


@post(
    "/conflicts/{conflict_id:uuid}/reinstate",
    status_code=200,
    summary="Reinstate a conflict's losing value",
    operation_id="syncReinstate",
    # 400: a request Litestar rejects; 404: no such conflict in the club; 409 and 422 as
    # for a push of the reinstating change.
    responses=problem_responses(*_ANY, 400, 404, 409, 422),
)
async def reinstate(
    conflict_id: FromPath[uuid.UUID],
    principal: NamedDependency[Principal],
    store: NamedDependency[ChangeStore],
) -> ReinstateResponse:
    """Write the losing value again as a new change that causally supersedes the winner."""
    try:
        return await store.reinstate(principal.club_id, conflict_id, by=principal.user_id)
    except PushRejected as rejected:
        raise _problem(rejected) from None


router = Router(
    path="/api/sync",
    route_handlers=[push, pull, list_conflicts, reinstate],
    guards=[require_writer],
    tags=["sync"],
)
