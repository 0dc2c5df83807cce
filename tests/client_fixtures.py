"""Helpers shared by the Python client's tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from protocol.accounts import TokenPair
from protocol.wire import (
    ConflictRecord,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)
from tests.auth_fixtures import PASSWORD, sign_up
from touchline_client import Credentials, HttpTransport, SyncTransport, Tokens


class ForwardingTransport:
    """Passes every call to the real transport; subclasses override what they disturb."""

    def __init__(self, inner: SyncTransport) -> None:
        self.inner = inner

    async def push(self, request: PushRequest) -> PushResponse:
        return await self.inner.push(request)

    async def pull(self, request: PullRequest) -> PullResponse:
        return await self.inner.pull(request)

    async def conflicts(
        self, match_id: uuid.UUID | None = None, since: int = 0
    ) -> list[ConflictRecord]:
        return await self.inner.conflicts(match_id, since)

    async def reinstate(self, conflict_id: uuid.UUID) -> ReinstateResponse:
        return await self.inner.reinstate(conflict_id)


def tokens_of(answer: dict[str, Any]) -> Tokens:
    """The client's view of a signup or login answer decoded as JSON."""
    return Tokens.from_answer(msgspec.convert(answer, TokenPair))


@dataclass
class AccountClub:
    """A club whose owner signed up over HTTP; each device logs in with the client's own
    :class:`Credentials`, once per device (the owner's signup device reuses its tokens)."""

    http: AsyncTestClient[Litestar]
    owner: dict[str, Any]
    logins: dict[str, Credentials] = field(default_factory=dict)

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self.owner["club"]["id"])

    @property
    def email(self) -> str:
        return str(self.owner["email"])

    def credentials(self, device_id: str) -> Credentials:
        if device_id not in self.logins:
            signed_up = device_id == self.owner["device_id"]
            self.logins[device_id] = Credentials(
                self.email,
                PASSWORD,
                device_id,
                tokens=tokens_of(self.owner) if signed_up else None,
            )
        return self.logins[device_id]

    def transport(self, device_id: str) -> HttpTransport:
        """A transport for ``device_id``; it logs in at its first request."""
        return HttpTransport(self.http, self.credentials(device_id))


async def sign_up_club(http: AsyncTestClient[Litestar], device_id: str = "phone-a") -> AccountClub:
    """A new club; note that its log already holds one change, the signup's team."""
    return AccountClub(http, await sign_up(http, device_id=device_id))
