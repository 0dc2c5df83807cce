"""Two server processes on one PostgreSQL database, relaying through LISTEN/NOTIFY and
again through Redis: what one instance merges reaches the other's sockets (issue: the league
runs several instances behind a load balancer)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from protocol.relay import Committed
from sync_server.app import relay_channel
from sync_server.db import create_engine
from sync_server.settings import Settings
from sync_server.store_pg import open_store
from tests.conftest import POSTGRES, SESSION_SCHEMA, TEST_DATABASE_URL, TEST_SECRET_KEY
from tests.live_fixtures import (
    STALL_PUSHES,
    LiveMatch,
    Served,
    ended_with,
    free_port,
    live_match,
    receive,
    receive_until,
    stalled_socket,
)
from tests.sync_fixtures import goal

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

SYNC_SERVER = Path(sys.executable).with_name("sync-server")
SCHEMA = f"{SESSION_SCHEMA}_relay"


def _env(redis_url: str | None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PORT", "HOST", "REDIS_URL", "CORS_ORIGINS", "DATABASE_SCHEMA"}
    }
    env.update(
        DATABASE_URL=TEST_DATABASE_URL,
        DATABASE_SCHEMA=SCHEMA,
        SECRET_KEY=TEST_SECRET_KEY,
        ENVIRONMENT="test",
        RATE_LIMIT_PER_MINUTE="100000",
        # Small, so that the stalled client below overflows its outbox in a second.
        RELAY_QUEUE_LIMIT="8",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@pytest.fixture(scope="module")
def migrated() -> Iterator[None]:
    POSTGRES.require()
    subprocess.run([str(SYNC_SERVER), "migrate"], env=_env(None), check=True, timeout=120)
    try:
        yield
    finally:
        import asyncio

        async def drop() -> None:
            dsn = TEST_DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://")
            connection = await asyncpg.connect(dsn)
            try:
                await connection.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            finally:
                await connection.close()

        asyncio.run(drop())


@pytest.fixture(scope="module", params=["postgres", "redis"])
def instances(
    request: pytest.FixtureRequest, migrated: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Served]]:
    """Instances A and B, relaying through PostgreSQL, then through Redis."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    logs = tmp_path_factory.mktemp(f"instances-{request.param}")
    with ExitStack() as stack:
        a, b = (stack.enter_context(_server(_env(redis_url), logs / f"{n}.log")) for n in "ab")
        yield a, b


class _server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env, self._log = env, log
        self._port = free_port()

    def __enter__(self) -> Served:
        self._out = self._log.open("wb")
        self._process = subprocess.Popen(
            [str(SYNC_SERVER), "serve", "--port", str(self._port), "--log-level", "info"],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # uvicorn says so once its socket listens; the output goes on to the log file.
        listening = threading.Event()
        self._drain = threading.Thread(target=self._copy_output, args=(listening,), daemon=True)
        self._drain.start()
        if not listening.wait(timeout=30) or self._process.poll() is not None:
            self.__exit__()
            raise RuntimeError(f"server did not start:\n{self._log.read_text()}")
        return Served(f"http://127.0.0.1:{self._port}")

    def _copy_output(self, listening: threading.Event) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._out.write(line)
            self._out.flush()
            if b"Uvicorn running on" in line:
                listening.set()
        listening.set()  # the process ended: nobody waits any longer

    def __exit__(self, *_: object) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._drain.join(timeout=15)
        assert self._process.stdout is not None
        self._process.stdout.close()
        self._out.close()


@pytest.fixture
async def two(instances: tuple[Served, Served]) -> AsyncIterator[tuple[LiveMatch, LiveMatch]]:
    """The same club and match seen through instance A and instance B."""
    a, b = instances
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=10) as http_a,
        httpx.AsyncClient(base_url=b.url, timeout=10) as http_b,
    ):
        on_a = await live_match(http_a, a)
        on_b = LiveMatch(http_b, b, on_a.club, on_a.device, on_a.match_id, on_a.home, on_a.away)
        on_b.club.client = http_b
        yield on_a, on_b


async def test_a_viewer_on_one_instance_sees_an_event_logged_through_the_other(
    two: tuple[LiveMatch, LiveMatch],
) -> None:
    on_a, on_b = two
    share, _ = await on_b.share_token()
    async with connect(on_a.ws_url(share)) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        change = goal(on_b.device, on_b.match_id, on_b.home)
        started = time.monotonic()
        await on_b.push(on_b.device.push(change))
        delta, _ = await receive_until(ws, "delta", within=1.0)
        assert [e["id"] for e in delta["events"]] == [str(change.id)]
        assert time.monotonic() - started < 1.0


async def test_a_coach_reconnecting_elsewhere_gets_exactly_the_three_it_missed(
    two: tuple[LiveMatch, LiveMatch],
) -> None:
    on_a, on_b = two
    token = await on_a.token("phone-b")
    async with connect(on_a.ws_url(token)) as ws:
        seq = (await receive(ws))["seq"]
    missed = [goal(on_a.device, on_a.match_id, on_a.home) for _ in range(3)]
    for change in missed:
        await on_a.push(on_a.device.push(change))
    async with connect(on_b.ws_url(token, since=seq)) as ws:
        catchup = await receive(ws)
        assert [c["id"] for c in catchup["changes"]] == [str(c.id) for c in missed]
        later = goal(on_a.device, on_a.match_id, on_a.home)
        await on_a.push(on_a.device.push(later))
        live, skipped = await receive_until(ws, "changes", within=1.0)
        assert [c["id"] for c in live["changes"]] == [str(later.id)]
        assert all(m["type"] in ("presence", "heartbeat") for m in skipped)


async def test_revoking_a_link_on_one_instance_closes_its_sockets_on_the_other(
    two: tuple[LiveMatch, LiveMatch],
) -> None:
    on_a, on_b = two
    share, link_id = await on_a.share_token()
    async with connect(on_b.ws_url(share)) as ws:
        await receive(ws)
        await on_a.revoke(link_id)
        assert (await ended_with(ws, 410, 4410))["code"] == "link-revoked"
    # The other instance resolved the token for that socket; it resolves it afresh now.
    async with connect(on_b.ws_url(share)) as again:
        assert (await ended_with(again, 410, 4410))["code"] == "share-link-expired"


async def test_presence_crosses_instances(two: tuple[LiveMatch, LiveMatch]) -> None:
    on_a, on_b = two
    async with connect(on_a.ws_url(await on_a.token("phone-a"))) as ws_a:
        await receive(ws_a)
        async with connect(on_b.ws_url(await on_b.token("phone-b"))) as ws_b:
            await receive(ws_b)
            with_b: set[str] = set()
            while "phone-b" not in with_b:
                presence, _ = await receive_until(ws_a, "presence", within=2.0)
                with_b = {d["device_id"] for d in presence["devices"]}
            assert with_b == {"phone-a", "phone-b"}


async def test_a_viewer_cannot_push_on_either_instance(two: tuple[LiveMatch, LiveMatch]) -> None:
    on_a, on_b = two
    share, _ = await on_a.share_token()
    for side in (on_a, on_b):
        async with connect(side.ws_url(share)) as ws:
            await receive(ws)
            push = side.device.push(goal(side.device, side.match_id, side.home))
            body = {"type": "push", "id": "p1", "change_set": msgspec.to_builtins(push)}
            await ws.send(json.dumps(body))
            error, _ = await receive_until(ws, "error")
            assert error["problem"]["status"] == 403
            side.device.seq -= 1  # that change set was never stored
    pulled = await on_a.http.post(
        "/api/sync/pull",
        json={"device_id": "phone-a", "include_own": True, "match_id": str(on_a.match_id)},
        headers=await on_a.club.headers("phone-a"),
    )
    assert [c["table"] for c in pulled.json()["changes"]] == ["matches"]


async def test_a_stalled_client_is_dropped_while_others_keep_their_latency(
    two: tuple[LiveMatch, LiveMatch],
) -> None:
    on_a, on_b = two
    stalled = stalled_socket(on_a.ws_url(await on_a.token("phone-s")))
    try:
        async with (
            connect(on_a.ws_url(await on_a.token("phone-x"))) as near,
            connect(on_b.ws_url(await on_b.token("phone-y"))) as far,
        ):
            await receive(near)
            await receive(far)
            latencies = []
            for _ in range(STALL_PUSHES):
                changes = [
                    goal(on_b.device, on_b.match_id, on_b.home, notes="x" * 8000) for _ in range(20)
                ]
                started = time.monotonic()
                await on_b.push(on_b.device.push(*changes))
                for ws in (near, far):
                    message, _ = await receive_until(ws, "changes")
                    assert len(message["changes"]) == 20
                latencies.append(time.monotonic() - started)
            metrics = (await on_a.http.get("/metrics")).text
    finally:
        stalled.close()
    assert 'touchline_relay_queue_drops_total{kind="coach"} 1.0' in metrics
    assert max(latencies) < 1.0, latencies


@pytest.fixture(scope="module")
def on_postgres(migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One instance relaying through PostgreSQL, where a push's commit sends its own notice."""
    with _server(_env(None), tmp_path_factory.mktemp("own-notices") / "a.log") as served:
        yield served


async def test_a_commit_whose_answer_was_lost_still_reaches_the_viewers(
    on_postgres: Served,
) -> None:
    """A push's notice travels inside its commit; if the instance that committed it never
    returned (the answer lost), its own notice, looked at a second or two later, relays it."""
    dsn = TEST_DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://")
    channel = relay_channel(Settings.from_env(_env(None)))
    notices: asyncio.Queue[Committed] = asyncio.Queue()
    listener = await asyncpg.connect(dsn)
    engine = create_engine(Settings.from_env(_env(None)), pooled=False)
    try:
        await listener.add_listener(
            channel, lambda *args: notices.put_nowait(msgspec.json.decode(args[3], type=Committed))
        )
        async with httpx.AsyncClient(base_url=on_postgres.url, timeout=10) as http:
            live = await live_match(http, on_postgres)
            share, _ = await live.share_token()
            async with connect(live.ws_url(share)) as ws:
                await receive(ws)
                await live.push(live.device.push(goal(live.device, live.match_id, live.home)))
                await receive_until(ws, "delta")
                own = await asyncio.wait_for(_last_notice(notices), 5)
                assert own.origin, "the push's commit sent the notice itself"
                # The same instance's next commit, as if its push had never come back: stored
                # and notified by the commit, never announced to the relay.
                store = open_store(engine, max_skew_ms=60_000)
                lost = goal(live.device, live.match_id, live.home)
                pushed = await store.push(own.club, live.device.push(lost))
                notice = msgspec.structs.replace(
                    own, seq=pushed.cursor, after=own.seq, at_ms=int(time.time() * 1000)
                )
                await listener.execute(
                    "SELECT pg_notify($1, $2)", channel, msgspec.json.encode(notice).decode()
                )
                delta, _ = await receive_until(ws, "delta", within=5.0)
                assert [e["id"] for e in delta["events"]] == [str(lost.id)]
    finally:
        await listener.close()
        await engine.dispose()


async def _last_notice(notices: asyncio.Queue[Committed]) -> Committed:
    notice = await notices.get()
    while not notices.empty():
        notice = notices.get_nowait()
    return notice
