"""What the benchmarks share: loopback ports and checks, CPU readings from ``/proc``, a minimal
keep-alive HTTP client, fresh databases, and servers started, awaited and stopped.

Used by ``bench/push_pull.py``, ``bench/fanout.py`` and the load generator of the latter.
Everything here talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HOST = "127.0.0.1"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
START_TIMEOUT_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024


# -- small helpers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 to 1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_kb(pid: int) -> float:
    """A process's resident memory in KiB (``/proc/<pid>/statm``); NaN once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return float("nan")


def loopback_only(url: str, what: str, program: str) -> None:
    """Exit unless ``url`` names a host on loopback: no benchmark loads another machine."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host not in LOOPBACK and not host.startswith("127."):
        sys.exit(f"{program}: refusing to use a {what} that is not on loopback: {host!r}")


# -- CPU readings -----------------------------------------------------------------------------


def process_stat_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), in clock ticks (10 ms steps)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (all cores)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def machine_steal_s() -> float:
    """CPU seconds the hypervisor gave the machine's cores to someone else (all cores). A
    virtual machine whose host is busy loses them: its processes wait and run colder."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return values[7] / CLK_TCK


def socket_peers(pid: int, remote_port: int) -> set[int]:
    """Local ports of the TCP connections that process ``pid`` holds to ``remote_port``."""
    inodes = set()
    with suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == remote_port:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


BACKENDS = "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])"


async def server_backends(monitor: Any, server_pid: int, db_port: int) -> list[int]:
    """The PostgreSQL backends serving the server's connections right now, by pid.

    ``monitor`` is an asyncpg connection of its own. Backends of other clients of the same
    cluster (other test runs, say) are left out.
    """
    ports = await asyncio.to_thread(socket_peers, server_pid, db_port)
    rows = await monitor.fetch(BACKENDS, list(ports)) if ports else []
    return [int(r["pid"]) for r in rows]


def backend_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the backends spent between two readings. A backend closed in between takes
    its CPU with it."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# -- HTTP over one keep-alive connection ------------------------------------------------------


class HttpConnection:
    """A minimal HTTP/1.1 keep-alive client: one request at a time, Content-Length bodies.

    The load generators run on the machine they measure: httpx cost the fan-out publisher
    about 2 ms of CPU per write, a fifth of a core at 100 writes/s.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one whole request (head and body) and read its answer: status, body."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        end = lower.find(b"\r\n", at + 2)
        body = await self.reader.readexactly(int(lower[at + 17 : end]))
        return status, body

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        """Close, and wait until the socket is closed."""
        self.writer.close()
        with suppress(OSError):
            await self.writer.wait_closed()


# -- databases --------------------------------------------------------------------------------

DatabaseKind = Literal["postgres", "sqlite"]


@dataclass
class Database:
    """Where servers keep their data: a fresh PostgreSQL schema or SQLite file per server."""

    kind: DatabaseKind
    postgres_url: str
    workdir: Path
    schemas: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.kind == "postgres" else "SQLite"

    def fresh_name(self, what: str) -> str:
        """A new schema (PostgreSQL, dropped by ``drop_schemas``) or file name (SQLite)."""
        name = f"bench_{what}_{secrets.token_hex(4)}"
        if self.kind == "postgres":
            self.schemas.append(name)
        return name

    async def drop_schemas(self) -> None:
        if not self.schemas:
            return
        import asyncpg

        conn = await asyncpg.connect(self.postgres_url, timeout=10)
        try:
            for schema in self.schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        self.schemas.clear()


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start-up:\n{server.log_tail()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=1) as s:
                s.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer /health in {START_TIMEOUT_S} s")


def started(server: Server) -> Server:
    """The server once it answers; stopped again if it never does."""
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def sync_server_command() -> list[str]:
    script = Path(sys.executable).with_name("sync-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sync_server.cli"]


# Settings the environment must not change under a benchmark (the relay's own `RELAY_…` and
# `WS_…` settings included: the benchmarks measure their defaults).
SERVER_SETTINGS = (
    "DATABASE_", "PUSH_", "PULL_", "REDIS_", "RATE_LIMIT_", "LOGIN_", "ACCESS_TOKEN_",
    "ALLOW_SIGNUP", "WS_", "RELAY_", "SHARE_LINK_",
)  # fmt: skip


def server_base_env() -> dict[str, str]:
    """The environment every benchmark's server starts from: this one without the settings
    a benchmark fixes itself, in production, signups open, limits that never refuse."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SERVER_SETTINGS)
        and k not in ("HOST", "PORT", "PUBLIC_URL", "CORS_ORIGINS", "TRUSTED_PROXIES")
    }
    env.update(
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(36),
        # Production refuses signups unless told; the benchmarks sign their clubs up.
        ALLOW_SIGNUP="true",
        # Every device, coach and viewer of a benchmark comes from 127.0.0.1, and many log in
        # as one user: far beyond the per-address limits meant for a touchline of phones.
        # The limits are still counted (in memory), they just never refuse.
        LOGIN_ATTEMPTS_PER_MINUTE="100000",
        RATE_LIMIT_PER_MINUTE="100000000",
    )
    return env


def start_sync_server(db: Database, tag: str, name: str, extra_env: Mapping[str, str]) -> Server:
    """``sync-server migrate`` and ``serve`` (one worker) on a fresh schema or SQLite file named
    for ``tag``, with the benchmark's own settings in ``extra_env``; returned once it answers."""
    env = server_base_env()
    env.update(extra_env)
    schema = db.fresh_name(tag)
    if db.kind == "postgres":
        env["DATABASE_URL"] = "postgresql+asyncpg://" + db.postgres_url.split("://", 1)[1]
        env["DATABASE_SCHEMA"] = schema
    else:
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{db.workdir / (schema + '.db')}"
    log_path = db.workdir / f"{schema}.log"
    with open(log_path, "wb") as log:
        subprocess.run(
            [*sync_server_command(), "migrate"],
            env=env,
            cwd=db.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
        )
        port = free_port()
        process = subprocess.Popen(
            [*sync_server_command(), "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            cwd=db.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return started(Server(name, process, port, log_path))
