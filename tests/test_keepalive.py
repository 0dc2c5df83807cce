"""Keepalive on the match socket (PROTOCOL.md §17.6): the server pings every
``ws_ping_interval`` and closes a peer whose pong does not come within ``ws_ping_timeout``;
the pings of many connections go out together, from one timer per event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server.relay.fast_socket import PingWheel
from sync_server.settings import Settings
from tests.live_fixtures import (
    LiveMatch,
    Served,
    live_match,
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
    frames, _ = _complete_frames(data[data.index(b"\r\n\r\n") + 4 :])
    return frames


def _complete_frames(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The whole frames at the start of ``data`` (opcode, payload), and the bytes they took;
    a frame still arriving is left for later."""
    frames, at = [], 0
    while len(data) - at >= 2:
        opcode, length, head = data[at] & 0x0F, data[at + 1] & 0x7F, 2
        if length >= 126:
            head = 4 if length == 126 else 10
            if len(data) - at < head:
                break
            (length,) = struct.unpack("!H" if head == 4 else "!Q", data[at + 2 : at + head])
        if len(data) - at < head + length:
            break
        frames.append((opcode, data[at + head : at + head + length]))
        at += head + length
    return frames, at


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


def _answer_pings(raw: socket.socket, rounds: int, within_s: float) -> list[int]:
    """Answer the server's pings (masked pongs, as a client must) until ``rounds`` of them
    have come; the opcodes of every frame received, in order."""
    raw.settimeout(within_s)
    buffer = b"HTTP/1.1 101"  # what stalled_socket already read
    while b"\r\n\r\n" not in buffer:
        buffer += raw.recv(65536)
    buffer = buffer[buffer.index(b"\r\n\r\n") + 4 :]
    opcodes: list[int] = []
    while opcodes.count(0x9) < rounds:
        frames, taken = _complete_frames(buffer)
        buffer = buffer[taken:]
        if not frames:
            chunk = raw.recv(65536)
            assert chunk, f"the server closed the connection after {opcodes}"
            buffer += chunk
            continue
        for opcode, payload in frames:
            opcodes.append(opcode)
            if opcode == 0x9:
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                raw.sendall(bytes((0x8A, 0x80 | len(payload))) + mask + masked)
    return opcodes


async def test_a_peer_that_answers_pings_stays(live: LiveMatch) -> None:
    share, _ = await live.share_token()
    raw = stalled_socket(live.ws_url(share))
    try:
        # Unanswered, the first ping would close the connection within the pong timeout;
        # answered, the pings keep coming.
        opcodes = await anyio.to_thread.run_sync(_answer_pings, raw, 4, 10.0)
    finally:
        raw.close()
    assert opcodes.count(0x9) == 4
    assert 0x8 not in opcodes, "never closed"


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
    all_fired = asyncio.Event()

    def ping(name: str) -> Callable[[], None]:
        def record() -> None:
            fired.append((name, timer_calls))
            if len(fired) == 4:
                all_fired.set()

        return record

    start = loop.time()
    # Three delays within one second of the loop's clock, one more in the next.
    base = 1.0 - (start % 1.0) + 0.05
    for name, delay in (("a", base), ("b", base + 0.3), ("c", base + 0.6), ("late", base + 1.0)):
        wheel.schedule(delay, ping(name))
    cancelled = wheel.schedule(base, ping("cancelled"))
    cancelled.cancel()
    assert wheel.pending() == 5
    await asyncio.wait_for(all_fired.wait(), timeout=5)
    assert [name for name, _ in fired] == ["a", "b", "c", "late"]
    calls = [call for _, call in fired]
    assert calls[0] == calls[1] == calls[2] < calls[3], "a, b and c went out in one timer call"
    assert loop.time() >= start + base + 0.6
    assert wheel.pending() == 0
