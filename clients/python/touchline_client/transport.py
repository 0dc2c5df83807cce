"""The seam between a device and the sync server: four calls, and their HTTP implementation.

A :class:`SyncDevice` only ever talks to a :class:`SyncTransport`, so the sync logic runs the
same over HTTP, in-process against the ASGI app (tests), or through a wrapper that injects
faults. Failures come in two kinds, because a device must react to them differently:

- :class:`SyncRejected`: the server understood the request and refused it (4xx with an RFC 9457
  problem body). Retrying the same request gets the same answer; the device has to act.
- :class:`SyncUnavailable`: no usable answer (network error, timeout, 5xx, 429, unreadable
  body). The request may or may not have been applied; every sync call is idempotent, so the
  device retries it later.

Every request carries ``Authorization: Bearer <access token>``; the token names the club and
the device, so a transport serves one device of one club. It comes from an
:class:`Authenticator`, usually :class:`~touchline_client.session.Credentials`, which logs in
and renews the token when the server refuses it (401).
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
    "Authenticator",
    "HttpTransport",
    "SyncError",
    "SyncRejected",
    "SyncTransport",
    "SyncUnavailable",
]

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
        self,
        message: str,
        *,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})
        self.retry_after_s = retry_after_s
        """The server's ``Retry-After`` (429, 503), in seconds: wait at least this long."""


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


class Authenticator(Protocol):
    """Where :class:`HttpTransport` gets its bearer token, and who renews a refused one.

    ``client`` and ``base_url`` are the transport's, so an implementation can talk to the
    server's ``/api/auth`` endpoints over the same connection pool.
    """

    async def access_token(self, client: httpx.AsyncClient, base_url: str) -> str:
        """The access token to send now (logging in first when there is none yet)."""
        ...

    async def renew(self, client: httpx.AsyncClient, base_url: str, refused: str) -> bool:
        """The server answered 401 to ``refused``: make a new token available.

        Returns whether retrying the request with :meth:`access_token` can help. Raises the
        transport's errors when renewing itself fails (a refused login is
        :class:`SyncRejected`, an unreachable server :class:`SyncUnavailable`).
        """
        ...


class _FixedToken:
    """A bearer token obtained elsewhere: sent as it is, never renewed."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "_FixedToken(<hidden>)"

    async def access_token(self, client: httpx.AsyncClient, base_url: str) -> str:
        return self._token

    async def renew(self, client: httpx.AsyncClient, base_url: str, refused: str) -> bool:
        return False


class HttpTransport:
    """:class:`SyncTransport` over an ``httpx.AsyncClient`` (or any subclass of it, such as a
    test client bound to the ASGI app). The caller owns the client and its lifetime.

    ``auth`` is an :class:`Authenticator` (typically
    :class:`~touchline_client.session.Credentials`, which logs in, and on a 401 refreshes
    once and retries the request) or a bare access token string, sent as it is. The token
    belongs to one device: push and pull only as that device.
    """

    def __init__(
        self, client: httpx.AsyncClient, auth: Authenticator | str, base_url: str = ""
    ) -> None:
        _check_auth(auth)
        self._client = client
        root = base_url.rstrip("/")
        self._base = root + "/api/sync"
        self._root = root
        self.auth: Authenticator = _FixedToken(auth) if isinstance(auth, str) else auth

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
        return decode(answer, ConflictList).conflicts

    async def reinstate(self, conflict_id: uuid.UUID) -> ReinstateResponse:
        answer = await self._send("POST", f"/conflicts/{conflict_id}/reinstate")
        return decode(answer, ReinstateResponse)

    async def _post(self, path: str, body: msgspec.Struct, answer: type[_Answer]) -> _Answer:
        response = await self._send(
            "POST",
            path,
            content=msgspec.json.encode(body),
            headers={"content-type": "application/json"},
        )
        return decode(response, answer)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        token = await self.auth.access_token(self._client, self._root)
        response = await self._request(method, path, token, content, headers, params)
        if response.status_code == 401 and await self.auth.renew(self._client, self._root, token):
            # Once only: a token refused straight after renewal will not do better next time.
            token = await self.auth.access_token(self._client, self._root)
            response = await self._request(method, path, token, content, headers, params)
        return checked(response, f"{method} {path}")

    async def _request(
        self,
        method: str,
        path: str,
        token: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str | int] | None,
    ) -> httpx.Response:
        return await request(
            self._client,
            method,
            self._base + path,
            content=content,
            headers={**(headers or {}), "Authorization": f"Bearer {token}"},
            params=params,
        )


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str | int] | None = None,
) -> httpx.Response:
    """One HTTP exchange; a failure to get any answer is :class:`SyncUnavailable`."""
    try:
        return await client.request(method, url, content=content, headers=headers, params=params)
    except httpx.TransportError as exc:
        # The URL, never the headers: they carry the access token.
        raise SyncUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc


def checked(response: httpx.Response, what: str) -> httpx.Response:
    """``response`` if it succeeded; otherwise the matching :class:`SyncError`."""
    status = int(response.status_code)
    if status < 400:
        return response
    problem = _problem(response)
    if status >= 500 or status in _RETRYABLE_CLIENT_STATUSES:
        raise SyncUnavailable(
            f"{what}: server answered {status}",
            status=status,
            problem=problem,
            retry_after_s=_retry_after(response.headers.get("retry-after")),
        )
    raise SyncRejected(status, problem)


def _retry_after(header: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the server sends whole seconds; an HTTP date,
    which it never sends, is ignored)."""
    if header is None:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def _check_auth(auth: object) -> None:
    if isinstance(auth, uuid.UUID):
        raise TypeError(
            "HttpTransport takes credentials or an access token, not a club id: the server "
            "reads the club from the access token (see touchline_client.Credentials)"
        )


def decode(response: httpx.Response, answer: type[_Answer]) -> _Answer:
    """The body of a successful answer as ``answer``; unreadable is :class:`SyncUnavailable`."""
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
