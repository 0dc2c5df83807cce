"""The fan-out bus: small notices about committed writes, seen by every server instance.

One Protocol, three brokers: in process (one instance on SQLite), PostgreSQL LISTEN/NOTIFY
(instances sharing a database) and Redis pub/sub (when REDIS_URL is set). Every broker drops
notices while a connection is down, so a bus never hides an outage: once it has reconnected it
calls `on_gap`, and subscribers re-read the change log, which stays the only truth. The bus
only says when to look.

Payloads are UTF-8 text without NUL (msgspec JSON) on every bus, because PostgreSQL carries
them as text: what one deployment accepts, every other accepts too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, runtime_checkable

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = ["MAX_PAYLOAD", "Bus", "BusError", "MemoryBus", "PostgresBus", "RedisBus", "open_bus"]

logger = logging.getLogger("sync_server.relay")

MAX_PAYLOAD: Final = 7_900  # bytes; PostgreSQL NOTIFY payloads stop at 8,000
# Lower case only: PostgreSQL folds unquoted identifiers, and one name must suit every broker.
_CHANNEL_NAME: Final = re.compile(r"[a-z0-9_]{1,63}")
_BACKOFF_FIRST_S: Final = 0.1
_BACKOFF_CAP_S: Final = 5.0
# A broker host that vanished without closing its sockets leaves a connection that looks idle
# forever: an idle listener is probed this often, and must answer within as long. (Buses take
# `liveness_s` so that tests need not wait as long.)
_LIVENESS_S: Final = 5.0
_CONNECT_TIMEOUT_S: Final = 3.0
# Notices are published after a commit, on a request's time: an outage must fail them fast.
_PUBLISH_TIMEOUT_S: Final = 5.0


class BusError(Exception):
    """A publish could not be handed to the broker."""


@runtime_checkable
class Bus(Protocol):
    name: str  # "memory" | "postgres" | "redis", for /metrics and logs

    def subscribe(self, on_message: Callable[[bytes], None], on_gap: Callable[[], None]) -> None:
        """Register callbacks (before start). on_message gets every payload published by ANY
        instance on the same channel, this one included, in publish order per publisher.
        on_gap is called after the bus lost its connection and reconnected: messages may have
        been missed, subscribers must re-read state."""
        ...

    async def start(self) -> None: ...

    async def publish(self, payload: bytes) -> None:
        """Raises ValueError if len(payload) > MAX_PAYLOAD, BusError if the broker is down."""
        ...

    async def close(self) -> None:
        """Idempotent; no task is left running."""
        ...


def _checked_payload(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"bus payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    text = payload.decode()  # UnicodeDecodeError is a ValueError
    if "\x00" in text:
        raise ValueError("bus payloads must not contain NUL")
    return text


def _backoff() -> Iterator[float]:
    """Reconnect delays: doubling from 0.1 s up to 5 s, jittered so that instances which lost
    the broker together do not all come back to it in the same instant."""
    delay = _BACKOFF_FIRST_S
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, _BACKOFF_CAP_S)


class _BaseBus:
    name: str

    def __init__(self, channel: str) -> None:
        if not _CHANNEL_NAME.fullmatch(channel):
            raise ValueError(f"bus channel must match [a-z0-9_]{{1,63}}; got {channel!r}")
        self.channel = channel
        self._subscribers: list[tuple[Callable[[bytes], None], Callable[[], None]]] = []
        self._started = self._closed = False

    def subscribe(self, on_message: Callable[[bytes], None], on_gap: Callable[[], None]) -> None:
        if self._started:
            raise RuntimeError("subscribe to a bus before starting it")
        self._subscribers.append((on_message, on_gap))

    def _mark_started(self) -> None:
        if self._started or self._closed:
            raise RuntimeError("a bus starts once")
        self._started = True

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"the {self.name} bus on {self.channel!r} is closed")
        if not self._started:
            raise RuntimeError("start the bus before publishing")

    def _deliver(self, payload: bytes) -> None:
        # One failing subscriber must neither starve the others nor stop the reader.
        for on_message, _ in self._subscribers if not self._closed else ():
            try:
                on_message(payload)
            except Exception:
                logger.exception("relay subscriber failed on a %s message", self.name)

    def _report_gap(self) -> None:
        for _, on_gap in self._subscribers if not self._closed else ():
            try:
                on_gap()
            except Exception:
                logger.exception("relay subscriber failed on a %s gap", self.name)


_memory_channels: dict[str, list[MemoryBus]] = {}


class MemoryBus(_BaseBus):
    """In process: reaches every started MemoryBus of the same channel in this process.

    Delivery goes through the event loop, never inside `publish`, so subscribers see the
    ordering and re-entrancy a real broker gives them.
    """

    name = "memory"

    def __init__(self, channel: str = "touchline") -> None:
        super().__init__(channel)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._mark_started()
        self._loop = asyncio.get_running_loop()
        _memory_channels.setdefault(self.channel, []).append(self)

    async def publish(self, payload: bytes) -> None:
        _checked_payload(payload)
        self._check_open()
        here = asyncio.get_running_loop()
        for bus in _memory_channels.get(self.channel, ()):
            # A test client may run the app on a loop of its own, in another thread.
            if bus._loop is here:
                here.call_soon(bus._deliver, payload)
            elif bus._loop is not None and not bus._loop.is_closed():
                bus._loop.call_soon_threadsafe(bus._deliver, payload)

    def simulate_disconnect(self) -> None:
        """Test hook: behave as if the broker connection had dropped and come back."""
        if self._loop is not None:
            self._loop.call_soon(self._report_gap)

    async def close(self) -> None:
        self._closed = True
        peers = _memory_channels.get(self.channel, [])
        if self in peers:
            peers.remove(self)
        if not peers:
            _memory_channels.pop(self.channel, None)


class _BrokerBus(_BaseBus):
    """A bus on a network broker: one listening connection, watched by a task that replaces
    it (with capped, jittered backoff) when it dies and then reports the gap; publishes are
    serialised, so one publisher's notices stay in order."""

    _errors: tuple[type[Exception], ...]

    def __init__(self, channel: str, *, liveness_s: float) -> None:
        super().__init__(channel)
        self._liveness_s = liveness_s
        self._listener_name = f"touchline-relay-{channel}"
        self._publisher_name = f"touchline-relay-pub-{channel}"
        self._publish_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen before returning, so that everything published afterwards arrives. An
        unreachable broker does not fail the start: the bus keeps trying in the background
        and reports a gap once it listens."""
        self._mark_started()
        listener = None
        try:
            listener = await self._listen()
        except self._errors as exc:
            logger.warning("relay bus %s cannot listen on %r yet: %r", self.name, self.channel, exc)
        self._task = asyncio.create_task(
            self._watch(listener), name=f"relay-{self.name}-{self.channel}"
        )

    async def publish(self, payload: bytes) -> None:
        text = _checked_payload(payload)
        self._check_open()
        try:
            async with asyncio.timeout(_PUBLISH_TIMEOUT_S), self._publish_lock:
                if self._closed:  # closed while this publish waited for the lock
                    raise BusError(f"the {self.name} bus on {self.channel!r} is closed")
                await self._send(payload, text)
        except self._errors as exc:  # TimeoutError is an OSError
            raise BusError(f"cannot publish on {self.channel!r}: {exc!r}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        await self._drop_listener()
        # A publish in flight finishes first (within its timeout), so it opens nothing anew.
        async with self._publish_lock:
            await self._drop_publisher()

    async def _watch(self, listener: Any) -> None:
        # Anything going wrong in here counts as a lost connection: a watcher that died would
        # silence the bus without a gap, the one failure subscribers could not notice.
        while True:
            if listener is None:
                listener = await self._relisten()
                self._report_gap()
            try:
                problem = await self._until_lost(listener)
            except Exception as exc:
                problem = repr(exc)
            logger.warning(
                "relay bus %s lost its listener on %r: %s", *(self.name, self.channel, problem)
            )
            with contextlib.suppress(Exception):  # a dead connection may complain while closing
                await self._drop_listener()
            listener = None

    async def _relisten(self) -> Any:
        delays = _backoff()
        while True:
            try:
                listener = await self._listen()
            except Exception as exc:
                delay = next(delays)
                logger.warning(
                    "relay bus %s cannot listen (%r); next try in %.2f s", *(self.name, exc, delay)
                )
                await asyncio.sleep(delay)
            else:
                logger.warning("relay bus %s listens on %r again", self.name, self.channel)
                return listener

    async def _listen(self) -> Any:
        """Connect and listen, returning the listener; leave nothing open when failing."""
        raise NotImplementedError

    async def _until_lost(self, listener: Any) -> str:
        """Return (or raise) once the listener is dead: the problem, for the log."""
        raise NotImplementedError

    async def _send(self, payload: bytes, text: str) -> None:
        raise NotImplementedError

    async def _drop_listener(self) -> None:
        raise NotImplementedError

    async def _drop_publisher(self) -> None:
        raise NotImplementedError


class PostgresBus(_BrokerBus):
    """LISTEN/NOTIFY through asyncpg on a listening and a publishing connection of its own.

    A NOTIFY that fails on a dropped connection is sent again once on a fresh one, so a notice
    may arrive twice; notices name a log head, so a duplicate costs one redundant pull.
    """

    name = "postgres"
    # InternalClientError: a query sent just as the server's goodbye arrives on an idle
    # connection (pg_terminate_backend, a restart) finds the protocol in a state it refuses.
    _errors = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

    def __init__(self, dsn: str, channel: str, *, liveness_s: float = _LIVENESS_S) -> None:
        super().__init__(channel, liveness_s=liveness_s)
        # Settings carry SQLAlchemy URLs; asyncpg takes the libpq form.
        self._dsn = re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", dsn)
        self._listener: Any = None
        self._publisher: Any = None
        self._lost = asyncio.Event()
        self._last_heard = 0.0

    async def _connect(self, application_name: str) -> Any:
        return await asyncpg.connect(
            self._dsn,
            timeout=_CONNECT_TIMEOUT_S,
            server_settings={"application_name": application_name},
        )

    async def _listen(self) -> Any:
        connection = await self._connect(self._listener_name)
        try:
            connection.add_termination_listener(self._on_termination)
            await connection.add_listener(self.channel, self._on_notification)  # quotes it
        except BaseException:
            connection.terminate()
            raise
        self._listener = connection
        self._lost.clear()
        self._last_heard = asyncio.get_running_loop().time()
        return connection

    def _on_notification(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        self._deliver(payload.encode())

    def _on_termination(self, connection: Any) -> None:
        if connection is self._listener:
            self._lost.set()

    async def _until_lost(self, listener: Any) -> str:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self._liveness_s)
                return "connection closed"
            except TimeoutError:
                if loop.time() - self._last_heard >= self._liveness_s:
                    await listener.fetchval("SELECT 1", timeout=self._liveness_s)
                    self._last_heard = loop.time()

    async def _send(self, payload: bytes, text: str) -> None:
        for attempt in (1, 2):
            if self._publisher is None or self._publisher.is_closed():
                self._publisher = await self._connect(self._publisher_name)
            try:
                await self._publisher.execute("SELECT pg_notify($1, $2)", self.channel, text)
                return
            except BaseException as exc:  # a cancelled query leaves the connection unusable
                broken, self._publisher = self._publisher, None
                broken.terminate()
                if attempt == 2 or not isinstance(exc, self._errors):
                    raise

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        await self._discard(listener)

    async def _drop_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        await self._discard(publisher)

    async def _discard(self, connection: Any) -> None:
        # Say goodbye when shutting down; a failed connection is cut (it may hang on a close).
        if connection is None:
            return
        if self._closed and not connection.is_closed():
            try:
                await connection.close(timeout=_CONNECT_TIMEOUT_S)
                return
            except self._errors:
                pass
        connection.terminate()


class RedisBus(_BrokerBus):
    """Redis pub/sub through redis.asyncio: a reader on a subscribed connection of its own and
    a publishing client that replaces a dead pooled connection once per publish."""

    name = "redis"
    _errors = (OSError, RedisError)

    def __init__(self, url: str, channel: str, *, liveness_s: float = _LIVENESS_S) -> None:
        super().__init__(channel, liveness_s=liveness_s)
        self._url = url
        self._publisher = self._client(self._publisher_name, retries=1)
        self._reader: aioredis.Redis | None = None
        self._pubsub: Any = None

    def _client(self, name: str, *, retries: int) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self._url,
            socket_timeout=_CONNECT_TIMEOUT_S,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), retries),
            client_name=name,
        )

    async def _listen(self) -> Any:
        # No retries: redis-py would resubscribe on its own, and a gap must never go unseen.
        self._reader = self._client(self._listener_name, retries=0)
        self._pubsub = pubsub = self._reader.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # Until Redis confirms the subscription, a publish would pass this bus by.
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                while True:
                    reply = await pubsub.get_message(timeout=_CONNECT_TIMEOUT_S)
                    if reply is not None and reply["type"] == "subscribe":
                        return pubsub
        except BaseException:
            await self._drop_listener()
            raise

    async def _until_lost(self, listener: Any) -> str:
        pinged = False
        while True:
            reply = await listener.get_message(
                ignore_subscribe_messages=True, timeout=self._liveness_s
            )
            if reply is None:
                if pinged:
                    return "no answer to PING"
                await listener.ping()
                pinged = True
                continue
            pinged = False
            if reply["type"] == "message":
                self._deliver(reply["data"])

    async def _send(self, payload: bytes, text: str) -> None:
        await self._publisher.publish(self.channel, payload)

    async def _drop_listener(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        if pubsub is not None:
            await pubsub.aclose()
        if reader is not None:
            await reader.aclose()

    async def _drop_publisher(self) -> None:
        await self._publisher.aclose()


def open_bus(*, database_url: str, redis_url: str | None, channel: str) -> Bus:
    """The bus for this deployment: Redis when configured, else the PostgreSQL database the
    instances share, else in process (SQLite serves one instance)."""
    if redis_url:
        return RedisBus(redis_url, channel)
    if database_url.startswith(("postgresql", "postgres:")):
        return PostgresBus(database_url, channel)
    return MemoryBus(channel)
