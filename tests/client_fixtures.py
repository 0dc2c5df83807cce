"""Helpers shared by the Python client's tests."""

from __future__ import annotations

import uuid

from protocol.wire import (
    ConflictRecord,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)
from touchline_client import SyncTransport


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
