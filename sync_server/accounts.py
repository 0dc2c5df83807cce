"""Accounts and sessions: signup, login, rotating refresh tokens, logout, who am I.

A session is one login of one user on one device; its refresh tokens form a family. Each
refresh token works once: refreshing answers a new pair and retires the old token, and a
retired token presented again means a copy leaked, so the whole family is revoked.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol.accounts import (
    ClubOut,
    DeviceOut,
    LoginRequest,
    MeResponse,
    SignupRequest,
    TeamOut,
    TokenPair,
    UserOut,
)
from protocol.ingest import ServerWrite
from sync_server import tables
from sync_server.auth import (
    Principal,
    SessionCache,
    issue_access_token,
    revoke_sessions,
    token_digest,
)
from sync_server.clubs import redeem_invite
from sync_server.db import reading
from sync_server.passwords import hash_password, verify_password
from sync_server.problems import ProblemError
from sync_server.projection import as_utc
from sync_server.settings import Settings
from sync_server.store import SERVER_DEVICE, ChangeStore

__all__ = ["Accounts"]


def _bad_credentials() -> ProblemError:
    # One answer for an unknown email and a wrong password: it must not tell them apart.
    return ProblemError(
        401,
        "invalid-credentials",
        "Invalid credentials",
        "The email or password is incorrect.",
        headers={"WWW-Authenticate": 'Bearer realm="touchline"'},
    )


def _refused(code: str, title: str, detail: str) -> ProblemError:
    return ProblemError(
        401, code, title, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


@dataclass(frozen=True, slots=True)
class Accounts:
    engine: AsyncEngine
    store: ChangeStore
    settings: Settings
    sessions: SessionCache = field(default_factory=lambda: SessionCache(ttl_s=0))
    """Cleared when a session ends here, so no request is let through on a cached one."""

    # -- signup and login -----------------------------------------------------------------

    async def signup(self, request: SignupRequest, now: datetime) -> TokenPair:
        if not self.settings.allow_signup:
            raise ProblemError(
                403,
                "signup-disabled",
                "Signup is disabled",
                "this server does not accept new accounts; ask your club for an invite",
            )
        if (request.team_name is None) == (request.invite_code is None):
            raise ProblemError(
                422,
                "validation-failed",
                "Request failed validation",
                "send exactly one of team_name (start a new club) or invite_code (join one)",
                errors=[
                    {
                        "field": "$.team_name",
                        "message": "exactly one of team_name and invite_code is required",
                        "source": "body",
                    }
                ],
            )
        device_id = _device_id(request.device_id)
        email = request.email.strip().lower()
        password_hash = await hash_password(request.password)
        user_id = uuid.uuid4()
        try:
            async with self.store.transaction() as conn:
                await conn.execute(
                    insert(tables.users).values(
                        id=user_id, email=email, password_hash=password_hash, created_at=now
                    )
                )
                if request.invite_code is not None:
                    club_id, role = await redeem_invite(conn, request.invite_code, user_id, now)
                else:
                    club_id, role = uuid.uuid4(), "owner"
                    await self._found_club(conn, club_id, request.team_name or "", now)
                await conn.execute(
                    insert(tables.memberships).values(
                        club_id=club_id, user_id=user_id, role=role, created_at=now
                    )
                )
                return await self._open_session(conn, user_id, club_id, device_id, now)
        except IntegrityError:
            # Two signups for one address raced, or the address is taken.
            raise ProblemError(
                409,
                "email-taken",
                "Email already registered",
                "an account with this email exists; log in instead",
            ) from None

    async def _found_club(
        self, conn: AsyncConnection, club_id: uuid.UUID, team_name: str, now: datetime
    ) -> None:
        team_id = uuid.uuid4()
        await conn.execute(
            insert(tables.clubs).values(
                id=club_id, name=team_name, log_seq=0, created_at=now, team_id=team_id
            )
        )
        # The team is an ordinary synced record, so the coach's devices pull it like any other.
        team = ServerWrite("teams", team_id, {"name": team_name, "is_opponent": False})
        await self.store.record(conn, club_id, [team])

    async def login(self, request: LoginRequest, now: datetime) -> TokenPair:
        email = request.email.strip().lower()
        users = tables.users
        async with reading(self.engine) as conn:
            user = (
                await conn.execute(
                    select(users.c.id, users.c.password_hash).where(users.c.email == email)
                )
            ).one_or_none()
        if not await verify_password(request.password, user.password_hash if user else None):
            raise _bad_credentials()
        assert user is not None
        device_id = _device_id(request.device_id)
        async with self.engine.begin() as conn:
            club_id = await self._club_of(conn, user.id)
            return await self._open_session(conn, user.id, club_id, device_id, now)

    async def _club_of(self, conn: AsyncConnection, user_id: uuid.UUID) -> uuid.UUID:
        m = tables.memberships
        club_id: uuid.UUID | None = (
            await conn.execute(select(m.c.club_id).where(m.c.user_id == user_id))
        ).scalar_one_or_none()
        if club_id is None:
            raise ProblemError(
                403,
                "not-a-member",
                "Not a member of any club",
                "this account was removed from its club; ask the club for a new invite",
            )
        return club_id

    # -- tokens ----------------------------------------------------------------------------

    async def _open_session(
        self,
        conn: AsyncConnection,
        user_id: uuid.UUID,
        club_id: uuid.UUID,
        device_id: str,
        now: datetime,
    ) -> TokenPair:
        session_id = uuid.uuid4()
        await conn.execute(
            insert(tables.sessions).values(
                id=session_id, user_id=user_id, club_id=club_id, device_id=device_id, created_at=now
            )
        )
        return await self._token_pair(conn, session_id, user_id, club_id, device_id, now)

    async def _token_pair(
        self,
        conn: AsyncConnection,
        session_id: uuid.UUID,
        user_id: uuid.UUID,
        club_id: uuid.UUID,
        device_id: str,
        now: datetime,
    ) -> TokenPair:
        refresh_token = secrets.token_urlsafe(32)
        await conn.execute(
            insert(tables.refresh_tokens).values(
                token_hash=token_digest(refresh_token),
                session_id=session_id,
                issued_at=now,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_s),
            )
        )
        identity = await _identity(conn, user_id)
        principal = Principal(
            user_id=user_id,
            club_id=club_id,
            role=identity.role,
            device_id=device_id,
            session_id=session_id,
        )
        return TokenPair(
            access_token=issue_access_token(self.settings, principal, now),
            refresh_token=refresh_token,
            token_type="bearer",
            expires_in=self.settings.access_token_ttl_s,
            user=identity.user,
            team=identity.team,
            club=identity.club,
            role=identity.role,
            device_id=device_id,
        )

    async def refresh(self, refresh_token: str, now: datetime) -> TokenPair:
        rt, s = tables.refresh_tokens, tables.sessions
        digest = token_digest(refresh_token)
        reused = False
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(rt.c.used_at, rt.c.expires_at, s.c.id, s.c.user_id, s.c.club_id)
                    .add_columns(s.c.device_id, s.c.revoked_at)
                    .join(s, s.c.id == rt.c.session_id)
                    .where(rt.c.token_hash == digest)
                )
            ).one_or_none()
            if row is None or row.revoked_at is not None:
                raise _refused(
                    "invalid-refresh-token",
                    "Invalid refresh token",
                    "this refresh token is unknown or its session has ended; log in again",
                )
            if as_utc(row.expires_at) <= now:
                raise _refused("invalid-refresh-token", "Expired refresh token", "log in again")
            # Conditional, so two refreshes racing with one token cannot both succeed.
            retired = await conn.execute(
                update(rt)
                .where(rt.c.token_hash == digest, rt.c.used_at.is_(None))
                .values(used_at=now)
            )
            if row.used_at is not None or retired.rowcount != 1:
                reused = True
                await revoke_sessions(conn, s.c.id == row.id, now, "refresh-token-reused")
            else:
                club_id = await self._club_of(conn, row.user_id)
                return await self._token_pair(
                    conn, row.id, row.user_id, club_id, row.device_id, now
                )
        assert reused  # the revocation above is committed before we refuse
        self.sessions.invalidate()
        raise _refused(
            "refresh-token-reused",
            "Refresh token reused",
            "this refresh token was already used, so a copy of it may be in other hands; "
            "every token of this login has been revoked. Log in again.",
        )

    async def logout(self, principal: Principal, now: datetime) -> None:
        s = tables.sessions
        async with self.engine.begin() as conn:
            await revoke_sessions(
                conn,
                and_(s.c.user_id == principal.user_id, s.c.device_id == principal.device_id),
                now,
                "logout",
            )
        self.sessions.invalidate()

    async def me(self, principal: Principal) -> MeResponse:
        d = tables.devices
        async with reading(self.engine) as conn:
            identity = await _identity(conn, principal.user_id)
            last_seq = (
                await conn.execute(
                    select(d.c.last_seq).where(
                        d.c.club_id == principal.club_id, d.c.id == principal.device_id
                    )
                )
            ).scalar_one_or_none()
        return MeResponse(
            user=identity.user,
            club=identity.club,
            team=identity.team,
            teams=[identity.team] if identity.team is not None else [],
            role=principal.role,
            device=DeviceOut(id=principal.device_id, last_seq=int(last_seq or 0)),
        )


@dataclass(frozen=True, slots=True)
class _Identity:
    user: UserOut
    club: ClubOut
    team: TeamOut | None
    role: Any


async def _identity(conn: AsyncConnection, user_id: uuid.UUID) -> _Identity:
    u, m, c, t = tables.users, tables.memberships, tables.clubs, tables.teams
    row = (
        await conn.execute(
            select(u.c.email, m.c.role, c.c.id.label("club_id"), c.c.name.label("club_name"))
            .add_columns(c.c.team_id, t.c.name.label("team_name"))
            .join(m, m.c.user_id == u.c.id)
            .join(c, c.c.id == m.c.club_id)
            .outerjoin(t, and_(t.c.club_id == c.c.id, t.c.id == c.c.team_id))
            .where(u.c.id == user_id)
        )
    ).one()
    return _Identity(
        user=UserOut(id=user_id, email=row.email),
        club=ClubOut(id=row.club_id, name=row.club_name),
        team=TeamOut(id=row.team_id, name=row.team_name) if row.team_id is not None else None,
        role=row.role,
    )


def _device_id(requested: str | None) -> str:
    if requested == SERVER_DEVICE:
        raise ProblemError(
            422,
            "validation-failed",
            "Request failed validation",
            f"device id {SERVER_DEVICE!r} is reserved for changes the server records",
            errors=[{"field": "$.device_id", "message": "reserved device id", "source": "body"}],
        )
    return requested or str(uuid.uuid4())
