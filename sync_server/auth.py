"""Who is asking: access tokens, the authentication middleware, roles and guards.

Access tokens are short-lived HS256 JWTs (PyJWT through Litestar's JWT support) naming the
user, club, device and session. The signature alone is not trusted for long: every request
also checks that its session is live and reads the member's current role, so logging out,
removing a member or changing a role takes effect on the very next request.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AuthenticationResult
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token
from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol.accounts import Role
from sync_server import tables
from sync_server.db import reading
from sync_server.problems import ProblemError
from sync_server.recent_reads import RecentReads
from sync_server.settings import Settings

__all__ = [
    "ALGORITHM",
    "AUDIENCE",
    "Principal",
    "SessionCache",
    "build_jwt_auth",
    "issue_access_token",
    "principal_from_token",
    "require_owner",
    "require_writer",
    "revoke_sessions",
    "token_digest",
]

AUDIENCE: Final = "touchline"
# The one algorithm tokens are signed and checked with; "none" and RS/HS confusion are out.
ALGORITHM: Final = "HS256"
_REQUIRED_CLAIMS: Final = ("exp", "iat", "aud", "sub", "sid")
_WWW_AUTHENTICATE: Final = {"WWW-Authenticate": 'Bearer realm="touchline"'}

WRITER_ROLES: Final = frozenset({"owner", "coach"})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated member behind a request, with their role as it is now."""

    user_id: uuid.UUID
    club_id: uuid.UUID
    role: Role
    device_id: str
    session_id: uuid.UUID

    @property
    def can_write(self) -> bool:
        return self.role in WRITER_ROLES


@dataclass
class AccessToken(Token):
    """Litestar's JWT with our claims at the top level: session, club and device."""

    sid: str = field(default="")
    club: str = field(default="")
    dev: str = field(default="")


def token_digest(token: str) -> str:
    """What is stored of a secret token (refresh token, invite code, share token): its
    SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_access_token(settings: Settings, principal: Principal, now: datetime) -> str:
    token = AccessToken(
        sub=str(principal.user_id),
        exp=now + timedelta(seconds=settings.access_token_ttl_s),
        iat=now,
        aud=AUDIENCE,
        jti=uuid.uuid4().hex,
        sid=str(principal.session_id),
        club=str(principal.club_id),
        dev=principal.device_id,
    )
    return token.encode(secret=settings.secret_key, algorithm=ALGORITHM)


class TokenAuthMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, also reading WebSocket tokens from the ``token`` query
    parameter (browsers cannot set headers on a WebSocket), with errors that say what to do.

    A request without a bearer token to a route that accepts other credentials (share
    tokens for viewers) is let through unauthenticated; that route decides.
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get(self.auth_header, "")
        scheme, _, encoded = header.partition(" ")
        if not header and connection.scope["type"] == ScopeType.WEBSOCKET:
            scheme, encoded = "Bearer", connection.query_params.get("token", "")
        if not encoded or scheme.lower() != "bearer":
            raise NotAuthorizedException(
                "Send an access token as 'Authorization: Bearer <token>' "
                "(WebSockets: the 'token' query parameter); get one from POST /api/auth/login",
                headers=_WWW_AUTHENTICATE,
            )
        try:
            return await self.authenticate_token(encoded_token=encoded, connection=connection)
        except NotAuthorizedException:
            raise NotAuthorizedException(
                "The access token is invalid, expired or revoked; refresh it with "
                "POST /api/auth/refresh or log in again",
                headers={**_WWW_AUTHENTICATE, "WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None


class SessionCache(RecentReads[uuid.UUID, Principal]):
    """Live sessions looked up in the last ``ttl_s`` seconds, so a device's burst of requests
    (push, then pull) pays one session lookup instead of one each.

    Whoever revokes a session or changes a role in this process calls ``invalidate``, which
    takes effect on the very next request here; the relay's bus tells the other instances
    at once, and without a bus they notice within ``ttl_s``.
    """

    def __init__(
        self,
        ttl_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        super().__init__(ttl_s, clock=clock, max_entries=max_entries)
        self.listeners: list[Callable[[], None]] = []
        """Told of every ``invalidate`` here (the relay tells the other instances)."""

    def put(self, principal: Principal, generation: int) -> None:
        self.keep(principal.session_id, principal, generation)

    def invalidate(self) -> None:
        """Sessions or roles changed in this process: forget them here and tell listeners."""
        self.forget()
        for listener in self.listeners:
            listener()


def _session_lookup(
    engine: Callable[[], Awaitable[AsyncEngine]], sessions: SessionCache
) -> Callable[[AccessToken, ASGIConnection[Any, Any, Any, Any]], Awaitable[Principal | None]]:
    s, m = tables.sessions, tables.memberships
    query = (
        select(s.c.user_id, s.c.club_id, s.c.device_id, m.c.role)
        .join(m, (m.c.club_id == s.c.club_id) & (m.c.user_id == s.c.user_id))
        .where(s.c.id == bindparam("sid"), s.c.revoked_at.is_(None))
    )

    async def retrieve(
        token: AccessToken, _connection: ASGIConnection[Any, Any, Any, Any]
    ) -> Principal | None:
        try:
            session_id = uuid.UUID(token.sid)
            user_id = uuid.UUID(token.sub)
        except ValueError:
            return None
        cached = sessions.get(session_id)
        if cached is not None:
            return cached if cached.user_id == user_id else None
        generation = sessions.generation
        async with reading(await engine()) as conn:
            row = (await conn.execute(query, {"sid": session_id})).one_or_none()
        if row is None or row.user_id != user_id:
            return None
        principal = Principal(
            user_id=user_id,
            club_id=row.club_id,
            role=row.role,
            device_id=row.device_id,
            session_id=session_id,
        )
        sessions.put(principal, generation)
        return principal

    return retrieve


async def principal_from_token(
    encoded: str, settings: Settings, engine: AsyncEngine, sessions: SessionCache
) -> Principal | None:
    """The member behind an access token checked outside the middleware (the match
    WebSocket, which also accepts share tokens), or None when it is not good."""
    try:
        token = AccessToken.decode(
            encoded,
            secret=settings.secret_key,
            algorithm=ALGORITHM,
            audience=AUDIENCE,
            require_claims=list(_REQUIRED_CLAIMS),
            strict_audience=True,
        )
    except NotAuthorizedException:
        return None

    async def provide() -> AsyncEngine:
        return engine

    retrieve = _session_lookup(provide, sessions)
    return await retrieve(token, None)  # type: ignore[arg-type]


def build_jwt_auth(
    settings: Settings,
    engine: Callable[[], Awaitable[AsyncEngine]],
    sessions: SessionCache | None = None,
) -> JWTAuth[Principal, AccessToken]:
    """The app's authentication: every route needs a member's access token unless its handler
    is marked ``opt={"exclude_from_auth": True}`` (health, docs, login, share links)."""
    return JWTAuth[Principal, AccessToken](
        token_cls=AccessToken,
        # Without a cache to share, every request looks its session up.
        retrieve_user_handler=_session_lookup(engine, sessions or SessionCache(ttl_s=0)),
        token_secret=settings.secret_key,
        algorithm=ALGORITHM,
        accepted_audiences=[AUDIENCE],
        strict_audience=True,
        require_claims=list(_REQUIRED_CLAIMS),
        default_token_expiration=timedelta(seconds=settings.access_token_ttl_s),
        authentication_middleware_class=TokenAuthMiddleware,
        exclude=["^/health$", "^/ready$", "^/schema"],
        description="An access token from POST /api/auth/login, signup or refresh.",
    )


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        # Only reachable from a route that forgot to require authentication.
        raise NotAuthorizedException("authentication required", headers=_WWW_AUTHENTICATE)
    return user


async def require_writer(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: owners and coaches write; a viewer's write is refused with 403. Async, as
    every guard here: Litestar runs a synchronous guard in a worker thread, per request."""
    principal = principal_of(connection)
    if not principal.can_write:
        raise ProblemError(
            403,
            "forbidden",
            "Read-only role",
            f"your role in this club is {principal.role!r}, which can read but not change "
            "the club's data; ask a coach or the owner",
        )


async def require_owner(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    principal = principal_of(connection)
    if principal.role != "owner":
        raise ProblemError(403, "forbidden", "Owner only", "only the club's owner can do this")


def utc_now() -> datetime:
    return datetime.now(UTC)


async def revoke_sessions(
    conn: AsyncConnection, which: ColumnElement[bool], now: datetime, reason: str
) -> None:
    """End sessions: their access tokens fail from the next request, their refreshes too."""
    s = tables.sessions
    await conn.execute(
        update(s)
        .where(which, s.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
