"""A served app for live tests: uvicorn on a free local port, and WebSocket helpers.

Live connections need a real server: the relay's bus, its outboxes and the socket's flow
control are what these tests are about. In a thread for speed; tests that need two
instances start `sync-server serve` processes instead (tests/test_relay_instances.py).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from protocol.wire import PushRequest
from sync_server.app import create_app
from sync_server.cli import proxy_options
from sync_server.relay.fast_socket import UVICORN_WS
from sync_server.settings import Settings
from tests.auth_fixtures import Club, sign_up
from tests.sync_fixtures import FakeClock, ScriptedDevice, new_match_changes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Served:
    url: str

    def ws(self, path: str) -> str:
        return "ws" + self.url.removeprefix("http") + path


class _SignallingServer(uvicorn.Server):
    """uvicorn telling the test thread when it is listening, or has given up."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()  # listening, or failed (then ``started`` stays false)


@contextmanager
def uvicorn_in_thread(config: uvicorn.Config, *, timeout_s: float = 20.0) -> Iterator[str]:
    """Serve ``config`` in a thread until the block ends; yields the base URL."""
    server = _SignallingServer(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{config.port}", daemon=True)
    thread.start()
    if not server.ready.wait(timeout_s) or not server.started:
        server.should_exit = True
        raise RuntimeError("the test server did not start")
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert not thread.is_alive(), "uvicorn did not shut down"


@contextmanager
def serve_in_thread(
    settings: Settings, *, ws: str = UVICORN_WS, **options: Any
) -> Iterator[Served]:
    """The app under uvicorn in a thread, with its own engine, until the block ends.
    ``ws`` is uvicorn's WebSocket protocol: the server's own, or a plain one; ``options``
    are more of uvicorn's settings (``ws_ping_interval``, ...)."""
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        ws=ws,
        ws_per_message_deflate=False,
        # As `sync-server serve` does: forwarded headers from the configured proxies only.
        **proxy_options(settings),
        **options,
    )
    with uvicorn_in_thread(config) as url:
        yield Served(url)


async def receive(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        message: dict[str, Any] = json.loads(await ws.recv())
        return message


async def receive_until(
    ws: ClientConnection, kind: str, within: float = 5.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The next message of type ``kind``, and the ones before it."""
    skipped: list[dict[str, Any]] = []
    with anyio.fail_after(within):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == kind:
                return message, skipped
            skipped.append(message)


async def ended_with(ws: ClientConnection, status: int, close_code: int) -> dict[str, Any]:
    """The socket's last words: an ``error`` with ``status`` within a second, then the close
    with ``close_code``. Answers the error's problem."""
    error, _ = await receive_until(ws, "error", within=1.0)
    assert error["problem"]["status"] == status, error
    with pytest.raises(ConnectionClosed):
        await receive(ws, within=1.0)
    assert ws.close_code == close_code
    problem: dict[str, Any] = error["problem"]
    return problem


@dataclass
class LiveMatch:
    """A club with a match on the served app, a coach device to write with, and the API."""

    http: httpx.AsyncClient
    served: Served
    club: Club
    device: ScriptedDevice
    match_id: uuid.UUID
    home: uuid.UUID
    away: uuid.UUID

    async def push(self, request: PushRequest) -> dict[str, Any]:
        response = await self.http.post(
            "/api/sync/push",
            content=_encode(request),
            headers={
                **await self.club.headers(self.device.device_id),
                "content-type": "application/json",
            },
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def token(self, device_id: str) -> str:
        return (await self.club.headers(device_id))["Authorization"].removeprefix("Bearer ")

    async def share_token(self) -> tuple[str, str]:
        response = await self.http.get(
            f"/api/matches/{self.match_id}/share",
            headers=await self.club.headers(self.device.device_id),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return str(body["token"]), str(body["id"])

    async def revoke(self, link_id: str) -> None:
        response = await self.http.delete(
            f"/api/matches/{self.match_id}/share/{link_id}",
            headers=await self.club.headers(self.device.device_id),
        )
        assert response.status_code == 204, response.text

    def ws_url(self, token: str, **query: Any) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"token": token, **query}.items())
        return self.served.ws(f"/ws/match/{self.match_id}?{params}")


def _encode(request: PushRequest) -> bytes:
    return msgspec.json.encode(request)


async def live_match(
    http: httpx.AsyncClient, served: Served, device_id: str = "phone-a"
) -> LiveMatch:
    club = Club(http, await sign_up(http, device_id=device_id))
    device = ScriptedDevice(device_id, FakeClock(time.time_ns() // 1_000_000))
    match_id, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    live = LiveMatch(http, served, club, device, match_id, home, away)
    await live.push(device.push(*new_match_changes(device, match_id, home, away)))
    return live


# About 6 MB of changes: more than loopback buffers and the outbox hold together.
STALL_PUSHES = 40


def stalled_socket(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    parsed = urlsplit(url)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((parsed.hostname or "127.0.0.1", parsed.port or 80))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET {parsed.path}?{parsed.query} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert raw.recv(12) == b"HTTP/1.1 101"
    return raw


@asynccontextmanager
async def served_match(
    settings: Settings, *, ws: str = UVICORN_WS, **changes: Any
) -> AsyncIterator[LiveMatch]:
    """A club with a live match on an app served with ``settings`` changed by ``changes``."""
    with serve_in_thread(dataclasses.replace(settings, **changes), ws=ws) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            yield await live_match(http, served)
