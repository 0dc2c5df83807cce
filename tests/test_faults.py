"""Faults, shortened from bench/faults.py: real `sync-server serve` processes are SIGKILLed and
SIGTERMed while devices (the Python client, with state files and retries) push, and the
database is cut off under a running server. Nothing a device made may be lost or stored
twice, every device converges, and an outage answers 503 with Retry-After, never 500.

The database outage goes through a TCP relay written here, in front of PostgreSQL: other test
files share the machine's PostgreSQL, so it is never restarted from a test (bench/faults.py
restarts a cluster of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

import httpx
import msgspec
import pytest
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.faults import (
    GRACEFUL_S,
    Account,
    Fleet,
    ServerProcess,
    StatusLog,
    Target,
    check_fleet,
    full_pull,
    server_env,
    server_kill_phase,
    sign_up,
)
from protocol.schema import Scalar
from protocol.wire import PushRequest
from tests.conftest import POSTGRES, SESSION_SCHEMA, TEST_DATABASE_URL
from tests.sync_fixtures import FakeClock, ScriptedDevice, new_match_changes
from touchline_client import Credentials, HttpTransport, SyncDevice

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HOST = "127.0.0.1"
DEADLINE_S = 60.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    """A database of the test's own: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield Target.sqlite(tmp_path / "faults.db")
        return
    POSTGRES.require()
    target = Target.postgres(TEST_DATABASE_URL, f"{SESSION_SCHEMA}_faults_{secrets.token_hex(3)}")
    try:
        yield target
    finally:
        await target.drop()


@pytest.fixture
async def postgres_target(tmp_path: Path) -> AsyncIterator[Target]:
    POSTGRES.require()
    target = Target.postgres(TEST_DATABASE_URL, f"{SESSION_SCHEMA}_faults_{secrets.token_hex(3)}")
    try:
        yield target
    finally:
        await target.drop()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``condition`` (something no event announces) until it holds, or fail."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        await asyncio.sleep(0.002)


# -- SIGKILL ------------------------------------------------------------------------------------


async def test_server_kills_and_a_device_killed_after_the_commit_lose_and_duplicate_nothing(
    target: Target, tmp_path: Path
) -> None:
    """Three devices push 100 changes each through two SIGKILLs of the server, each while a
    push is in flight; then a device process is SIGKILLed after the server committed its
    push but before it read the answer, and re-sends the set when it restarts."""
    report = await server_kill_phase(
        target,
        tmp_path,
        devices=3,
        changes=100,
        kills=2,
        sigterms=0,
        rng=random.Random(9),
        timeout_s=DEADLINE_S,
        jitter_s=0.0,
        crash_changes=20,
        pace_s=0.01,
    )
    assert [f.kind for f in report.faults] == ["SIGKILL", "SIGKILL"]
    assert all(f.pushes_in_flight >= 1 for f in report.faults), report.faults
    assert all(f.recovered_s is not None for f in report.faults), report.faults
    assert report.server_starts == 3

    verdict = report.verdict
    assert verdict.made == 3 * 100 + 20 + 5
    assert (verdict.duplicates, verdict.losses, verdict.phantoms) == (0, 0, 0)
    assert verdict.mismatches == [] and verdict.journal_gaps == []
    assert verdict.diverged == []  # live and reloaded from the state file

    crash = report.crash
    assert crash is not None
    # The server held the set while the device was dead; the device did not know.
    assert crash.stored_before_restart == crash.pending_after_restart == 20
    # Re-sent on restart: acknowledged as stored, applied nothing again.
    assert (crash.resent_as_duplicates, crash.applied_on_resend) == (20, 0)

    assert report.server_errors == [] and report.without_retry_after == 0
    assert not [s for s in report.statuses if s >= 500], report.statuses
    assert report.ok, report.problems


# -- SIGTERM ------------------------------------------------------------------------------------


def _tcp_queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(tx, rx) bytes queued in the kernel for the IPv4 socket local_port -> remote_port."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            cols = line.split()
            local = int(cols[1].rsplit(":", 1)[1], 16)
            remote = int(cols[2].rsplit(":", 1)[1], 16)
            if (local, remote) == (local_port, remote_port):
                tx, rx = cols[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


class RawPush:
    """A push written by hand on a plain socket that nothing reads behind the test's back, so
    the kernel's queues tell exactly when the server has taken all of it in and whether any
    of its answer has arrived."""

    def __init__(self, port: int) -> None:
        self.server_port = port
        self.sock = socket.create_connection((HOST, port), timeout=DEADLINE_S)
        self.client_port = int(self.sock.getsockname()[1])

    async def send(self, token: str, request: PushRequest) -> None:
        body = msgspec.json.encode(request)
        head = (
            f"POST /api/sync/push HTTP/1.1\r\nHost: {HOST}:{self.server_port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        await asyncio.to_thread(self.sock.sendall, head + body)

    def taken_in(self) -> bool:
        """The server has read the whole request: nothing left in either queue."""
        mine = _tcp_queues(self.client_port, self.server_port)
        theirs = _tcp_queues(self.server_port, self.client_port)
        return mine is not None and theirs is not None and mine[0] == 0 and theirs[1] == 0

    def answered(self) -> bool:
        """Bytes of an answer have arrived."""
        mine = _tcp_queues(self.client_port, self.server_port)
        return mine is None or mine[1] > 0

    async def answer(self) -> tuple[int, dict[str, Any]]:
        return await asyncio.to_thread(self._read_answer)

    def _read_answer(self) -> tuple[int, dict[str, Any]]:
        data = b""
        for _ in range(100_000):
            if b"\r\n\r\n" in data:
                head, rest = data.split(b"\r\n\r\n", 1)
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                if len(rest) >= length:
                    return int(head[9:12]), json.loads(rest[:length])
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} bytes of an answer")
            data += chunk
        raise AssertionError("the answer did not end")

    def close(self) -> None:
        self.sock.close()


async def _watch_match(url: str, account: Account, statuses: StatusLog) -> tuple[uuid.UUID, str]:
    """Create a match as the owner's device; returns it and its share link's token."""
    match_id, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with statuses.client(url) as http:
        credentials = Credentials(account.email, account.password, "owner")
        owner = SyncDevice("owner", HttpTransport(http, credentials), now_ms=time_ms)
        scripted = ScriptedDevice("owner", FakeClock(time_ms()))
        for change in new_match_changes(scripted, match_id, home, away):
            owner.create(change.table, dict(change.fields), record_id=change.id)
        assert await owner.push() == 3
        token = await credentials.access_token(http, "")
        answer = await http.get(
            f"/api/matches/{match_id}/share", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
    return match_id, str(answer.json()["token"])


def time_ms() -> int:
    return time.time_ns() // 1_000_000


async def _read_until_closed(ws: ClientConnection) -> int | None:
    """Read the viewer's messages (it must keep reading) until the server closes it."""
    with contextlib.suppress(ConnectionClosed):
        for _ in range(1_000_000):
            await ws.recv()
    return ws.close_code


async def test_sigterm_answers_the_push_in_flight_and_closes_live_sockets_with_1012(
    target: Target, tmp_path: Path
) -> None:
    """SIGTERM while devices push and a parent watches: the push the server had taken in is
    answered 200 and stored, the viewer's socket closes with 1012 (reconnect), the process
    exits, and after a restart every acknowledged change is there exactly once."""
    statuses = StatusLog()
    server = ServerProcess(server_env(target), tmp_path)
    await server.migrate()
    await server.start()
    try:
        account = await sign_up(server.url, statuses)
        match_id, share = await _watch_match(server.url, account, statuses)
        fleet = Fleet(server.url, account, statuses, tmp_path)
        fleet.match_id = match_id
        for i in range(2):
            fleet.add(f"phone-{i}", random.Random(i))
        async with statuses.client(server.url) as http:
            raw_token = await Credentials(account.email, account.password, "raw").access_token(
                http, ""
            )
        scripted = ScriptedDevice("raw", FakeClock(time_ms()))

        def big(count: int) -> PushRequest:
            fields: dict[str, Scalar] = {"match_id": str(match_id), "kind": "save"}
            return scripted.push(
                *(scripted.change("events", uuid.uuid4(), fields) for _ in range(count))
            )

        ws = await connect(f"ws://{HOST}:{server.port}/ws/match/{match_id}?token={share}")
        viewer = asyncio.ensure_future(_read_until_closed(ws))
        run = asyncio.ensure_future(fleet.run(150, time.monotonic() + DEADLINE_S, pace_s=0.01))
        try:
            await fleet.progress.wait_for(lambda: fleet.settled >= 60, DEADLINE_S, "60 changes")
            for _ in range(5):
                push = RawPush(server.port)
                try:
                    await push.send(raw_token, big(1000))
                    await until(push.taken_in, "the server to take the push in")
                    # A push answered before the signal proves nothing: send another.
                    if in_flight := not push.answered():
                        server.sigterm()
                        signalled = time.monotonic()
                    status, body = await push.answer()
                finally:
                    push.close()
                assert status == 200, body
                assert (body["applied"], body["acked_seq"]) == (1000, scripted.seq)
                if in_flight:
                    break
            assert in_flight, "every push was answered before the SIGTERM"
            exit_code = await server.exited()
            # uvicorn stops gracefully, then raises SIGTERM again so the status says why.
            assert exit_code in (0, -signal.SIGTERM), server.log_tail()
            assert time.monotonic() - signalled < GRACEFUL_S, server.log_tail()
            async with asyncio.timeout(DEADLINE_S):
                assert await viewer == 1012

            await server.start()
            await run
        finally:
            run.cancel()
            viewer.cancel()
            await ws.close()
        await fleet.settle(time.monotonic() + DEADLINE_S)
        verdict = await check_fleet(fleet)
        await fleet.aclose()
        log = await full_pull(server.url, account, statuses)
    finally:
        await server.aclose()
    assert verdict.made == 300
    assert (verdict.duplicates, verdict.losses, verdict.phantoms) == (0, 0, 0), verdict
    assert verdict.mismatches == [] and verdict.diverged == []
    assert sorted(c.seq for c in log if c.device_id == "raw") == list(range(1, scripted.seq + 1))
    assert not [s for s in statuses.statuses if s >= 500], statuses.statuses


# -- the database cut off -----------------------------------------------------------------------


class TcpRelay:
    """A TCP forwarder on 127.0.0.1 in front of PostgreSQL. ``cut`` resets every connection
    through it and stops listening (new connections are refused); ``listen`` again listens
    on the same port; ``stalled`` swallows everything."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.stalled = False
        """Forward nothing more, keeping the connections open (the database stops answering)."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.stalled:
                    continue  # swallowed, as by a hung host or a path that drops packets
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def close(self) -> None:
        await self.cut()
        assert self._server is not None
        await self._server.wait_closed()


async def test_a_database_outage_answers_503_with_retry_after_and_the_server_recovers(
    postgres_target: Target, tmp_path: Path
) -> None:
    """PostgreSQL cut off under a running server while devices push: every failed request
    is a 503 with Retry-After (never 500), /ready says so too, a push over a coach's live
    socket answers `error` 503 and the socket stays open, and once the database is back the
    same server process takes the pushes again; nothing is lost or duplicated."""
    relay = _relay_for(postgres_target)
    await relay.listen()
    statuses = StatusLog()
    server = ServerProcess(server_env(postgres_target.through(HOST, relay.port)), tmp_path)
    try:
        await server.migrate()
        await server.start()
        pid = server.pid
        account = await sign_up(server.url, statuses)
        coach = await _CoachSocket.open(server, account, statuses)
        fleet = Fleet(server.url, account, statuses, tmp_path)
        for i in range(3):
            fleet.add(f"phone-{i}", random.Random(i))
        progress = fleet.progress
        run = asyncio.ensure_future(fleet.run(150, time.monotonic() + DEADLINE_S, pace_s=0.01))
        try:
            await progress.wait_for(lambda: fleet.settled >= 60, DEADLINE_S, "60 changes")
            await relay.cut()
            await progress.wait_for(
                lambda: all(d.transport.unavailable >= 2 for d in fleet.devices),
                DEADLINE_S,
                "two 503s to every device",
            )
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                ready = await http.get("/ready")
                assert ready.status_code == 503 and ready.headers["retry-after"], ready.text
                refused = await coach.push("during-outage")
                assert refused["type"] == "error", refused
                assert refused["problem"]["status"] == 503, refused
                assert refused["problem"]["code"] == "database-unavailable", refused
                assert refused["problem"]["extensions"] == {"retry_after": 1}, refused
                await relay.listen()
                back = time.monotonic()
                await progress.wait_for(fleet.recovered_since(back), DEADLINE_S, "a push")
                assert (await http.get("/ready")).status_code == 200
            # The same set again, on the same socket: applied once, now that the database is back.
            accepted = await coach.push("after-outage")
            assert accepted["type"] == "ack", accepted
            assert (accepted["result"]["applied"], accepted["result"]["acked_seq"]) == (1, 1)
            await coach.close()
            await run
        finally:
            run.cancel()
        await fleet.settle(time.monotonic() + DEADLINE_S)
        verdict = await check_fleet(fleet)
        await fleet.aclose()
        assert server.running and server.pid == pid and server.starts == 1
    finally:
        await server.aclose()
        await relay.close()
    assert statuses.statuses[503] >= 6, statuses.statuses
    assert statuses.without_retry_after == 0
    assert statuses.server_errors == [], statuses.server_errors
    assert not [s for s in statuses.statuses if s >= 500 and s != 503], statuses.statuses
    assert verdict.made == 450
    assert (verdict.duplicates, verdict.losses, verdict.phantoms) == (0, 0, 0), verdict
    assert verdict.mismatches == [] and verdict.diverged == []


class _CoachSocket:
    """A coach device's live socket on a new match, pushing one change set (by message id)."""

    def __init__(self, ws: ClientConnection, change_set: PushRequest) -> None:
        self.ws = ws
        self.change_set = msgspec.json.encode(change_set).decode()

    @classmethod
    async def open(cls, server: ServerProcess, account: Account, statuses: StatusLog) -> Self:
        match_id, _share = await _watch_match(server.url, account, statuses)
        async with statuses.client(server.url) as http:
            token = await Credentials(account.email, account.password, "coach").access_token(
                http, ""
            )
        ws = await connect(f"ws://{HOST}:{server.port}/ws/match/{match_id}?token={token}")
        device = ScriptedDevice("coach", FakeClock(time_ms()))
        fields: dict[str, Scalar] = {"match_id": str(match_id), "kind": "save"}
        return cls(ws, device.push(device.change("events", uuid.uuid4(), fields)))

    async def push(self, message_id: str) -> dict[str, Any]:
        """Send the change set; the server's answer to it (other messages are skipped)."""
        await self.ws.send(f'{{"type":"push","id":"{message_id}","change_set":{self.change_set}}}')
        async with asyncio.timeout(DEADLINE_S):
            while True:
                message: dict[str, Any] = json.loads(await self.ws.recv())
                if message.get("id") == message_id:
                    return message

    async def close(self) -> None:
        await self.ws.close()


def _relay_for(target: Target) -> TcpRelay:
    url = make_url(target.url)
    return TcpRelay((url.host or HOST, url.port or 5432))


async def test_sigterm_exits_in_time_even_when_the_database_stops_answering(
    postgres_target: Target, tmp_path: Path
) -> None:
    """A server whose database stops answering (a hung host, a partition that drops packets)
    still exits within its graceful period after SIGTERM: no request is in flight, so there
    is nothing to wait for, and closing the pool's connections is bounded in time."""
    relay = _relay_for(postgres_target)
    await relay.listen()
    statuses = StatusLog()
    server = ServerProcess(server_env(postgres_target.through(HOST, relay.port)), tmp_path)
    try:
        await server.migrate()
        await server.start()
        account = await sign_up(server.url, statuses)
        await full_pull(server.url, account, statuses)  # the pool holds connections now
        relay.stalled = True
        server.sigterm()
        assert server.process is not None
        try:
            code: int | None = await asyncio.to_thread(server.process.wait, GRACEFUL_S)
        except subprocess.TimeoutExpired:
            code = None
        assert code is not None, f"still running {GRACEFUL_S:g} s after SIGTERM"
    finally:
        if server.running:
            server.kill()
        relay.stalled = False
        await relay.close()
