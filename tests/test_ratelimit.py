"""Rate limits: one contract for the memory and Redis limiters, the request middleware, the
login helper and the per-connection frame bucket."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from limits.aio.storage import MemoryStorage
from litestar import Litestar, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient
from litestar.types import Message, Receive, Scope, Send

from sync_server import ratelimit
from sync_server.problems import PROBLEM_MEDIA_TYPE, ProblemError, exception_handlers
from sync_server.ratelimit import (
    MemoryRateLimiter,
    MessageRate,
    RateLimiter,
    RateLimitMiddleware,
    RedisRateLimiter,
    check_login_attempt,
    open_rate_limiter,
)

pytestmark = pytest.mark.anyio

TIMEOUT_S = 10


def unique_prefix() -> str:
    """A key prefix of one test's own, so concurrent and repeated runs never share counts."""
    return f"touchline:rl:test:{secrets.token_hex(6)}"


@asynccontextmanager
async def redis_limiter(redis_url: str, prefix: str) -> AsyncIterator[RedisRateLimiter]:
    """A Redis limiter under `prefix`, whose keys are deleted afterwards."""
    limiter = RedisRateLimiter(redis_url, key_prefix=prefix)
    try:
        yield limiter
    finally:
        await limiter.close()
        client = aioredis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        memory = MemoryRateLimiter()
        try:
            yield memory
        finally:
            await memory.close()
        return
    async with redis_limiter(request.getfixturevalue("redis_url"), unique_prefix()) as shared:
        yield shared


# The contract every limiter keeps.


async def test_allows_the_limit_then_says_how_long_to_wait(limiter: RateLimiter) -> None:
    allowed = [await limiter.hit("k", limit=3, period_s=60) for _ in range(3)]
    refused = await limiter.hit("k", limit=3, period_s=60)

    assert allowed == [None, None, None]
    # Sliding-window counters reset on window boundaries: the wait is until the current
    # window ends, never more than the period.
    assert refused is not None and 0 < refused <= 60


async def test_keys_are_counted_apart(limiter: RateLimiter) -> None:
    for _ in range(2):
        await limiter.hit("anna", limit=2, period_s=60)

    assert await limiter.hit("anna", limit=2, period_s=60) is not None
    assert await limiter.hit("ben", limit=2, period_s=60) is None


async def test_refused_hits_wait_at_most_the_period(limiter: RateLimiter) -> None:
    # Sliding-window counters reset on window boundaries, so a refusal just before one waits
    # a moment and the next, just after it, waits into the new window: never beyond a period.
    await limiter.hit("k", limit=1, period_s=30)
    for _ in range(5):
        wait = await limiter.hit("k", limit=1, period_s=30)
        assert wait is not None and 0 < wait <= 30


async def test_concurrent_hits_never_exceed_the_limit(limiter: RateLimiter) -> None:
    results: list[float | None] = []

    async def one_hit() -> None:
        results.append(await limiter.hit("burst", limit=10, period_s=60))

    with anyio.fail_after(TIMEOUT_S):
        async with anyio.create_task_group() as group:
            for _ in range(25):
                group.start_soon(one_hit)

    assert sum(result is None for result in results) == 10


@pytest.mark.parametrize(("limit", "period_s"), [(0, 60), (5, 0)])
async def test_a_limit_must_be_positive(limiter: RateLimiter, limit: int, period_s: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        await limiter.hit("k", limit=limit, period_s=period_s)


# Redis specifics.


async def test_redis_limits_are_shared_by_instances(redis_url: str) -> None:
    prefix = unique_prefix()
    async with redis_limiter(redis_url, prefix) as one, redis_limiter(redis_url, prefix) as other:
        assert await one.hit("shared", limit=2, period_s=60) is None
        assert await other.hit("shared", limit=2, period_s=60) is None
        assert await one.hit("shared", limit=2, period_s=60) is not None


async def test_redis_keys_carry_the_prefix(redis_url: str) -> None:
    prefix = unique_prefix()
    async with redis_limiter(redis_url, prefix) as limiter:
        await limiter.hit("k", limit=5, period_s=60)
        client = aioredis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        finally:
            await client.aclose()

    assert prefix.startswith("touchline:rl:") and len(keys) == 1


async def test_unreachable_redis_falls_back_to_limits_per_instance(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
    try:
        with caplog.at_level(logging.WARNING, logger="sync_server.ratelimit"):
            results = [await limiter.hit("k", limit=2, period_s=60) for _ in range(3)]
    finally:
        await limiter.close()

    assert results[:2] == [None, None] and results[2] is not None
    warnings = [r for r in caplog.records if "limiting per instance" in r.getMessage()]
    assert len(warnings) == 1  # once per outage interval, not once per request


async def test_open_rate_limiter_picks_redis_only_when_configured() -> None:
    memory = open_rate_limiter(None)
    shared = open_rate_limiter("redis://127.0.0.1:1/0")  # connects on first use only
    try:
        assert isinstance(memory, MemoryRateLimiter)
        assert isinstance(shared, RedisRateLimiter)
    finally:
        await memory.close()
        await shared.close()


# The middleware on a tiny app.


class LimiterInLifespan:
    """The limiter created at start-up and closed at shutdown, as create_app does it."""

    def __init__(self, make: Callable[[], RateLimiter]) -> None:
        self._make = make
        self._limiter: RateLimiter | None = None

    @asynccontextmanager
    async def __call__(self, _app: Litestar) -> AsyncIterator[None]:
        self._limiter = self._make()
        try:
            yield
        finally:
            await self._limiter.close()
            self._limiter = None

    def current(self) -> RateLimiter:
        if self._limiter is None:
            raise RuntimeError("the rate limiter exists only while the app is running")
        return self._limiter


@get("/things")
async def things() -> dict[str, bool]:
    return {"ok": True}


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@websocket("/live")
async def live(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    await socket.send_json({"hello": True})
    await socket.close()


LIMIT = 3


def limited_app(make: Callable[[], RateLimiter] = MemoryRateLimiter) -> Litestar:
    lifespan = LimiterInLifespan(make)
    return Litestar(
        [things, health, live],
        middleware=[RateLimitMiddleware(lifespan.current, limit_per_minute=LIMIT)],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        logging_config=None,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_over_the_limit_is_a_429_problem_with_retry_after() -> None:
    async with AsyncTestClient(limited_app()) as client:
        for _ in range(LIMIT):
            assert (await client.get("/things")).status_code == 200
        response = await client.get("/things")

    assert response.status_code == 429
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    body = response.json()
    assert body["type"] == "/problems/rate-limited"
    assert body["title"] == "Too many requests" and body["status"] == 429
    assert body["retry_after"] == retry_after and body["detail"]


async def test_requests_with_a_token_are_counted_per_token() -> None:
    async with AsyncTestClient(limited_app()) as client:
        for _ in range(LIMIT):
            await client.get("/things", headers=bearer("anna-token"))

        assert (await client.get("/things", headers=bearer("anna-token"))).status_code == 429
        assert (await client.get("/things", headers=bearer("ben-token"))).status_code == 200
        # The same address without a token has its own, untouched count.
        assert (await client.get("/things")).status_code == 200


async def test_requests_without_a_token_are_counted_per_address() -> None:
    limiter = MemoryRateLimiter()
    app = Litestar(
        [things],
        middleware=[RateLimitMiddleware(lambda: limiter, limit_per_minute=LIMIT)],
        exception_handlers=exception_handlers(),
        logging_config=None,
    )

    async def statuses(address: str, count: int) -> list[int]:
        # httpx types ASGI apps loosely; Litestar's precise signature does not unify with it.
        asgi_app: Any = app
        transport = httpx.ASGITransport(asgi_app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://club.test") as client:
            return [(await client.get("/things")).status_code for _ in range(count)]

    try:
        assert await statuses("10.0.0.1", LIMIT + 1) == [200] * LIMIT + [429]
        assert await statuses("10.0.0.2", 1) == [200]
    finally:
        await limiter.close()


async def test_health_and_ready_are_never_limited() -> None:
    async with AsyncTestClient(limited_app()) as client:
        probes = [(await client.get("/health")).status_code for _ in range(LIMIT * 3)]
        assert probes == [200] * (LIMIT * 3)
        # Probing spent none of the client's requests.
        assert [(await client.get("/things")).status_code for _ in range(LIMIT)] == [200] * LIMIT


async def test_websocket_over_the_limit_is_refused_before_accept() -> None:
    async with AsyncTestClient(limited_app()) as client:
        for _ in range(LIMIT):
            await client.get("/things", headers=bearer("anna-token"))
        refused = await client.websocket_connect("/live", params={"token": "anna-token"})
        with pytest.raises(WebSocketDisconnect) as disconnect, refused:
            pass  # pragma: no cover - the handshake itself fails
        session = await client.websocket_connect("/live", params={"token": "ben-token"})
        with session:
            greeting = session.receive_json(timeout=TIMEOUT_S)

    assert disconnect.value.code == 1008
    assert greeting == {"hello": True}


async def test_websocket_refusal_is_an_http_429_where_the_server_can_send_one() -> None:
    class AlwaysOver:
        async def hit(self, key: str, *, limit: int, period_s: int) -> float | None:
            return 12.2

        async def close(self) -> None:
            return None

    async def never_reached(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the connection should have been refused")

    middleware = RateLimitMiddleware(AlwaysOver, limit_per_minute=1)(never_reached)
    sent: list[Message] = []

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Any = {
        "type": "websocket",
        "path": "/live",
        "headers": [],
        "query_string": b"token=anna-token",
        "client": ("10.0.0.1", 40000),
        "extensions": {"websocket.http.response": {}},
    }
    await middleware(scope, receive, send)

    start, body = sent
    assert start["type"] == "websocket.http.response.start" and start["status"] == 429
    assert dict(start["headers"])[b"retry-after"] == b"13"
    assert body["type"] == "websocket.http.response.body"
    problem = msgspec.json.decode(body["body"])
    assert problem["type"] == "/problems/rate-limited" and problem["retry_after"] == 13


async def test_the_middleware_hashes_tokens_before_counting() -> None:
    keys: list[str] = []

    class Recording:
        async def hit(self, key: str, *, limit: int, period_s: int) -> float | None:
            keys.append(key)
            return None

        async def close(self) -> None:
            return None

    app = Litestar(
        [things],
        middleware=[RateLimitMiddleware(Recording, limit_per_minute=LIMIT)],
        logging_config=None,
    )
    async with AsyncTestClient(app) as client:
        await client.get("/things", headers=bearer("anna-token"))

    # The token (hashed, never raw), then the address behind it with a looser limit.
    assert keys == [f"req:token:{hashlib.sha256(b'anna-token').hexdigest()}", "req:addr:testclient"]


# Logins.


async def test_rapid_logins_from_one_address_meet_a_429(limiter: RateLimiter) -> None:
    outcomes: list[ProblemError | None] = []
    for attempt in range(60):
        try:
            await check_login_attempt(
                limiter,
                address="10.0.0.1",
                email=f"guess{attempt}@example.com",
                limit_per_minute=10,
            )
        except ProblemError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    refusals = [exc for exc in outcomes if exc is not None]
    assert outcomes[:10] == [None] * 10 and len(refusals) == 50
    first = refusals[0]
    assert first.status == 429 and first.code == "rate-limited"
    assert first.title == "Too many login attempts"
    retry_after = first.extensions["retry_after"]
    assert isinstance(retry_after, int) and 1 <= retry_after <= 60
    assert first.headers == {"Retry-After": str(retry_after)}


async def test_the_account_limit_applies_across_addresses(limiter: RateLimiter) -> None:
    for n in range(5):
        await check_login_attempt(
            limiter, address=f"10.0.1.{n}", email="Coach@Example.com ", limit_per_minute=5
        )

    with pytest.raises(ProblemError) as refused:
        await check_login_attempt(
            limiter, address="10.0.2.1", email="coach@example.com", limit_per_minute=5
        )
    # Another account from that same fresh address is still fine.
    await check_login_attempt(
        limiter, address="10.0.2.1", email="parent@example.com", limit_per_minute=5
    )
    assert refused.value.status == 429


async def test_a_login_refusal_reads_the_same_whichever_limit_was_hit(
    limiter: RateLimiter,
) -> None:
    async def refusal(address: str, email: str) -> str:
        for _ in range(2):
            await check_login_attempt(limiter, address=address, email=email, limit_per_minute=2)
        with pytest.raises(ProblemError) as refused:
            await check_login_attempt(limiter, address=address, email=email, limit_per_minute=2)
        return refused.value.detail.split(";")[0]

    by_address = await refusal("10.0.3.1", "nobody@example.com")
    for n in range(2):
        await check_login_attempt(
            limiter, address=f"10.0.4.{n}", email="coach@example.com", limit_per_minute=2
        )
    with pytest.raises(ProblemError) as by_account:
        await check_login_attempt(
            limiter, address="10.0.4.9", email="coach@example.com", limit_per_minute=2
        )

    assert by_address == by_account.value.detail.split(";")[0] == "Too many login attempts"
    assert "coach@example.com" not in by_account.value.detail


# Frames on one connection.


def test_message_rate_allows_a_burst_then_the_sustained_rate() -> None:
    rate = MessageRate(per_second=2, burst=3)

    assert [rate.allow(100.0) for _ in range(4)] == [True, True, True, False]
    assert [rate.allow(100.5) for _ in range(2)] == [True, False]
    # A long quiet spell refills to the burst, never beyond it.
    assert [rate.allow(200.0) for _ in range(4)] == [True, True, True, False]


def test_message_rate_ignores_a_clock_that_steps_back() -> None:
    rate = MessageRate(per_second=1, burst=1)

    assert rate.allow(50.0) is True
    assert rate.allow(10.0) is False
    assert rate.allow(50.5) is False
    assert rate.allow(51.0) is True


@pytest.mark.parametrize(("per_second", "burst"), [(0, 1), (1, 0), (-1, 5)])
def test_message_rate_needs_a_positive_rate_and_burst(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError, match="per_second"):
        MessageRate(per_second=per_second, burst=burst)


# The memory limiter's upkeep.


async def test_the_memory_limiter_sweeps_its_keys_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sweep scans every key: once per request, it cost each request a scan of every
    device and address counted."""
    # The library's private hook that the memory limiter overrides; renamed, nothing would.
    assert hasattr(MemoryStorage, "_MemoryStorage__schedule_expiry")
    limiter = MemoryRateLimiter()
    storage = limiter._memory
    sweeps = 0
    sweep = storage._MemoryStorage__expire_events  # type: ignore[attr-defined]

    async def counted() -> None:
        nonlocal sweeps
        sweeps += 1
        await sweep()

    monkeypatch.setattr(storage, "_MemoryStorage__expire_events", counted)
    try:
        for n in range(200):
            assert await limiter.hit(f"device-{n}", limit=5, period_s=60) is None
            # As between requests: a sweep the hit started runs to its end.
            if (started := storage.timer) is not None and not started.done():
                await started
        assert sweeps == 1
    finally:
        await limiter.close()


async def test_the_memory_limiter_still_forgets_expired_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit, "SWEEP_INTERVAL_S", 0.0)
    limiter = MemoryRateLimiter()
    storage = limiter._memory
    try:
        await limiter.hit("gone", limit=5, period_s=60)
        # Its counters' time is up (as two windows later).
        for key in [key for key in storage.expirations if "gone" in key]:
            storage.expirations[key] = time.time() - 1
        await limiter.hit("other", limit=5, period_s=60)
        assert storage.timer is not None
        await storage.timer  # the sweep that hit started
        assert not [key for key in storage.storage if "gone" in key]
        assert [key for key in storage.storage if "other" in key]
    finally:
        await limiter.close()
