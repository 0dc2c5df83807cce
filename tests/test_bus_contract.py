"""The relay bus contract, kept by the in-process, PostgreSQL and Redis buses alike.

Each test gets two started buses on a channel of its own, as two server instances would have.
Connections are cut from outside (pg_terminate_backend, CLIENT KILL, or a TCP proxy that goes
away), never by reaching into a bus.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
import redis.asyncio as aioredis
from anyio.abc import SocketStream
from anyio.from_thread import start_blocking_portal

from sync_server.relay.bus import (
    MAX_PAYLOAD,
    Bus,
    BusError,
    MemoryBus,
    PostgresBus,
    RedisBus,
    open_bus,
)
from tests.conftest import POSTGRES, TEST_DATABASE_URL

pytestmark = pytest.mark.anyio

DEADLINE_S: Final = 2.0
# Reconnecting waits out a jittered backoff; an outage's end is noticed within a few seconds.
RECONNECT_DEADLINE_S: Final = 10.0
# Short enough that a silent connection is found well within a test's deadline.
SHORT_LIVENESS_S: Final = 0.2
UNREACHABLE: Final = {
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:1/test",
    "redis": "redis://127.0.0.1:1/0",
}


def fresh_channel() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


class Inbox:
    """What one bus delivered to its subscriber, and a way to wait for more."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.gaps = 0
        self._waiters: set[anyio.Event] = set()

    def on_message(self, payload: bytes) -> None:
        self.messages.append(payload)
        self._wake()

    def on_gap(self) -> None:
        self.gaps += 1
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def wait_until(self, ready: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
        with anyio.fail_after(deadline_s):
            while not ready():
                waiter = anyio.Event()
                self._waiters.add(waiter)
                try:
                    await waiter.wait()
                finally:
                    self._waiters.discard(waiter)

    async def wait_for(self, count: int) -> None:
        await self.wait_until(lambda: len(self.messages) >= count)

    async def wait_for_gaps(self, count: int, deadline_s: float = DEADLINE_S) -> None:
        await self.wait_until(lambda: self.gaps >= count, deadline_s)


@dataclass
class Node:
    """One server instance's bus and what it received."""

    bus: Bus
    inbox: Inbox = field(default_factory=Inbox)


@dataclass(frozen=True)
class Broker:
    kind: str
    url: str

    def bus(self, channel: str, url: str | None = None, liveness_s: float = 5.0) -> Bus:
        if self.kind == "postgres":
            return PostgresBus(url or self.url, channel, liveness_s=liveness_s)
        if self.kind == "redis":
            return RedisBus(url or self.url, channel, liveness_s=liveness_s)
        return MemoryBus(channel)

    async def cut_listeners(self, channel: str, nodes: list[Node]) -> int:
        """Drop the listening connections of `channel` from outside; how many were cut."""
        if self.kind == "memory":
            for node in nodes:
                assert isinstance(node.bus, MemoryBus)
                node.bus.simulate_disconnect()
            return len(nodes)
        return await self.cut_connections(f"touchline-relay-{channel}")

    async def cut_connections(self, client_name: str) -> int:
        if self.kind == "postgres":
            connection = await asyncpg.connect(libpq_url(self.url))
            try:
                cut = await connection.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = $1",
                    client_name,
                )
            finally:
                await connection.close()
            return len(cut)
        client = aioredis.Redis.from_url(self.url)
        try:
            ids = [c["id"] for c in await client.client_list() if c.get("name") == client_name]
            for client_id in ids:
                await client.client_kill_filter(_id=client_id)
        finally:
            await client.aclose()
        return len(ids)


def libpq_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))


def reachable_broker(kind: str, request: pytest.FixtureRequest) -> Broker:
    if kind == "postgres":
        POSTGRES.require()
        return Broker(kind, TEST_DATABASE_URL)
    if kind == "redis":
        return Broker(kind, request.getfixturevalue("redis_url"))
    return Broker(kind, "")


POSTGRES_PARAM: Final = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["memory", POSTGRES_PARAM, "redis"])
def broker(request: pytest.FixtureRequest) -> Broker:
    return reachable_broker(request.param, request)


@pytest.fixture(params=[POSTGRES_PARAM, "redis"])
def network_broker(request: pytest.FixtureRequest) -> Broker:
    """Only the brokers reached over a network, which can be unreachable."""
    return reachable_broker(request.param, request)


@asynccontextmanager
async def running(bus: Bus) -> AsyncIterator[Node]:
    node = Node(bus)
    bus.subscribe(node.inbox.on_message, node.inbox.on_gap)
    try:
        with anyio.fail_after(RECONNECT_DEADLINE_S):
            await bus.start()
        yield node
    finally:
        await bus.close()


@dataclass
class Pair:
    channel: str
    a: Node
    b: Node


@pytest.fixture
async def pair(broker: Broker) -> AsyncIterator[Pair]:
    channel = fresh_channel()
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(broker.bus(channel)))
        b = await stack.enter_async_context(running(broker.bus(channel)))
        yield Pair(channel, a, b)


def payload(text: str) -> bytes:
    return f'{{"n":"{text}"}}'.encode()


# Delivery.


async def test_a_message_reaches_every_instance_the_sender_included(pair: Pair) -> None:
    await pair.a.bus.publish(payload("goal"))

    await pair.a.inbox.wait_for(1)
    await pair.b.inbox.wait_for(1)
    assert pair.a.inbox.messages == pair.b.inbox.messages == [payload("goal")]


async def test_a_burst_arrives_complete_and_in_order(pair: Pair) -> None:
    sent = [payload(str(n)) for n in range(1000)]
    for message in sent:
        await pair.a.bus.publish(message)

    await pair.b.inbox.wait_for(len(sent))
    assert pair.b.inbox.messages == sent


async def test_a_payload_of_the_maximum_size_arrives_intact(pair: Pair) -> None:
    # Two, three and four bytes a character, padded with ASCII to exactly the limit.
    body = "é⚽😀" * 600
    text = '{"n":"' + body + '"}'
    text = text[:-2] + "x" * (MAX_PAYLOAD - len(text.encode())) + '"}'
    largest = text.encode()
    assert len(largest) == MAX_PAYLOAD

    await pair.a.bus.publish(largest)

    await pair.b.inbox.wait_for(1)
    assert pair.b.inbox.messages == [largest]


async def test_a_payload_over_the_maximum_is_refused_and_never_delivered(pair: Pair) -> None:
    oversized = payload("x" * (MAX_PAYLOAD - len(payload("")) + 1))
    assert len(oversized) == MAX_PAYLOAD + 1

    with pytest.raises(ValueError, match="exceeds"):
        await pair.a.bus.publish(oversized)
    await pair.a.bus.publish(payload("after"))

    await pair.b.inbox.wait_for(1)
    assert pair.b.inbox.messages == [payload("after")]


@pytest.mark.parametrize("bad", [b'{"n":"\xff"}', b'{"n":"\x00"}'], ids=["not-utf8", "nul"])
async def test_payloads_must_be_utf8_text_without_nul(pair: Pair, bad: bytes) -> None:
    with pytest.raises(ValueError):
        await pair.a.bus.publish(bad)
    await pair.a.bus.publish(payload("after"))

    await pair.b.inbox.wait_for(1)
    assert pair.b.inbox.messages == [payload("after")]


async def test_channels_do_not_see_each_others_messages(pair: Pair, broker: Broker) -> None:
    async with running(broker.bus(fresh_channel())) as elsewhere:
        await elsewhere.bus.publish(payload("elsewhere"))
        await pair.a.bus.publish(payload("here"))

        await elsewhere.inbox.wait_for(1)
        await pair.b.inbox.wait_for(1)

    assert elsewhere.inbox.messages == [payload("elsewhere")]
    assert pair.b.inbox.messages == [payload("here")]


# Lost connections.


async def test_a_cut_listener_reports_a_gap_and_delivery_resumes(
    pair: Pair, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sync_server.relay")

    assert await broker.cut_listeners(pair.channel, [pair.a, pair.b]) == 2

    await pair.a.inbox.wait_for_gaps(1)
    await pair.b.inbox.wait_for_gaps(1)
    await pair.a.bus.publish(payload("after"))
    await pair.a.inbox.wait_for(1)
    await pair.b.inbox.wait_for(1)
    assert pair.b.inbox.messages == [payload("after")]
    if broker.kind != "memory":
        warnings = [r for r in caplog.records if r.name == "sync_server.relay"]
        assert any("lost its listener" in r.getMessage() for r in warnings)
        assert any("again" in r.getMessage() for r in warnings)
        assert all(r.levelno == logging.WARNING for r in warnings)


async def test_a_cut_publishing_connection_is_replaced_on_the_next_publish(
    network_broker: Broker,
) -> None:
    channel = fresh_channel()
    async with running(network_broker.bus(channel)) as node:
        await node.bus.publish(payload("before"))
        await node.inbox.wait_for(1)

        assert await network_broker.cut_connections(f"touchline-relay-pub-{channel}") == 1
        await node.bus.publish(payload("after"))

        await node.inbox.wait_for(2)
    assert node.inbox.messages == [payload("before"), payload("after")]
    assert node.inbox.gaps == 0


async def test_publishing_to_an_unreachable_broker_fails_fast(
    network_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sync_server.relay")
    bus = network_broker.bus(fresh_channel(), url=UNREACHABLE[network_broker.kind])

    async with running(bus):
        with anyio.fail_after(5), pytest.raises(BusError):
            await bus.publish(payload("lost"))

    assert any("cannot listen" in r.getMessage() for r in caplog.records)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a broker; can go silent on the connections it holds."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 0)
        self._open: list[list[bool]] = []

    def stall_open_connections(self) -> None:
        """Drop every byte on the connections open now, as a vanished host would; new
        connections flow."""
        for flowing in self._open:
            flowing[0] = False
        self._open.clear()

    async def _forward(self, client: SocketStream) -> None:
        flowing = [True]
        self._open.append(flowing)

        async def pump(source: SocketStream, sink: SocketStream) -> None:
            try:
                async for chunk in source:
                    if flowing[0]:
                        await sink.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

        upstream = await anyio.connect_tcp(*self._target)
        async with client, upstream, anyio.create_task_group() as group:
            group.start_soon(pump, client, upstream)
            await pump(upstream, client)
            group.cancel_scope.cancel()

    @classmethod
    @asynccontextmanager
    async def serving(cls, port: int, target: str) -> AsyncIterator[TcpProxy]:
        """The proxy, listening; leaving cuts every connection, as a broker restart does."""
        proxy = cls(target)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, proxy._forward)
            yield proxy
            group.cancel_scope.cancel()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_broker_outage_fails_publishes_then_reports_a_gap(network_broker: Broker) -> None:
    port = free_port()
    bus = network_broker.bus(fresh_channel(), url=with_port(network_broker.url, port))

    async with running(bus) as node:
        # Started while the broker is away: refused at once, not hung.
        with anyio.fail_after(5), pytest.raises(BusError):
            await bus.publish(payload("lost"))

        for outage in (1, 2):
            async with TcpProxy.serving(port, network_broker.url):
                await node.inbox.wait_for_gaps(outage, RECONNECT_DEADLINE_S)
                await bus.publish(payload(str(outage)))
                await node.inbox.wait_for(outage)
            with anyio.fail_after(5), pytest.raises(BusError):
                await bus.publish(payload("lost"))

    assert node.inbox.messages == [payload("1"), payload("2")]


async def test_a_silent_listener_is_found_by_probing_and_replaced(network_broker: Broker) -> None:
    port = free_port()
    channel = fresh_channel()
    proxied = network_broker.bus(
        channel, url=with_port(network_broker.url, port), liveness_s=SHORT_LIVENESS_S
    )

    async with (
        TcpProxy.serving(port, network_broker.url) as proxy,
        running(proxied) as listening,
        running(network_broker.bus(channel)) as publishing,
    ):
        proxy.stall_open_connections()

        await listening.inbox.wait_for_gaps(1, RECONNECT_DEADLINE_S)
        await publishing.bus.publish(payload("after"))
        await listening.inbox.wait_for(1)
    assert listening.inbox.messages == [payload("after")]


# Lifecycle.


async def test_close_is_idempotent_leaves_no_task_and_refuses_publishing(broker: Broker) -> None:
    before = asyncio.all_tasks()
    async with running(broker.bus(fresh_channel())) as node:
        await node.bus.publish(payload("x"))
        await node.inbox.wait_for(1)
    await node.bus.close()

    assert not [task for task in asyncio.all_tasks() - before if not task.done()]
    with pytest.raises(BusError, match="closed"):
        await node.bus.publish(payload("y"))


async def test_callbacks_are_registered_before_start_and_start_runs_once(broker: Broker) -> None:
    bus = broker.bus(fresh_channel())
    with pytest.raises(RuntimeError, match="start"):
        await bus.publish(payload("early"))

    async with running(bus) as node:
        with pytest.raises(RuntimeError, match="before starting"):
            bus.subscribe(node.inbox.on_message, node.inbox.on_gap)
        with pytest.raises(RuntimeError, match="once"):
            await bus.start()


async def test_a_failing_subscriber_does_not_starve_the_others(broker: Broker) -> None:
    def explode(message: bytes) -> None:
        raise RuntimeError("subscriber bug")

    bus = broker.bus(fresh_channel())
    bus.subscribe(explode, lambda: None)
    async with running(bus) as node:
        await bus.publish(payload("1"))
        await bus.publish(payload("2"))
        await node.inbox.wait_for(2)
    assert node.inbox.messages == [payload("1"), payload("2")]


async def test_memory_buses_reach_each_other_across_event_loops() -> None:
    # Litestar's test client runs the app on a loop of its own, in another thread.
    channel = fresh_channel()
    arrived = threading.Event()
    with start_blocking_portal() as portal:
        remote = MemoryBus(channel)
        remote.subscribe(lambda message: arrived.set(), lambda: None)
        await anyio.to_thread.run_sync(portal.call, remote.start)
        try:
            async with running(MemoryBus(channel)) as local:
                await local.bus.publish(payload("there"))
                assert await anyio.to_thread.run_sync(arrived.wait, DEADLINE_S)
                await anyio.to_thread.run_sync(portal.call, remote.publish, payload("back"))
                await local.inbox.wait_for(2)
        finally:
            await anyio.to_thread.run_sync(portal.call, remote.close)
    assert local.inbox.messages == [payload("there"), payload("back")]


# Construction.


@pytest.mark.parametrize("channel", ["", "Touchline", "touch-line", "x" * 64, 'a"; drop'])
def test_channel_names_are_checked(channel: str) -> None:
    for make in (
        lambda: MemoryBus(channel),
        lambda: PostgresBus(TEST_DATABASE_URL, channel),
        lambda: RedisBus("redis://127.0.0.1:6379/0", channel),
    ):
        with pytest.raises(ValueError, match="channel"):
            make()


@pytest.mark.parametrize(
    ("database_url", "redis_url", "expected"),
    [
        ("sqlite+aiosqlite:///touchline.db", None, MemoryBus),
        ("postgresql+asyncpg://coach@db/club", None, PostgresBus),
        ("postgresql+asyncpg://coach@db/club", "redis://cache:6379/0", RedisBus),
        ("sqlite+aiosqlite:///touchline.db", "redis://cache:6379/0", RedisBus),
    ],
)
async def test_open_bus_picks_the_deployments_broker(
    database_url: str, redis_url: str | None, expected: type[Bus]
) -> None:
    bus = open_bus(database_url=database_url, redis_url=redis_url, channel="touchline")

    assert isinstance(bus, expected) and isinstance(bus, Bus)
    await bus.close()
