"""A device's login: email, password and device id, and the token pair they earn.

:class:`Credentials` is the :class:`~touchline_client.transport.Authenticator` a device
normally gives its :class:`~touchline_client.transport.HttpTransport`::

    credentials = Credentials("coach@example.org", password, device_id="coach-phone-1")
    transport = HttpTransport(http, credentials)

It logs in (``POST /api/auth/login``) before the first request. When the server refuses the
access token (401: expired, or the session was revoked), it refreshes the pair once through
``POST /api/auth/refresh``; when the refresh is refused too (the refresh token expired, was
already used, or the login was ended), it logs in afresh. Concurrent requests that meet the
same refused token renew it once between them: refreshing twice with one refresh token
would look like a stolen token to the server, which then revokes the whole login.

Tokens and the password never appear in a ``repr`` or an error message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final

import anyio
import httpx
import msgspec

from protocol.accounts import LoginRequest, RefreshRequest, TokenPair
from touchline_client.transport import SyncRejected, checked, decode, request

__all__ = ["Credentials", "Tokens"]

AUTH_PATH: Final = "/api/auth"


@dataclass(frozen=True, slots=True)
class Tokens:
    """A token pair and what the server said about it (signup, login or refresh)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    """Seconds the access token was valid for when issued."""
    user_id: uuid.UUID
    club_id: uuid.UUID
    team_id: uuid.UUID | None
    role: str
    device_id: str
    """The device the tokens belong to: the server takes pushes and pulls only as it."""

    @classmethod
    def from_answer(cls, answer: TokenPair) -> Tokens:
        return cls(
            access_token=answer.access_token,
            refresh_token=answer.refresh_token,
            expires_in=answer.expires_in,
            user_id=answer.user.id,
            club_id=answer.club.id,
            team_id=answer.team.id if answer.team is not None else None,
            role=answer.role,
            device_id=answer.device_id,
        )


class Credentials:
    """Logs one device of one user in, holds its token pair and renews it when refused.

    ``tokens`` may be a pair obtained elsewhere (from signing up, say); without it the first
    request logs in. A refused login raises :class:`~touchline_client.SyncRejected` (401
    ``invalid-credentials``, 403 ``not-a-member``); a rate-limited one (429) or an
    unreachable server :class:`~touchline_client.SyncUnavailable`, to be retried later.
    """

    def __init__(
        self, email: str, password: str, device_id: str, *, tokens: Tokens | None = None
    ) -> None:
        if tokens is not None and tokens.device_id != device_id:
            raise ValueError(f"the tokens belong to device {tokens.device_id!r}, not {device_id!r}")
        self.email = email
        self.device_id = device_id
        self._password = password
        self._tokens = tokens
        # Serialises logging in and renewing, so one refused token is renewed once.
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        state = "logged in" if self._tokens is not None else "not logged in"
        return f"Credentials(email={self.email!r}, device_id={self.device_id!r}, {state})"

    @property
    def tokens(self) -> Tokens | None:
        """The current pair, or ``None`` before the first login."""
        return self._tokens

    @property
    def club_id(self) -> uuid.UUID | None:
        """The club the tokens act in (known once logged in)."""
        return self._tokens.club_id if self._tokens is not None else None

    async def login(self, client: httpx.AsyncClient, base_url: str = "") -> Tokens:
        """Log in now (``POST /api/auth/login``), replacing any pair held."""
        async with self._lock:
            return await self._login(client, base_url)

    async def refresh(self, client: httpx.AsyncClient, base_url: str = "") -> Tokens:
        """Exchange the refresh token for a new pair; log in instead when the server
        refuses it, or when there is no pair yet."""
        async with self._lock:
            return await self._refresh_or_login(client, base_url)

    # -- Authenticator ----------------------------------------------------------------------

    async def access_token(self, client: httpx.AsyncClient, base_url: str) -> str:
        tokens = self._tokens
        if tokens is None:
            async with self._lock:
                # Another request may have logged in while this one waited for the lock.
                tokens = self._tokens or await self._login(client, base_url)
        return tokens.access_token

    async def renew(self, client: httpx.AsyncClient, base_url: str, refused: str) -> bool:
        async with self._lock:
            if self._tokens is None or self._tokens.access_token == refused:
                await self._refresh_or_login(client, base_url)
            # else: a concurrent request has renewed it already; its new token will do.
        return True

    # -- the exchanges (with the lock held) -------------------------------------------------

    async def _refresh_or_login(self, client: httpx.AsyncClient, base_url: str) -> Tokens:
        if self._tokens is not None:
            body = RefreshRequest(refresh_token=self._tokens.refresh_token)
            try:
                return await self._exchange(client, base_url, "/refresh", body)
            except SyncRejected:
                # Expired, used already or revoked: that pair is dead, so start over.
                self._tokens = None
        return await self._login(client, base_url)

    async def _login(self, client: httpx.AsyncClient, base_url: str) -> Tokens:
        body = LoginRequest(email=self.email, password=self._password, device_id=self.device_id)
        return await self._exchange(client, base_url, "/login", body)

    async def _exchange(
        self, client: httpx.AsyncClient, base_url: str, path: str, body: msgspec.Struct
    ) -> Tokens:
        response = await request(
            client,
            "POST",
            base_url.rstrip("/") + AUTH_PATH + path,
            content=msgspec.json.encode(body),
            headers={"content-type": "application/json"},
        )
        answer = decode(checked(response, f"POST {AUTH_PATH}{path}"), TokenPair)
        tokens = Tokens.from_answer(answer)
        self._tokens = tokens
        return tokens
