"""Signup, login, token refresh, logout and who-am-I (PROTOCOL.md §2)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.accounts import LoginRequest, MeResponse, RefreshRequest, SignupRequest, TokenPair
from sync_server.accounts import Accounts
from sync_server.auth import Principal, SessionCache, utc_now
from sync_server.problems import problem_responses
from sync_server.ratelimit import RateLimiter, check_login_attempt
from sync_server.settings import Settings
from sync_server.store import ChangeStore

_PUBLIC = {"exclude_from_auth": True}
# Every route here: rate limited (429), and the database may be gone (503).
_ANY = (429, 503)
# Routes with a JSON body: undecodable (400), too large (413), failing validation (422).
_BODY = (400, 413, 422)


def client_address(request: Request[Any, Any, Any]) -> str:
    client = request.scope.get("client")
    return client[0] if client else "unknown"


@post(
    "/signup",
    status_code=201,
    opt=_PUBLIC,
    operation_id="authSignup",
    summary="Sign up",
    # 400 also: an invalid invite code; 403: signup disabled; 409: email taken.
    responses=problem_responses(*_ANY, *_BODY, 403, 409),
)
async def signup(data: JSONBody[SignupRequest], accounts: NamedDependency[Accounts]) -> TokenPair:
    """A new user with a new club and team (``team_name``), or joining a club (``invite_code``)."""
    return await accounts.signup(data, utc_now())


@post(
    "/login",
    status_code=200,
    opt=_PUBLIC,
    operation_id="authLogin",
    summary="Log in",
    # 401: wrong email or password; 403: the account was removed from its club.
    responses=problem_responses(*_ANY, *_BODY, 401, 403),
)
async def login(
    request: Request[Any, Any, Any],
    data: JSONBody[LoginRequest],
    accounts: NamedDependency[Accounts],
    rate_limiter: NamedDependency[RateLimiter],
    settings: NamedDependency[Settings],
) -> TokenPair:
    """Tokens for a device; attempts are limited per client address and per account."""
    await check_login_attempt(
        rate_limiter,
        address=client_address(request),
        email=data.email,
        limit_per_minute=settings.login_attempts_per_minute,
    )
    return await accounts.login(data, utc_now())


@post(
    "/refresh",
    status_code=200,
    opt=_PUBLIC,
    operation_id="authRefresh",
    summary="Refresh",
    # 401: unknown, expired or reused refresh token; 403: removed from the club.
    responses=problem_responses(*_ANY, *_BODY, 401, 403),
)
async def refresh(data: JSONBody[RefreshRequest], accounts: NamedDependency[Accounts]) -> TokenPair:
    """A new token pair; the refresh token sent is retired (reusing it revokes the login)."""
    return await accounts.refresh(data.refresh_token, utc_now())


@post(
    "/logout",
    status_code=204,
    operation_id="authLogout",
    summary="Log out this device",
    responses=problem_responses(*_ANY, 401),
)
async def logout(
    principal: NamedDependency[Principal], accounts: NamedDependency[Accounts]
) -> None:
    """End every session of this user on this device: its tokens stop working at once."""
    await accounts.logout(principal, utc_now())


@get(
    "/me",
    operation_id="authMe",
    summary="The current user, club, team, role and device",
    responses=problem_responses(*_ANY, 401),
)
async def me(
    principal: NamedDependency[Principal], accounts: NamedDependency[Accounts]
) -> MeResponse:
    return await accounts.me(principal)


def _provide_accounts(
    engine: NamedDependency[AsyncEngine],
    store: NamedDependency[ChangeStore],
    settings: NamedDependency[Settings],
    sessions: NamedDependency[SessionCache],
) -> Accounts:
    return Accounts(engine=engine, store=store, settings=settings, sessions=sessions)


router = Router(
    path="/api/auth",
    route_handlers=[signup, login, refresh, logout, me],
    dependencies={"accounts": Provide(_provide_accounts, sync_to_thread=False)},
    tags=["auth"],
)
