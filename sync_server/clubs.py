"""Club membership: invites, the member list, role changes and removals.

Rules: owners and coaches invite (as coach or viewer) and list members; only the owner
changes roles; owners and coaches remove members, but nobody removes the owner. Removing a
member ends their sessions at once, so their devices' tokens stop working on the next request.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Select, and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol.accounts import Invite, InvitedRole, Member, MemberList, Role
from sync_server import tables
from sync_server.auth import Principal, SessionCache, revoke_sessions, token_digest
from sync_server.db import reading
from sync_server.problems import ProblemError
from sync_server.projection import as_utc
from sync_server.settings import Settings

__all__ = ["Clubs", "normalise_invite_code", "redeem_invite"]

# Crockford's base32: no I, L, O or U, so a code read aloud or typed on a phone survives.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_CHARS: Final = 16  # 80 random bits
_LOOKALIKES: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_invite_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_CHARS))
    return "-".join(raw[i : i + 4] for i in range(0, _CODE_CHARS, 4))


def normalise_invite_code(code: str) -> str:
    return code.upper().replace("-", "").replace(" ", "").translate(_LOOKALIKES)


def _code_digest(code: str) -> str:
    return token_digest(normalise_invite_code(code))


def _iso(moment: datetime) -> str:
    return as_utc(moment).isoformat()


async def redeem_invite(
    conn: AsyncConnection, code: str, user_id: uuid.UUID, now: datetime
) -> tuple[uuid.UUID, Role]:
    """Use an invite once, inside the signup's transaction: the club and role it grants."""
    i = tables.invites
    row = (
        await conn.execute(
            select(i.c.id, i.c.club_id, i.c.role, i.c.expires_at, i.c.used_at).where(
                i.c.code_hash == _code_digest(code)
            )
        )
    ).one_or_none()
    if row is None or row.used_at is not None or as_utc(row.expires_at) <= now:
        raise _invalid_invite()
    # Conditional on still being unused: of two signups racing for one code, one wins.
    claimed = await conn.execute(
        update(i)
        .where(i.c.id == row.id, i.c.used_at.is_(None))
        .values(used_at=now, used_by=user_id)
    )
    if claimed.rowcount != 1:
        raise _invalid_invite()
    return row.club_id, row.role


def _invalid_invite() -> ProblemError:
    return ProblemError(
        400,
        "invalid-invite",
        "Invalid invite code",
        "this invite code is unknown, already used or expired; ask for a new one",
    )


def _club_not_found(club_id: uuid.UUID) -> ProblemError:
    # Another club's id answers exactly as a club that does not exist.
    return ProblemError(404, "not-found", "Club not found", f"no club {club_id} here")


@dataclass(frozen=True, slots=True)
class Clubs:
    engine: AsyncEngine
    settings: Settings
    sessions: SessionCache = field(default_factory=lambda: SessionCache(ttl_s=0))
    """Cleared after a removal or a role change, which the next request must see."""

    async def create_invite(
        self, principal: Principal, club_id: uuid.UUID, role: InvitedRole, now: datetime
    ) -> Invite:
        _own_club(principal, club_id)
        code = new_invite_code()
        invite_id = uuid.uuid4()
        expires_at = now + timedelta(hours=self.settings.invite_ttl_hours)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(tables.invites).values(
                    id=invite_id,
                    club_id=club_id,
                    code_hash=_code_digest(code),
                    role=role,
                    created_by=principal.user_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return Invite(id=invite_id, code=code, role=role, expires_at=_iso(expires_at))

    async def members(self, principal: Principal, club_id: uuid.UUID) -> MemberList:
        _own_club(principal, club_id)
        u, m = tables.users, tables.memberships
        async with reading(self.engine) as conn:
            rows = await conn.execute(_members_of(club_id).order_by(m.c.created_at, u.c.email))
            return MemberList(members=[_member(row) for row in rows])

    async def change_role(
        self,
        principal: Principal,
        club_id: uuid.UUID,
        user_id: uuid.UUID,
        role: InvitedRole,
    ) -> Member:
        _own_club(principal, club_id)
        if principal.role != "owner":
            raise ProblemError(403, "forbidden", "Owner only", "only the owner changes roles")
        m = tables.memberships
        async with self.engine.begin() as conn:
            current = await _role_of(conn, club_id, user_id)
            if current == "owner":
                raise ProblemError(
                    409,
                    "owner-required",
                    "The club needs its owner",
                    "the owner's role cannot be changed; a club always has its owner",
                )
            await conn.execute(
                update(m).where(m.c.club_id == club_id, m.c.user_id == user_id).values(role=role)
            )
            row = (await conn.execute(_members_of(club_id).where(m.c.user_id == user_id))).one()
        self.sessions.invalidate()
        return _member(row)

    async def remove_member(
        self, principal: Principal, club_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> None:
        _own_club(principal, club_id)
        m, s = tables.memberships, tables.sessions
        async with self.engine.begin() as conn:
            current = await _role_of(conn, club_id, user_id)
            if current == "owner":
                raise ProblemError(
                    403,
                    "forbidden",
                    "The owner cannot be removed",
                    "nobody can remove the club's owner",
                )
            await conn.execute(delete(m).where(m.c.club_id == club_id, m.c.user_id == user_id))
            await revoke_sessions(
                conn, and_(s.c.user_id == user_id, s.c.club_id == club_id), now, "removed"
            )
        self.sessions.invalidate()


def _own_club(principal: Principal, club_id: uuid.UUID) -> None:
    if club_id != principal.club_id:
        raise _club_not_found(club_id)


async def _role_of(conn: AsyncConnection, club_id: uuid.UUID, user_id: uuid.UUID) -> Role:
    m = tables.memberships
    role = (
        await conn.execute(select(m.c.role).where(m.c.club_id == club_id, m.c.user_id == user_id))
    ).scalar_one_or_none()
    if role is None:
        raise ProblemError(404, "not-found", "Member not found", f"no member {user_id} here")
    return role  # type: ignore[no-any-return]


def _members_of(club_id: uuid.UUID) -> Select[Any]:
    m, u = tables.memberships, tables.users
    return (
        select(m.c.user_id, u.c.email, m.c.role, m.c.created_at)
        .join(u, u.c.id == m.c.user_id)
        .where(m.c.club_id == club_id)
    )


def _member(row: Any) -> Member:
    # A result row of (user_id, email, role, created_at).
    return Member(
        user_id=row.user_id, email=row.email, role=row.role, joined_at=_iso(row.created_at)
    )
