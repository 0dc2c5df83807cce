"""Share links: opaque, revocable, read-only access to one match for family.

A token is 256 bits of HMAC-SHA-256 over the link's id and a random salt, under a key
derived from SECRET_KEY. It carries no ids or personal data. The table keeps the salt and the
token's SHA-256 (for lookup), never the token, so a copy of the database alone opens nothing;
the server can still show a coach the active link again. Rotating SECRET_KEY ends every link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol.accounts import ShareLink
from sync_server import tables
from sync_server.auth import Principal, token_digest
from sync_server.db import reading
from sync_server.problems import ProblemError
from sync_server.projection import as_utc
from sync_server.recent_reads import RecentReads
from sync_server.settings import Settings

__all__ = ["ResolvedLinks", "ShareLinks", "SharedMatch"]

RESOLVED_TTL_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class SharedMatch:
    club_id: uuid.UUID
    match_id: uuid.UUID
    link_id: uuid.UUID
    expires_at: datetime


class ResolvedLinks(RecentReads[str, SharedMatch]):
    """Share tokens (by digest) resolved in the last ``ttl_s`` seconds: a match's viewers
    open their sockets together (kick-off, a reconnect after a deploy), and each would
    otherwise read the same link from the database.

    Expiry is checked on every use. The relay calls ``forget`` whenever it ends a link's
    sockets, here or on the bus's word from another instance; without a bus another instance
    notices within ``ttl_s``.
    """

    def __init__(
        self,
        ttl_s: float = RESOLVED_TTL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        super().__init__(ttl_s, clock=clock, max_entries=max_entries)


def _match_not_found(match_id: uuid.UUID) -> ProblemError:
    return ProblemError(404, "not-found", "Match not found", f"no match {match_id} here")


@dataclass(frozen=True, slots=True)
class ShareLinks:
    engine: AsyncEngine
    settings: Settings
    resolved: ResolvedLinks | None = None
    """Recently resolved tokens (the relay's), or None to read each one."""

    def _token(self, link_id: uuid.UUID, salt: str) -> str:
        key = hmac.new(self.settings.secret_key.encode(), b"touchline share links", "sha256")
        mac = hmac.new(key.digest(), link_id.bytes + bytes.fromhex(salt), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def _link(self, link_id: uuid.UUID, salt: str, expires_at: datetime) -> ShareLink:
        token = self._token(link_id, salt)
        return ShareLink(
            id=link_id,
            token=token,
            url=f"{self.settings.base_url}/watch/{token}",
            expires_at=as_utc(expires_at).isoformat(),
        )

    async def current(
        self, principal: Principal, match_id: uuid.UUID, now: datetime, *, fresh: bool
    ) -> ShareLink:
        """The match's newest active link; a new one when there is none or ``fresh``."""
        sl = tables.share_links
        async with self.engine.begin() as conn:
            kickoff = await _kickoff(conn, principal.club_id, match_id)
            if not fresh:
                rows = await conn.execute(
                    select(sl.c.id, sl.c.salt, sl.c.expires_at)
                    .where(
                        sl.c.club_id == principal.club_id,
                        sl.c.match_id == match_id,
                        sl.c.revoked_at.is_(None),
                    )
                    .order_by(sl.c.created_at.desc())
                )
                for row in rows:
                    if as_utc(row.expires_at) > now:
                        return self._link(row.id, row.salt, row.expires_at)
            link_id, salt = uuid.uuid4(), secrets.token_hex(16)
            # A few days after the match; a link minted for an old match still gets the TTL.
            start = max(as_utc(kickoff), now) if kickoff is not None else now
            expires_at = start + timedelta(hours=self.settings.share_link_ttl_hours)
            await conn.execute(
                insert(sl).values(
                    id=link_id,
                    club_id=principal.club_id,
                    match_id=match_id,
                    salt=salt,
                    token_hash=token_digest(self._token(link_id, salt)),
                    created_by=principal.user_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            return self._link(link_id, salt, expires_at)

    async def revoke(
        self, principal: Principal, match_id: uuid.UUID, link_id: uuid.UUID, now: datetime
    ) -> None:
        sl = tables.share_links
        async with self.engine.begin() as conn:
            revoked = await conn.execute(
                update(sl)
                .where(
                    sl.c.id == link_id,
                    sl.c.club_id == principal.club_id,
                    sl.c.match_id == match_id,
                )
                .values(revoked_at=now)
            )
            if revoked.rowcount != 1:
                raise ProblemError(
                    404, "not-found", "Share link not found", f"no share link {link_id} here"
                )

    async def resolve(self, token: str, now: datetime) -> SharedMatch:
        """The match a share token opens; 404 for an unknown token, 410 for a dead one."""
        digest = token_digest(token)
        cached = self.resolved.get(digest) if self.resolved is not None else None
        if cached is not None:
            if cached.expires_at <= now:
                raise _link_ended()
            return cached
        generation = self.resolved.generation if self.resolved is not None else 0
        sl = tables.share_links
        async with reading(self.engine) as conn:
            row = (
                await conn.execute(
                    select(sl.c.id, sl.c.club_id, sl.c.match_id, sl.c.expires_at)
                    .add_columns(sl.c.revoked_at)
                    .where(sl.c.token_hash == digest)
                )
            ).one_or_none()
        if row is None:
            raise ProblemError(
                404, "share-link-unknown", "Unknown share link", "this link does not exist"
            )
        if row.revoked_at is not None or as_utc(row.expires_at) <= now:
            raise _link_ended()
        shared = SharedMatch(row.club_id, row.match_id, row.id, as_utc(row.expires_at))
        if self.resolved is not None:
            self.resolved.keep(digest, shared, generation)
        return shared


def _link_ended() -> ProblemError:
    return ProblemError(
        410,
        "share-link-expired",
        "This link has ended",
        "the coach revoked this link or it has expired; ask them for a new one",
    )


async def _kickoff(
    conn: AsyncConnection, club_id: uuid.UUID, match_id: uuid.UUID
) -> datetime | None:
    m = tables.matches
    row = (
        await conn.execute(select(m.c.kickoff_ts).where(m.c.club_id == club_id, m.c.id == match_id))
    ).one_or_none()
    if row is None:
        raise _match_not_found(match_id)
    kickoff: datetime | None = row.kickoff_ts
    return None if kickoff is None else as_utc(kickoff)
