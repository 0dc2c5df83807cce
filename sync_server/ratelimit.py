"""Rate limits: every request per token (or client address), logins per address and per account,
and WebSocket frames per connection.

Request and login limits are sliding windows from the `limits` library: in process memory for a
club's single laptop, or in Redis so that every instance of a league deployment shares one count.
The sliding-window counter keeps two counters a key (this window's and the last one's, weighted
by overlap) instead of a timestamp per hit: a moving window's per-key lists grew to tens of
thousands of entries under load, and inserting into and sweeping them cost more CPU than the
requests they counted.
Frames are limited by a token bucket kept on the connection itself, since a connection lives on
exactly one instance.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Collection
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import parse_qs

import msgspec
import redis.asyncio as aioredis
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sync_server.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX, ProblemError

__all__ = [
    "EXEMPT_PATHS",
    "REDIS_KEY_PREFIX",
    "MemoryRateLimiter",
    "MessageRate",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisRateLimiter",
    "check_login_attempt",
    "open_rate_limiter",
]

logger = logging.getLogger(__name__)

REDIS_KEY_PREFIX: Final = "touchline:rl"
# Probes must answer even for a balancer that polls hard from one address.
EXEMPT_PATHS: Final = frozenset({"/health", "/ready"})
WINDOW_S: Final = 60
# A rate limiter in front of every request must fail fast: a hung Redis would otherwise hang
# every request with it.
_REDIS_TIMEOUT_S: Final = 0.5
_OUTAGE_LOG_INTERVAL_S: Final = 60.0
# Between a refused hit and the window lookup the oldest entry may just have expired.
_SHORTEST_WAIT_S: Final = 0.001
# How often the in-memory counters' expired keys are swept out (reads ignore them at once).
SWEEP_INTERVAL_S: Final = 1.0


@runtime_checkable
class RateLimiter(Protocol):
    """Counts hits per key in a sliding window of `period_s` seconds."""

    async def hit(self, key: str, *, limit: int, period_s: int) -> float | None:
        """Count one hit: None if allowed, else the seconds (> 0) until one would be."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks."""
        ...


class _SlidingWindowLimiter:
    """A `RateLimiter` on any `limits` storage that supports sliding-window counters."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)

    async def hit(self, key: str, *, limit: int, period_s: int) -> float | None:
        if limit < 1 or period_s < 1:
            raise ValueError(f"limit and period_s must be positive; got {limit}, {period_s}")
        item = RateLimitItemPerSecond(limit, period_s)
        # Refused hits are not recorded, so a client hammering while blocked waits no longer.
        if await self._strategy.hit(item, key):
            return None
        stats = await self._strategy.get_window_stats(item, key)
        return max(stats.reset_time - time.time(), _SHORTEST_WAIT_S)


class _SweptMemoryStorage(MemoryStorage):
    """`limits`' memory storage, sweeping expired keys at most once a second.

    The library starts a sweep over every key after each hit that finds the last sweep done:
    with thousands of devices and addresses counted, every request paid a scan of all their
    keys. Reads already treat an expired key as absent, so a sweep once a second only delays
    when the memory of an expired key is freed."""

    _next_sweep = -math.inf

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the library's private hook
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


class MemoryRateLimiter(_SlidingWindowLimiter):
    """Process-local limits: right for one instance, wrong behind a load balancer."""

    def __init__(self) -> None:
        self._memory = _SweptMemoryStorage()
        super().__init__(self._memory)

    async def close(self) -> None:
        # The storage sweeps expired entries in a background task; stop it with the app.
        if (sweep := self._memory.timer) is not None and not sweep.done():
            sweep.cancel()
            await asyncio.wait([sweep])
        await self._memory.reset()


class RedisRateLimiter(_SlidingWindowLimiter):
    """Limits shared by every instance through Redis (redis-py's asyncio client).

    While Redis is unreachable each instance falls back to its own memory limits (logged), so an
    outage loosens the limits instead of failing every request.
    """

    def __init__(self, redis_url: str, *, key_prefix: str = REDIS_KEY_PREFIX) -> None:
        self._client = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=_REDIS_TIMEOUT_S,
            socket_connect_timeout=_REDIS_TIMEOUT_S,
            # One immediate retry replaces a pooled connection that died with a Redis restart.
            retry=Retry(NoBackoff(), 1),
        )
        # The storage borrows our pool, so this class owns (and closes) every connection; the
        # URI only selects redis-py, the pool carries the address.
        pool: Any = self._client.connection_pool
        super().__init__(
            RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=key_prefix,
                connection_pool=pool,
            )
        )
        self._fallback = MemoryRateLimiter()
        self._last_outage_log = -math.inf

    async def hit(self, key: str, *, limit: int, period_s: int) -> float | None:
        try:
            return await super().hit(key, limit=limit, period_s=period_s)
        except RedisError as exc:
            now = time.monotonic()
            if now - self._last_outage_log >= _OUTAGE_LOG_INTERVAL_S:
                self._last_outage_log = now
                logger.warning("Redis rate limiting unavailable, limiting per instance: %r", exc)
            return await self._fallback.hit(key, limit=limit, period_s=period_s)

    async def close(self) -> None:
        await self._fallback.close()
        await self._client.aclose()


def open_rate_limiter(redis_url: str | None) -> RateLimiter:
    """The limiter for this deployment: shared through Redis when configured, else in memory."""
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()


def _digest(secret: str) -> str:
    # Raw tokens and addresses of accounts never reach Redis keys or memory dumps.
    return hashlib.sha256(secret.encode()).hexdigest()


def _retry_after(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


class RateLimitMiddleware(ASGIMiddleware):
    """Limits HTTP requests and WebSocket connection attempts per token or client address.

    The key is the bearer token (hashed) when the request carries one, since many phones at a
    ground share one address; otherwise the client address (the proxy's, unless uvicorn runs
    with --proxy-headers). `limiter` is called per request because the limiter is created in
    the app's lifespan, after the middleware.

    An HTTP request over the limit raises a 429 `ProblemError`, so the app's exception
    handlers must sit outside this middleware (true for Litestar's `middleware=[...]`).
    """

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(
        self,
        limiter: Callable[[], RateLimiter],
        *,
        limit_per_minute: int,
        exempt_paths: Collection[str] = EXEMPT_PATHS,
    ) -> None:
        self._limiter = limiter
        self._limit = limit_per_minute
        self._exempt = frozenset(exempt_paths)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["path"] in self._exempt:
            await next_app(scope, receive, send)
            return
        wait_s = None
        for key, limit in _client_keys(scope, self._limit):
            wait_s = await self._limiter().hit(key, limit=limit, period_s=WINDOW_S)
            if wait_s is not None:
                break
        if wait_s is None:
            await next_app(scope, receive, send)
            return
        retry_after = _retry_after(wait_s)
        detail = (
            f"More than {self._limit} requests in {WINDOW_S} s from this client; "
            f"retry after {retry_after} s."
        )
        if scope["type"] == ScopeType.WEBSOCKET:
            await _refuse_websocket(scope, receive, send, detail, retry_after)
            return
        raise ProblemError(
            429,
            "rate-limited",
            "Too many requests",
            detail,
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )


# Requests that carry a token also count against their address, with a limit this many times
# larger: a club's phones may share one address, but a client inventing a new token for each
# request must not get a fresh allowance each time.
ADDRESS_SHARE: Final = 10


def _client_keys(scope: Scope, limit: int) -> list[tuple[str, int]]:
    """The counters a request counts against, each with its limit."""
    key = _client_key(scope)
    client = scope.get("client")
    address = f"req:addr:{client[0] if client else 'unknown'}"
    if key == address:
        return [(address, limit)]
    return [(key, limit), (address, limit * ADDRESS_SHARE)]


def _client_key(scope: Scope) -> str:
    # Mirrors sync_server.auth: the Authorization header wins; a WebSocket may carry its token
    # in the query string because browsers cannot set headers on one.
    authorization = next(
        (value for name, value in scope["headers"] if name == b"authorization"), None
    )
    token = ""
    if authorization is not None:
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer":
            token = credentials.strip()
    elif scope["type"] == ScopeType.WEBSOCKET:
        query = parse_qs(scope["query_string"].decode("latin-1"))
        token = (query.get("token") or [""])[0]
    if token:
        return f"req:token:{_digest(token)}"
    client = scope.get("client")
    return f"req:addr:{client[0] if client else 'unknown'}"


async def _refuse_websocket(
    scope: Scope, receive: Receive, send: Send, detail: str, retry_after: int
) -> None:
    """Refuse the handshake: an HTTP 429 where the server can send one, else close 1008."""
    await receive()  # the websocket.connect event, owed before any answer
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})
        return
    body = msgspec.json.encode(
        {
            "type": PROBLEM_TYPE_PREFIX + "rate-limited",
            "title": "Too many requests",
            "status": 429,
            "detail": detail,
            "retry_after": retry_after,
        }
    )
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]
    await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})


async def check_login_attempt(
    limiter: RateLimiter, *, address: str, email: str, limit_per_minute: int
) -> None:
    """Count a login attempt per client address and per account; 429 when either is spent.

    The account is counted whether or not it exists, and the answer is the same either way,
    so the limit never reveals which emails have accounts. A blocked address is not counted
    against the account, so it cannot keep the owner locked out after being stopped.
    """
    wait_s = await limiter.hit(f"login:addr:{address}", limit=limit_per_minute, period_s=WINDOW_S)
    if wait_s is None:
        wait_s = await limiter.hit(
            f"login:account:{_digest(email.strip().lower())}",
            limit=limit_per_minute,
            period_s=WINDOW_S,
        )
    if wait_s is None:
        return
    retry_after = _retry_after(wait_s)
    raise ProblemError(
        429,
        "rate-limited",
        "Too many login attempts",
        f"Too many login attempts; try again in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


class MessageRate:
    """A token bucket for one WebSocket connection's frames: `per_second` sustained, up to
    `burst` at once. Pure: the caller passes the clock (monotonic seconds)."""

    def __init__(self, per_second: float, burst: int) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError(f"per_second must be > 0 and burst >= 1; got {per_second}, {burst}")
        self._per_second = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now_s: float) -> bool:
        """Take one token if there is one; False means drop (or refuse) this frame."""
        last = now_s if self._last is None else self._last
        # A clock that steps back refills nothing rather than draining the bucket.
        elapsed = max(0.0, now_s - last)
        self._tokens = min(self._burst, self._tokens + elapsed * self._per_second)
        self._last = max(last, now_s)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
