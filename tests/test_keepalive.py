"""Keepalive on the match socket (PROTOCOL.md §17.6): the server pings every
``ws_ping_interval`` and closes a peer whose pong does not come within ``ws_ping_timeout``;
the pings of many connections go out together, from one timer per event loop."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.protocol import State

from sync_server.relay.fast_socket import PingWheel
from sync_server.settings import Settings
from tests.live_fixtures import (
    LiveMatch,
    Served,
    live_match,
    receive,
    serve_in_thread,
    stalled_socket,
)

pytestmark = pytest.mark.anyio

PING_S = 1.0
"""The server's ping interval under test."""
PONG_S = 2.0
"""How long it waits for a pong: long enough that a busy test machine answers in time."""


@pytest.fixture
def served(settings: Settings, clean_engine: AsyncEngine) -> Iterator[Served]:
    with serve_in_thread(settings, ws_ping_interval=PING_S, ws_ping_timeout=PONG_S) as served:
        yield served


@pytest.fixture
async def live(served: Served) -> AsyncIterator[LiveMatch]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        yield await live_match(http, served)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked server frames after the handshake's response."""
    data = data[data.index(b"\r\n\r\n") + 4 :]
    frames = []
    while len(data) >= 2:
        opcode, length, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            (length,), at = struct.unpack("!H", data[2:4]), 4
        elif length == 127:
            (length,), at = struct.unpack("!Q", data[2:10]), 10
        frames.append((opcode, data[at : at + length]))
        data = data[at + length :]
    return frames


def _read_until_closed(raw: socket.socket, within_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it did."""
    raw.settimeout(within_s)
    received = b"HTTP/1.1 101"  # what stalled_socket already read
    while chunk := raw.recv(65536):
        received += chunk
    return received, time.monotonic()


async def test_a_peer_that_never_answers_pings_is_closed(live: LiveMatch) -> None:
    share, _ = await live.share_token()
    raw = stalled_socket(live.ws_url(share))
    opened = time.monotonic()
    try:
        received, closed = await anyio.to_thread.run_sync(_read_until_closed, raw, 10.0)
    finally:
        raw.close()
    frames = _frames(received)
    opcodes = [opcode for opcode, _ in frames]
    assert 0x9 in opcodes, "the server pinged"
    assert opcodes[-1] == 0x8, "and then closed"
    assert struct.unpack("!H", frames[-1][1][:2]) == (1011,)
    # A ping within the interval (plus the wheel's second), the close within the timeout.
    assert closed - opened < PING_S + 1.0 + PONG_S + 2.0


async def test_a_peer_that_answers_pings_stays(live: LiveMatch) -> None:
    share, _ = await live.share_token()
    async with connect(live.ws_url(share), ping_interval=None) as ws:
        await receive(ws)
        # Several ping rounds: each pong (sent by the client library) must cancel the timeout.
        await asyncio.sleep(4 * PING_S)
        assert ws.state is State.OPEN
        await ws.ping()  # the connection still carries frames both ways


async def test_pings_due_in_the_same_second_go_out_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    wheel = PingWheel(loop)
    timer_calls = 0
    fire = wheel._fire

    def counted() -> None:
        nonlocal timer_calls
        timer_calls += 1
        fire()

    monkeypatch.setattr(wheel, "_fire", counted)
    fired: list[tuple[str, int]] = []

    def ping(name: str) -> Callable[[], None]:
        return lambda: fired.append((name, timer_calls))

    start = loop.time()
    # Three delays within one second of the loop's clock, one more in the next.
    base = 1.0 - (start % 1.0) + 0.05
    for name, delay in (("a", base), ("b", base + 0.3), ("c", base + 0.6), ("late", base + 1.0)):
        wheel.schedule(delay, ping(name))
    cancelled = wheel.schedule(base, ping("cancelled"))
    cancelled.cancel()
    assert wheel.pending() == 5
    while len(fired) < 4:
        await asyncio.sleep(0.05)
        assert loop.time() - start < 5, f"only {fired} fired"
    assert [name for name, _ in fired] == ["a", "b", "c", "late"]
    calls = [call for _, call in fired]
    assert calls[0] == calls[1] == calls[2] < calls[3], "a, b and c went out in one timer call"
    assert loop.time() >= start + base + 0.6
    assert wheel.pending() == 0
