"""The seam between a device and the sync server: four calls, and their HTTP implementation.

A :class:`SyncDevice` only ever talks to a :class:`SyncTransport`, so the sync logic runs the
same over HTTP, in-process against the ASGI app (tests), or through a wrapper that injects
faults. Failures come in two kinds, because a device must react to them differently:

- :class:`SyncRejected`: the server understood the request and refused it (4xx with an RFC 9457
  problem body). Retrying the same request gets the same answer; the device has to act.
- :class:`SyncUnavailable`: no usable answer (network error, timeout, 5xx, 429, unreadable
  body). The request may or may not have been applied; every sync call is idempotent, so the
  device retries it later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final, Protocol, TypeVar

import httpx
import msgspec

from protocol.wire import (
    ConflictList,
    ConflictRecord,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)

__all__ = [
    "CLUB_HEADER",
    "HttpTransport",
    "SyncError",
    "SyncRejected",
    "SyncTransport",
    "SyncUnavailable",
]

CLUB_HEADER: Final = "Touchline-Club"
PROBLEM_TYPE_PREFIX: Final = "/problems/"
# Statuses that say "not now" rather than "not this request": retry them like a dropped line.
_RETRYABLE_CLIENT_STATUSES: Final = frozenset({408, 425, 429})

_Answer = TypeVar("_Answer")


class SyncError(Exception):
    """Base class of the errors a sync call raises."""


class SyncRejected(SyncError):
    """The server refused the request (a 4xx problem+json answer); retrying will not help.

    ``problem`` is the decoded problem body; ``code`` is its stable machine-readable code
    (``sequence-gap``, ``invalid-change-set``, ...).
    """

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem)
        super().__init__(f"{status} {self.code}: {self.problem.get('detail', '')}")

    @property
    def code(self) -> str:
        kind = self.problem.get("type")
        if isinstance(kind, str) and kind:
            return kind.removeprefix(PROBLEM_TYPE_PREFIX)
        return str(self.status)

    @property
    def expected_seq(self) -> int | None:
        """For ``sequence-gap``: the sequence the server expects next from this device."""
        return _int_member(self.problem, "expected_seq")

    @property
    def max_changes(self) -> int | None:
        """For ``change-set-too-large``: the most changes the server takes in one push."""
        return _int_member(self.problem, "max_changes")

    @property
    def errors(self) -> list[dict[str, Any]]:
        """For ``invalid-change-set``: one ``{field, message}`` per problem found."""
        found = self.problem.get("errors")
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


class SyncUnavailable(SyncError):
    """No usable answer from the server; the request may or may not have been applied."""

    def __init__(
        self, message: str, *, status: int | None = None, problem: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})


class SyncTransport(Protocol):
    """What a device needs from the server. Implementations raise the errors above."""

    async def push(self, request: PushRequest) -> PushResponse:
        """Store a change set (idempotent: re-sent changes are acknowledged, not re-applied)."""
        ...

    async def pull(self, request: PullRequest) -> PullResponse:
        """One page of other devices' changes after ``request.cursor``."""
        ...

    async def conflicts(
        self, match_id: uuid.UUID | None = None, since: int = 0
    ) -> list[ConflictRecord]:
        """The club's conflict ledger (conflicts revealed after server sequence ``since``)."""
        ...

    async def reinstate(self, conflict_id: uuid.UUID) -> ReinstateResponse:
        """Write a conflict's losing value back, causally after the winner."""
        ...


class HttpTransport:
    """:class:`SyncTransport` over an ``httpx.AsyncClient`` (or any subclass of it, such as a
    test client bound to the ASGI app). The caller owns the client and its lifetime."""

    def __init__(self, client: httpx.AsyncClient, club_id: uuid.UUID, base_url: str = "") -> None:
        self._client = client
        self._base = base_url.rstrip("/") + "/api/sync"
        self._headers = {CLUB_HEADER: str(club_id)}
        self.club_id = club_id

    async def push(self, request: PushRequest) -> PushResponse:
        return await self._post("/push", request, PushResponse)

    async def pull(self, request: PullRequest) -> PullResponse:
        return await self._post("/pull", request, PullResponse)

    async def conflicts(
        self, match_id: uuid.UUID | None = None, since: int = 0
    ) -> list[ConflictRecord]:
        params: dict[str, str | int] = {"since": since}
        if match_id is not None:
            params["match_id"] = str(match_id)
        answer = await self._send("GET", "/conflicts", params=params)
        return _decode(answer, ConflictList).conflicts

    async def reinstate(self, conflict_id: uuid.UUID) -> ReinstateResponse:
        answer = await self._send("POST", f"/conflicts/{conflict_id}/reinstate")
        return _decode(answer, ReinstateResponse)

    async def _post(self, path: str, body: msgspec.Struct, answer: type[_Answer]) -> _Answer:
        response = await self._send(
            "POST",
            path,
            content=msgspec.json.encode(body),
            headers={"content-type": "application/json"},
        )
        return _decode(response, answer)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._client.request(
                method,
                self._base + path,
                content=content,
                headers={**self._headers, **(headers or {})},
                params=params,
            )
        except httpx.TransportError as exc:
            raise SyncUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        status = int(response.status_code)
        if status < 400:
            return response
        problem = _problem(response)
        if status >= 500 or status in _RETRYABLE_CLIENT_STATUSES:
            raise SyncUnavailable(
                f"{method} {path}: server answered {status}", status=status, problem=problem
            )
        raise SyncRejected(status, problem)


def _decode(response: httpx.Response, answer: type[_Answer]) -> _Answer:
    try:
        return msgspec.json.decode(response.content, type=answer)
    except msgspec.DecodeError as exc:
        # A truncated or garbled 2xx body: the request may have been applied, and resending
        # it is safe, so this is "no usable answer" rather than a refusal.
        raise SyncUnavailable(
            f"unreadable {response.status_code} answer: {exc}", status=response.status_code
        ) from exc


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        decoded = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict):
        return decoded
    return {"status": response.status_code, "detail": response.text[:500]}


def _int_member(problem: Mapping[str, Any], name: str) -> int | None:
    value = problem.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
