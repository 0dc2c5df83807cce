"""deploy/nginx.conf, the proxy of docker-compose.yml, checked and run with the real nginx.

There is no Docker here, so the file runs outside the compose network, where its upstream
host names (server-a, server-b) do not resolve and nginx refuses a configuration whose upstream
does not resolve. Each test therefore runs a copy in which exactly these lines differ, and the
copy is made by replacements that must each match once, so that a change to the file that
the copy no longer follows fails here instead of testing something else:

- `server server-a:8000` and `server server-b:8000` become two ports on 127.0.0.1;
- `listen 8000` becomes a free port on 127.0.0.1;
- the temporary-file paths point into the test's directory (nginx's compiled-in ones are
  system directories), and as root the workers stay root, so they can use that directory.

Then nginx -t checks the copy; and nginx runs it, unprivileged and in the foreground, in front
of two `sync-server serve` processes sharing PostgreSQL and Redis as in docker-compose.yml.

Outside CI a missing nginx skips these tests loudly; under CI=true it fails them, as
tests/conftest.py does for PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import anyio
import asyncpg
import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from sync_server.settings import ENV_VARS
from tests.conftest import (
    IN_CI,
    POSTGRES,
    REDIS,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    TEST_SECRET_KEY,
    _postgres_dsn,
)
from tests.live_fixtures import LiveMatch, Served, ended_with, free_port, live_match, receive
from tests.sync_fixtures import goal

ROOT: Final = Path(__file__).resolve().parents[1]
NGINX_CONF: Final = ROOT / "deploy" / "nginx.conf"
NGINX_INSTALL: Final = "apt-get install -y nginx-light (Debian's nginx; .ci/run does this)"
# Starting a server imports the whole app; PostgreSQL migrations take a moment more.
START_TIMEOUT_S: Final = 45.0
POLL_S: Final = 0.05


def find_nginx() -> str | None:
    # Debian installs it in /usr/sbin, which an unprivileged user's PATH often lacks.
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


NGINX: Final = find_nginx()


def require_nginx() -> str:
    """The nginx binary; skip (under CI=true, fail) the requesting test without one."""
    if NGINX is not None:
        return NGINX
    message = (
        f"nginx NOT INSTALLED; the proxy configuration was not checked. Install it: {NGINX_INSTALL}"
    )
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"deploy/nginx.conf should contain {old!r} exactly once"
    return text.replace(old, new)


def local_copy(prefix: Path, *, listen: int, upstreams: tuple[int, int]) -> Path:
    """deploy/nginx.conf as it runs here (see the module docstring); answers its path."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    text = replace_once(text, "server server-a:8000 ", f"server 127.0.0.1:{upstreams[0]} ")
    text = replace_once(text, "server server-b:8000 ", f"server 127.0.0.1:{upstreams[1]} ")
    text = replace_once(text, "listen 8000;", f"listen 127.0.0.1:{listen};")
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = replace_once(text, "\nhttp {\n", "\nhttp {\n" + temp_paths)
    if os.geteuid() == 0:
        # As root, nginx would switch its workers to an unprivileged user that cannot enter
        # the test's private temporary directory.
        text = "user root;\n" + text
    path = prefix / "nginx.conf"
    path.write_text(text, encoding="utf-8")
    return path


def nginx_test(nginx: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx, "-t", "-p", str(conf.parent), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_nginx_accepts_the_proxy_configuration(tmp_path: Path) -> None:
    nginx = require_nginx()
    conf = local_copy(tmp_path, listen=free_port(), upstreams=(free_port(), free_port()))
    checked = nginx_test(nginx, conf)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
    assert "test is successful" in checked.stderr


def test_the_check_would_catch_a_broken_configuration(tmp_path: Path) -> None:
    """The check above is not vacuous: the same harness refuses a configuration nginx would."""
    nginx = require_nginx()
    conf = local_copy(tmp_path, listen=free_port(), upstreams=(free_port(), free_port()))
    text = conf.read_text(encoding="utf-8")
    conf.write_text(text.replace("least_conn;", "least_conn_typo;"), encoding="utf-8")
    checked = nginx_test(nginx, conf)
    assert checked.returncode != 0
    assert "least_conn_typo" in checked.stderr


# --- the proxy running in front of two servers -----------------------------------------------


@dataclass
class Process:
    """A child process whose output goes to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    output: Path
    _handle: IO[bytes]

    @classmethod
    def start(cls, name: str, argv: list[str], output: Path, **options: Any) -> Process:
        handle = output.open("wb")
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, **options
        )
        return cls(name, popen, output, handle)

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        records = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                assert isinstance(record, dict)
                records.append(record)
        return records

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._handle.close()


@dataclass
class Stack:
    proxy: str
    servers: tuple[Process, Process]
    nginx: Process
    direct: tuple[str, str]

    def records(self, request_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The servers' JSON log records of one request, with the server that logged each."""
        return [
            (server.name, record)
            for server in self.servers
            for record in server.json_lines()
            if record.get("request_id") == request_id
        ]


def wait_until(condition: Callable[[], bool], what: str, *, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


def answers(url: str, process: Process) -> bool:
    process.check_running()
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def server_env(schema: str, public_url: str) -> dict[str, str]:
    """docker-compose.yml's server environment, pointed at the test's PostgreSQL and Redis."""
    env = {name: value for name, value in os.environ.items() if name not in ENV_VARS}
    env.update(
        DATABASE_URL=TEST_DATABASE_URL,
        DATABASE_SCHEMA=schema,
        SECRET_KEY=TEST_SECRET_KEY,
        ENVIRONMENT="production",
        # The compose file leaves signup closed; these tests found a club through the proxy.
        ALLOW_SIGNUP="true",
        PUBLIC_URL=public_url,
        REDIS_URL=TEST_REDIS_URL,
        TRUSTED_PROXIES="127.0.0.1",
        LOG_FORMAT="json",
    )
    return env


async def drop_schema(schema: str) -> None:
    connection = await asyncpg.connect(_postgres_dsn(TEST_DATABASE_URL), timeout=5)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """nginx on a free port in front of two servers, as docker-compose.yml runs them."""
    nginx = require_nginx()
    POSTGRES.require()
    REDIS.require()
    work = tmp_path_factory.mktemp("proxy")
    listen, ports = free_port(), (free_port(), free_port())
    proxy = f"http://127.0.0.1:{listen}"
    schema = f"p_{secrets.token_hex(6)}"
    env = server_env(schema, proxy)
    cli = [sys.executable, "-m", "sync_server.cli"]
    migrated = subprocess.run(
        [*cli, "migrate"], env=env, cwd=work, capture_output=True, text=True, timeout=60
    )
    started: list[Process] = []
    try:
        assert migrated.returncode == 0, migrated.stderr
        for name, port in zip(("server-a", "server-b"), ports, strict=True):
            started.append(
                Process.start(
                    name,
                    [*cli, "serve", "--port", str(port)],
                    work / f"{name}.log",
                    env=env,
                    cwd=work,
                )
            )
        conf = local_copy(work, listen=listen, upstreams=ports)
        checked = nginx_test(nginx, conf)
        assert checked.returncode == 0, checked.stderr
        foreground = f"daemon off; pid {work / 'nginx.pid'};"
        started.append(
            Process.start(
                "nginx",
                [nginx, "-p", str(work), "-c", str(conf), "-e", "stderr", "-g", foreground],
                work / "nginx.log",
            )
        )
        server_a, server_b, proxy_process = started
        direct = (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
        for url, process in ((direct[0], server_a), (direct[1], server_b)):
            wait_until(
                functools.partial(answers, f"{url}/ready", process),
                f"{process.name} to be ready",
                timeout_s=START_TIMEOUT_S,
            )
        wait_until(lambda: answers(f"{proxy}/health", proxy_process), "nginx to answer")
        yield Stack(proxy, (server_a, server_b), proxy_process, direct)
    finally:
        for process in reversed(started):
            process.stop()
        asyncio.run(drop_schema(schema))


def test_http_is_balanced_over_both_instances(stack: Stack) -> None:
    ids = [f"balance-{index}-{secrets.token_hex(4)}" for index in range(6)]
    # One keep-alive connection: one nginx worker, which alternates between idle instances.
    with httpx.Client(base_url=stack.proxy, timeout=5) as http:
        for request_id in ids:
            answer = http.get("/health", headers={"X-Request-ID": request_id})
            assert answer.status_code == 200
            assert answer.headers["x-request-id"] == request_id

    def served_by() -> set[str]:
        return {name for request_id in ids for name, _ in stack.records(request_id)}

    wait_until(lambda: served_by() == {"server-a", "server-b"}, "both instances to serve")


def test_the_proxy_and_the_servers_log_one_request_id(stack: Stack) -> None:
    answer = httpx.get(f"{stack.proxy}/health", timeout=5)
    request_id = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), "nginx's $request_id when none was sent"
    wait_until(lambda: bool(stack.records(request_id)), "the server's log line")

    def proxy_logged() -> bool:
        return any(record["request_id"] == request_id for record in stack.nginx.json_lines())

    wait_until(proxy_logged, "the proxy's log line")


def test_servers_see_the_client_behind_the_proxy_never_a_forged_address(stack: Stack) -> None:
    """nginx replaces X-Forwarded-For with the address it saw; the servers believe it because
    TRUSTED_PROXIES names the proxy. A second loopback address stands for a client elsewhere."""
    client = "127.0.0.2"
    try:
        transport = httpx.HTTPTransport(local_address=client)
        with httpx.Client(transport=transport, timeout=5) as http:
            http.get(f"{stack.proxy}/health")
    except httpx.ConnectError:  # no 127.0.0.2 here: the client shares the proxy's address
        client = "127.0.0.1"
        transport = httpx.HTTPTransport()
    request_id = f"forged-{secrets.token_hex(4)}"
    with httpx.Client(transport=transport, timeout=5) as http:
        answer = http.get(
            f"{stack.proxy}/health",
            headers={"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.7"},
        )
    assert answer.status_code == 200
    wait_until(lambda: bool(stack.records(request_id)), "the server's log line")
    [(_, record)] = stack.records(request_id)
    assert record["client"] == client


def test_bodies_over_2_mib_are_refused_by_the_proxy_as_by_the_servers(stack: Stack) -> None:
    limit = 2 * 1024 * 1024
    with httpx.Client(base_url=stack.proxy, timeout=10) as http:
        at_limit = http.post("/api/auth/login", content=b" " * limit)
        over = http.post("/api/auth/login", content=b" " * (limit + 1))
        metrics = http.get("/metrics")
    assert at_limit.status_code == 400, at_limit.text  # reached a server: not JSON
    assert over.status_code == 413
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json()["type"] == "/problems/request-entity-too-large"
    assert metrics.status_code == 403  # scraped per instance, never through the proxy


@pytest.fixture
async def live(stack: Stack) -> AsyncIterator[LiveMatch]:
    """A club with a match, made through the proxy."""
    async with httpx.AsyncClient(base_url=stack.proxy, timeout=10) as http:
        yield await live_match(http, Served(stack.proxy))


@pytest.mark.anyio
async def test_websockets_upgrade_through_the_proxy(live: LiveMatch) -> None:
    async with connect(live.ws_url(await live.token("phone-b"))) as ws:
        first = await receive(ws)
        assert first["type"] == "catchup"
    # A bad token is refused by a server (after the upgrade), not by nginx.
    async with connect(live.ws_url("not-a-token")) as ws:
        await ended_with(ws, 404, 4404)


async def sse_events(stream: httpx.Response) -> AsyncIterator[dict[str, str]]:
    event: dict[str, str] = {}
    async for line in stream.aiter_lines():
        if not line:
            if "event" in event:
                yield event
            event = {}
            continue
        name, _, value = line.partition(": ")
        event[name] = value


async def next_event(events: AsyncIterator[dict[str, str]], kind: str) -> dict[str, Any]:
    with anyio.fail_after(5):
        while (event := await anext(events))["event"] != kind:
            pass
    data: dict[str, Any] = json.loads(event["data"])
    return data


@pytest.mark.anyio
async def test_server_sent_events_stream_through_the_proxy_as_they_happen(
    stack: Stack, live: LiveMatch
) -> None:
    """Two viewers' streams: least_conn puts the second on the other instance, and a goal
    pushed to server-a directly reaches both, through Redis and through the proxy unbuffered;
    revoking the link ends both, and the link then answers 410 through the proxy."""
    share, link_id = await live.share_token()
    path = f"/api/watch/{share}/stream"
    async with (
        live.http.stream("GET", path) as first,
        live.http.stream("GET", path) as second,
        httpx.AsyncClient(base_url=stack.direct[0], timeout=10) as server_a,
    ):
        streams = [sse_events(first), sse_events(second)]
        for stream in (first, second):
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
        for events in streams:
            assert (await next_event(events, "snapshot"))["view"]["match"]["score"]["home"] == 0
        pushed = await server_a.post(
            "/api/sync/push",
            content=msgspec.json.encode(
                live.device.push(goal(live.device, live.match_id, live.home))
            ),
            headers={**await live.club.headers("phone-a"), "content-type": "application/json"},
        )
        assert pushed.status_code == 200, pushed.text
        for events in streams:
            delta = await next_event(events, "delta")
            assert delta["match"]["score"] == {"home": 1, "away": 0}
        await live.revoke(link_id)
        for events in streams:
            ended = await next_event(events, "error")
            assert ended["problem"]["status"] == 410
    gone = await live.http.get(path)
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"

    def stream_upstreams() -> set[str]:
        return {
            record["upstream"]
            for record in stack.nginx.json_lines()
            if record["path"] == "/api/watch/{token}/stream" and record["status"] == 200
        }

    # The proxy logs a stream when it ends: one on each instance, so one crossed instances.
    wait_until(lambda: len(stream_upstreams()) == 2, "both streams in the proxy's log")


def test_the_proxy_log_names_no_secret(stack: Stack) -> None:
    """Run last in this module: share tokens and WebSocket tokens went through the proxy above."""
    text = stack.nginx.text()
    assert "/api/watch/{token}/stream" in text
    assert "?token=" not in text and "token=" not in text
    assert not re.search(r"/watch/(?!\{token\}|assets/)[^/\"]+", text)
