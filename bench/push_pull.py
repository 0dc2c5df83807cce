"""Push throughput and pull latency of the sync server, beside the bare stack, in one run.

    .venv/bin/python bench/push_pull.py [--seconds 10] [--runs 3] [--databases sqlite,postgres]

For each database and each run, on free loopback ports, one uvicorn worker per server:

1. ``bare``: ``bench/bare_app.py`` (Litestar + raw asyncpg / aiosqlite, one insert per change);
2. ``ours, one club``: ``sync-server migrate`` + ``sync-server serve`` on a fresh schema (or
   SQLite file), 16 devices of ONE club (their pushes serialise on the club's row lock);
3. ``ours, 16 clubs``: the same on another fresh schema, one device per club (a league).

The same load generator drives all three: 16 devices, one keep-alive HTTP/1.1 connection
each, each pushing sets of 50 new ``events`` records with dense ``seq``s and HLCs, for a
warm-up and then a measured window. Then pull latency: a 150-event match is seeded through
the push endpoint and pulled match-scoped from cursor 0 by another device, sequentially. The
scenario order is reversed on every other run. See bench/README.md for the method and figures.

Our server wants an access token on every request, one per device: before the load starts,
each of its clubs is signed up (on its first device) and every other device logs in as the
same user, so signup and login cost nothing inside the window. Each request then pays for the
token (signature check and one indexed session lookup) inside the measurement, as a real
device's would; the bare stack still names the club in a ``Touchline-Club`` header and checks
nothing.

Traffic goes only to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import linecache
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):
    # Run as a script: `bench` is importable from the checkout (the editable install already
    # puts it on the path; this keeps the script working without it).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    HOST,
    START_TIMEOUT_S,
    Database,
    DatabaseKind,
    HttpConnection,
    Server,
    backend_delta,
    free_port,
    loopback_only,
    machine_busy_s,
    median,
    percentile,
    process_stat_cpu_s,
    server_backends,
    start_sync_server,
    started,
)

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

DEVICES = 16
BATCH = 50
PULL_EVENTS = 150
MAX_REQUESTS_PER_DEVICE = 100_000

KINDS = ("tackle", "interception", "key_pass", "ball_won", "ball_lost", "foul", "corner", "save")
NOTES = ("pressing high on the left", "won it back in midfield", "", "quick throw", "late")


# -- small helpers ---------------------------------------------------------------------------


async def backend_cpu(monitor: Any, server_pid: int, db_port: int) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the server's connections right now."""
    pids = await server_backends(monitor, server_pid, db_port)
    return {p: process_stat_cpu_s(p) for p in pids}


# -- HTTP over one keep-alive connection -----------------------------------------------------


def http_post(port: int, path: str, credential: str, body: bytes) -> bytes:
    """A POST with a JSON body; ``credential`` is one header line (without its CRLF)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"{credential}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# -- clubs and their credentials -------------------------------------------------------------

PASSWORD = "bench-password-" + secrets.token_hex(8)
NO_CREDENTIAL = "Accept: application/json"
"""A harmless header line for the requests that need no credential (signup, login)."""


async def bare_club(port: int, device_ids: list[str]) -> list[str]:
    """The bare stack's credential: a new club's id, the same header for every device."""
    club = str(uuid.uuid4())
    return [f"Touchline-Club: {club}" for _ in device_ids]


async def account_club(port: int, device_ids: list[str]) -> list[str]:
    """Our server's: sign a club up on the first device, log each other device in as the
    same user; one ``Authorization: Bearer`` line per device."""
    email = f"bench-{secrets.token_hex(6)}@example.org"
    conn = await HttpConnection.open(HOST, port)
    try:
        tokens = []
        for index, device_id in enumerate(device_ids):
            path, body = (
                ("/api/auth/signup", {"email": email, "team_name": "Riverside U12"})
                if index == 0
                else ("/api/auth/login", {"email": email})
            )
            body |= {"password": PASSWORD, "device_id": device_id}
            raw = http_post(port, path, NO_CREDENTIAL, _encode(body))
            status, answer = await conn.request(raw)
            if status not in (200, 201):
                raise RuntimeError(f"{path} for {device_id} failed: {status} {answer[:300]!r}")
            tokens.append(json.loads(answer)["access_token"])
    finally:
        await conn.aclose()
    return [f"Authorization: Bearer {token}" for token in tokens]


ClubMaker = Callable[[int, list[str]], Coroutine[Any, Any, list[str]]]


def new_devices(port: int, make_club: ClubMaker, device_ids: list[str]) -> list[Device]:
    """One club of ``device_ids``, each device holding its credential."""
    credentials = asyncio.run(make_club(port, device_ids))
    return [Device(d, c) for d, c in zip(device_ids, credentials, strict=True)]


# -- the devices -----------------------------------------------------------------------------

CHANGE = (
    '{"seq":%d,"hlc":"%015d-%05d","table":"events","id":"%s-%012x","fields":{'
    '"match_id":"%s","kind":"%s","team_id":"%s","period_number":%d,"clock_ms":%d,"notes":"%s"}}'
)


@dataclass
class Device:
    """A device that logs events for one match; its sets are built just before sending."""

    device_id: str
    credential: str
    """The header line that names the club: a bearer token (ours) or the club's id (bare)."""
    match_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    team_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    id_prefix: str = field(default_factory=lambda: str(uuid.uuid4())[:23])
    next_seq: int = 1
    wall: int = 0
    logical: int = 0

    def push_body(self, count: int) -> bytes:
        """The next change set: ``count`` new events, dense seqs, HLCs as a clock makes them."""
        physical = time.time_ns() // 1_000_000
        parts = []
        seq = self.next_seq
        for i in range(count):
            if physical > self.wall:
                self.wall, self.logical = physical, 0
            else:
                self.logical += 1
            n = seq + i
            parts.append(
                CHANGE
                % (
                    n,
                    self.wall,
                    self.logical,
                    self.id_prefix,
                    n,
                    self.match_id,
                    KINDS[n % len(KINDS)],
                    self.team_id,
                    1 + (n // 400) % 2,
                    (n * 7919) % 2_700_000,
                    NOTES[n % len(NOTES)],
                )
            )
        changes = ",".join(parts)
        return f'{{"device_id":"{self.device_id}","seen":{{}},"changes":[{changes}]}}'.encode()


@dataclass
class LoadResult:
    requests: int
    window_s: float
    latencies_ms: list[float]
    errors: list[str]
    server_cpu_s: float
    generator_cpu_s: float
    postgres_cpu_s: float
    machine_busy_s: float
    backends_opened: int | None
    backends_closed: int | None

    @property
    def req_s(self) -> float:
        return self.requests / self.window_s

    @property
    def rows_s(self) -> float:
        return self.req_s * BATCH

    def row(self) -> dict[str, Any]:
        rows = self.requests * BATCH or 1
        return {
            "requests": self.requests,
            "req_s": self.req_s,
            "rows_s": self.rows_s,
            "p50_ms": percentile(self.latencies_ms, 0.50),
            "p99_ms": percentile(self.latencies_ms, 0.99),
            "errors": len(self.errors),
            "first_error": self.errors[0] if self.errors else None,
            "server_us_per_row": self.server_cpu_s / rows * 1e6,
            "postgres_us_per_row": self.postgres_cpu_s / rows * 1e6,
            # Everything else on the machine: other processes, kernel threads (noise).
            "rest_us_per_row": self.rest_cpu_s / rows * 1e6,
            "generator_us_per_row": self.generator_cpu_s / rows * 1e6,
            "server_cores": self.server_cpu_s / self.window_s,
            "generator_cores": self.generator_cpu_s / self.window_s,
            "postgres_cores": self.postgres_cpu_s / self.window_s,
            "rest_cores": self.rest_cpu_s / self.window_s,
            "machine_cores": self.machine_busy_s / self.window_s,
            "backends_opened": self.backends_opened,
            "backends_closed": self.backends_closed,
        }

    @property
    def rest_cpu_s(self) -> float:
        mine = self.server_cpu_s + self.generator_cpu_s + self.postgres_cpu_s
        return max(0.0, self.machine_busy_s - mine)


async def drive_push(
    port: int,
    devices: list[Device],
    *,
    warmup_s: float,
    seconds: float,
    server_pid: int,
    on_window_start: Callable[[], None] | None = None,
    postgres_url: str | None = None,
) -> LoadResult:
    """All devices push in a loop; requests completing inside the window are counted."""
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    clock_now = time.perf_counter
    start = clock_now()
    window_start = start + warmup_s
    window_end = window_start + seconds
    latencies: list[float] = []
    errors: list[str] = []
    counted = [0]
    samples: dict[str, tuple[float, float, float]] = {}
    backends: dict[str, dict[int, float]] = {}

    def sample() -> tuple[float, float, float]:
        return process_stat_cpu_s(server_pid), time.process_time(), machine_busy_s()

    async def device_loop(device: Device) -> None:
        conn = await HttpConnection.open(HOST, port)
        try:
            for _ in range(MAX_REQUESTS_PER_DEVICE):
                if clock_now() >= window_end:
                    return
                raw = http_post(port, "/api/sync/push", device.credential, device.push_body(BATCH))
                t0 = clock_now()
                status, body = await conn.request(raw)
                t1 = clock_now()
                if status != 200:
                    # The set may or may not be stored: this device's seqs are now uncertain.
                    errors.append(f"{status} {body[:300]!r}")
                    return
                device.next_seq += BATCH
                if window_start <= t1 < window_end:
                    counted[0] += 1
                    latencies.append((t1 - t0) * 1000)
        finally:
            await conn.aclose()

    async def clock() -> None:
        monitor = None
        if postgres_url is not None:
            import asyncpg

            # The backends serving the server: their CPU, and the pool's churn.
            monitor = await asyncpg.connect(postgres_url)
            db_port = urllib.parse.urlsplit(postgres_url).port or 5432
        try:
            await asyncio.sleep(max(0.0, window_start - clock_now()))
            samples["start"] = sample()
            if monitor is not None:
                backends["start"] = await backend_cpu(monitor, server_pid, db_port)
            if on_window_start is not None:
                on_window_start()
            await asyncio.sleep(max(0.0, window_end - clock_now()))
            samples["end"] = sample()
            if monitor is not None:
                backends["end"] = await backend_cpu(monitor, server_pid, db_port)
        finally:
            if monitor is not None:
                await monitor.close()

    tasks = [asyncio.ensure_future(device_loop(d)) for d in devices]
    await asyncio.wait_for(
        asyncio.gather(clock(), *tasks), timeout=warmup_s + seconds + START_TIMEOUT_S
    )
    a, b = samples["start"], samples["end"]
    before, after = backends.get("start", {}), backends.get("end", {})
    # A backend closed inside the window takes its CPU with it; the count says how many.
    postgres = backend_delta(before, after)
    return LoadResult(
        requests=counted[0],
        window_s=seconds,
        latencies_ms=latencies,
        errors=errors,
        server_cpu_s=b[0] - a[0],
        generator_cpu_s=b[1] - a[1],
        postgres_cpu_s=postgres,
        machine_busy_s=b[2] - a[2],
        backends_opened=len(after.keys() - before.keys()) if backends else None,
        backends_closed=len(before.keys() - after.keys()) if backends else None,
    )


# -- pull ------------------------------------------------------------------------------------


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def seed_match_sets(device_id: str) -> tuple[str, list[bytes]]:
    """Two teams, a match and its 150 events, as change sets of at most 50 (dense seqs)."""
    match_id, home, away = (str(uuid.uuid4()) for _ in range(3))
    players = [str(uuid.uuid4()) for _ in range(22)]
    kickoff_ms = time.time_ns() // 1_000_000 - 90 * 60_000
    records: list[tuple[str, str, dict[str, Any]]] = [
        ("teams", home, {"name": "Riverside U12", "short_name": "RIV", "is_opponent": False}),
        ("teams", away, {"name": "Hillcrest U12", "short_name": "HIL", "is_opponent": True}),
        (
            "matches",
            match_id,
            {
                "home_team_id": home,
                "away_team_id": away,
                "kickoff_ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(kickoff_ms / 1000)),
                "competition": "County League",
                "venue": "Riverside Park, pitch 3",
                "duration_mins": 60,
                "period_format": "half",
            },
        ),
    ]
    for i in range(PULL_EVENTS):
        ours = i % 3 != 0
        fields: dict[str, Any] = {
            "match_id": match_id,
            "kind": KINDS[i % len(KINDS)] if i % 25 else "goal",
            "team_id": home if ours else away,
            "period_number": 1 + i // 75,
            "clock_ms": (i % 75) * 24_000 + 1_234,
            "x": round(10 + (i * 37) % 80 + 0.5, 1),
            "y": round(5 + (i * 53) % 90 + 0.25, 2),
            "created_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(kickoff_ms / 1000 + i * 24)
            ),
        }
        if ours:
            fields["player_id"] = players[i % len(players)]
            fields["sentiment"] = (i % 9) - 4
        if i % 4 == 0:
            fields["notes"] = NOTES[i % len(NOTES)] or "good shape"
        records.append(("events", str(uuid.uuid4()), fields))
    wall = time.time_ns() // 1_000_000
    bodies = []
    for start in range(0, len(records), BATCH):
        changes = [
            {
                "seq": start + i + 1,
                "hlc": f"{wall:015d}-{start + i:05d}",
                "table": table,
                "id": record_id,
                "fields": fields,
            }
            for i, (table, record_id, fields) in enumerate(records[start : start + BATCH])
        ]
        bodies.append(_encode({"device_id": device_id, "seen": {}, "changes": changes}))
    return match_id, bodies


@dataclass
class PullResult:
    latencies_ms: list[float]
    changes: int
    raw_bytes: int
    gzip_bytes: int

    def row(self) -> dict[str, Any]:
        return {
            "p50_ms": percentile(self.latencies_ms, 0.50),
            "p99_ms": percentile(self.latencies_ms, 0.99),
            "changes": self.changes,
            "raw_bytes": self.raw_bytes,
            "gzip_bytes": self.gzip_bytes,
        }


async def measure_pull(port: int, make_club: ClubMaker, *, warmup: int, count: int) -> PullResult:
    seeder, reader = await make_club(port, ["bench-seed", "bench-reader"])
    match_id, bodies = seed_match_sets("bench-seed")
    conn = await HttpConnection.open(HOST, port)
    try:
        for body in bodies:
            status, answer = await conn.request(http_post(port, "/api/sync/push", seeder, body))
            if status != 200:
                raise RuntimeError(f"seeding the pull match failed: {status} {answer[:300]!r}")
        pull = http_post(
            port,
            "/api/sync/pull",
            reader,
            _encode({"device_id": "bench-reader", "cursor": 0, "match_id": match_id, "limit": 500}),
        )
        latencies = []
        body = b""
        for i in range(warmup + count):
            t0 = time.perf_counter()
            status, body = await conn.request(pull)
            t1 = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"pull failed: {status} {body[:300]!r}")
            if i >= warmup:
                latencies.append((t1 - t0) * 1000)
        page = json.loads(body)
        # The match record and its events; teams (the signup's one too) are club-wide.
        expected = PULL_EVENTS + 1
        if len(page["changes"]) != expected or page["has_more"]:
            raise RuntimeError(f"pull returned {len(page['changes'])} changes, not {expected}")
        return PullResult(latencies, len(page["changes"]), len(body), len(gzip.compress(body, 6)))
    finally:
        await conn.aclose()


# -- servers ---------------------------------------------------------------------------------


def start_ours(db: Database, tag: str) -> Server:
    return start_sync_server(db, tag, f"ours ({db.label}, {tag})", {})


def start_bare(db: Database) -> Server:
    name = db.fresh_name("bare")
    port = free_port()
    target = (
        ["--postgres", db.postgres_url, "--schema", name]
        if db.kind == "postgres"
        else ["--sqlite", str(db.workdir / (name + ".db"))]
    )
    log_path = db.workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "bare_app.py"), "--port", str(port), *target],
            cwd=db.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return started(Server(f"bare ({db.label})", process, port, log_path))


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# -- profiling -------------------------------------------------------------------------------


def start_profiler(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


CATEGORIES = (
    ("SQLAlchemy (statement build, compile, params, results)", ("/sqlalchemy/",)),
    ("asyncpg (Cython encode/decode, protocol, socket)", ("/asyncpg/",)),
    ("aiosqlite / sqlite3 (driver thread)", ("/aiosqlite/", "/sqlite3/")),
    ("protocol/ (plan_push: checks, clocks, merge)", ("/protocol/",)),
    ("sync_server/ (store rows, routes)", ("/sync_server/",)),
    ("Litestar (routing, DI, msgspec decode/encode)", ("/litestar/", "/msgspec/")),
    ("uvicorn / httptools", ("/uvicorn/", "/httptools/")),
    ("greenlet bridge", ("/greenlet/",)),
)
PROJECT = ("/sync_server/", "/protocol/")


def _frame_file(frame: str) -> str:
    """'func (path/file.py:123)' -> '/path/file.py'."""
    inner = frame[frame.rfind("(") + 1 :] if "(" in frame else frame
    return "/" + inner.rsplit(":", 1)[0]


def _frame_name(frame: str) -> str:
    file = _frame_file(frame)
    return f"{frame.split(' (')[0]} ({file.split('site-packages/')[-1].lstrip('/')})"


def _idle(frames: list[str]) -> str | None:
    """Why a sample is not CPU work of ours, when py-spy could not tell idle from busy."""
    if not frames:
        return None
    leaf = frames[-1]
    if leaf.startswith("Runner.run ("):
        # Nothing but the event loop's own C code: mostly epoll_wait, some uvloop socket I/O.
        return "event loop (uvloop C code: waiting, socket I/O)"
    if leaf.startswith("_connection_worker_thread (") and "aiosqlite" in leaf:
        line = int(leaf.rsplit(":", 1)[1].rstrip(")"))
        import aiosqlite.core

        if ".get(" in linecache.getline(aiosqlite.core.__file__, line):
            return "aiosqlite threads waiting for work"
    return None


def summarize_profile(path: Path, top: int = 14) -> str:
    """A py-spy raw profile, summarised.

    Self time is charged to the nearest frame of a known package, so the standard library
    (uuid, re, dataclasses, contextlib) counts for whoever called it. py-spy's idle detection
    does not work on every machine, so samples of threads that only wait are recognised by
    their leaf frame and left out of the percentages.
    """
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if count_text.isdigit():
            frames = [f for f in stack.split(";") if f.strip()]
            stacks.append((frames, int(count_text)))
    idle: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    project: Counter[str] = Counter()
    sqlalchemy: Counter[str] = Counter()
    for frames, count in stacks:
        why = _idle(frames)
        if why:
            idle[why] += count
            continue
        files = [_frame_file(f) for f in frames]
        owner = "event loop, stdlib" if frames else "no Python frame (C: GC, drivers)"
        for file in reversed(files):
            match = next(
                (name for name, needles in CATEGORIES if any(n in file for n in needles)), None
            )
            if match:
                owner = match
                break
        if owner.startswith("aiosqlite") and frames[-1].startswith("_connection_worker_thread"):
            owner = "SQLite C code in aiosqlite threads (queries, busy-wait sleeps)"
        by_package[owner] += count
        for frame in {
            f
            for f, file in zip(frames, files, strict=True)
            if any(p in file for p in PROJECT) and not file.endswith("/cli.py")
        }:
            project[_frame_name(frame)] += count
        for frame in {f for f, file in zip(frames, files, strict=True) if "/sqlalchemy/" in file}:
            sqlalchemy[_frame_name(frame)] += count
    busy = sum(by_package.values()) or 1
    everything = busy + sum(idle.values())
    lines = [f"{everything} samples; left out as waiting:"]
    lines += [f"  {100 * c / everything:5.1f}%  {name}" for name, c in idle.most_common()]
    lines.append(f"the other {busy} samples, self time by package:")
    lines += [f"  {100 * c / busy:5.1f}%  {name}" for name, c in by_package.most_common()]
    lines.append("project functions, inclusive (SQLAlchemy's sync half runs in a greenlet whose")
    lines.append("samples have no project frame above them, so these undercount database calls):")
    lines += [f"  {100 * c / busy:5.1f}%  {name}" for name, c in project.most_common(top)]
    lines.append("SQLAlchemy functions, inclusive:")
    lines += [f"  {100 * c / busy:5.1f}%  {name}" for name, c in sqlalchemy.most_common(8)]
    return "\n".join(lines)


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    warmup: float
    runs: int
    databases: list[DatabaseKind]
    postgres_url: str
    pull_count: int
    pull_warmup: int
    py_spy: str | None
    profile_dir: Path
    json_path: Path | None


def push_scenario(
    server: Server,
    devices: list[Device],
    opts: Options,
    profile_name: str | None,
    *,
    postgres: bool,
) -> dict[str, Any]:
    profiler: list[subprocess.Popen[bytes]] = []

    def on_window_start() -> None:
        if opts.py_spy and profile_name:
            out = opts.profile_dir / f"{profile_name}.txt"
            profiler.append(start_profiler(opts.py_spy, server.process.pid, opts.seconds, out))

    result = asyncio.run(
        drive_push(
            server.port,
            devices,
            warmup_s=opts.warmup,
            seconds=opts.seconds,
            server_pid=server.process.pid,
            on_window_start=on_window_start,
            postgres_url=opts.postgres_url if postgres else None,
        )
    )
    for p in profiler:
        try:
            p.wait(timeout=opts.seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    row = result.row()
    if result.errors:
        print(f"    ! {server.name}: {len(result.errors)} errors, first: {result.errors[0]}")
        print(server.log_tail())
    return row


def pull_scenario(server: Server, make_club: ClubMaker, opts: Options) -> dict[str, Any]:
    return asyncio.run(
        measure_pull(server.port, make_club, warmup=opts.pull_warmup, count=opts.pull_count)
    ).row()


def one_run(db: Database, opts: Options, run: int) -> dict[str, Any]:
    run_tag = secrets.token_hex(3)
    results: dict[str, Any] = {}
    pg = db.kind == "postgres"

    device_ids = [f"bench-{run_tag}-d{i:02d}" for i in range(DEVICES)]

    def league(port: int, make_club: ClubMaker) -> list[Device]:
        """One club per device."""
        return [d for i in device_ids for d in new_devices(port, make_club, [i])]

    def bare() -> None:
        with running(start_bare(db)) as server:
            devices = league(server.port, bare_club)
            results["bare"] = push_scenario(server, devices, opts, None, postgres=pg)
            results["bare_pull"] = pull_scenario(server, bare_club, opts)

    def ours_one_club() -> None:
        with running(start_ours(db, "club")) as server:
            devices = new_devices(server.port, account_club, device_ids)
            name = f"{db.kind}-one-club-run{run}"
            results["one_club"] = push_scenario(server, devices, opts, name, postgres=pg)

    def ours_league() -> None:
        with running(start_ours(db, "league")) as server:
            devices = league(server.port, account_club)
            name = f"{db.kind}-16-clubs-run{run}"
            results["league"] = push_scenario(server, devices, opts, name, postgres=pg)
            results["ours_pull"] = pull_scenario(server, account_club, opts)

    order: list[Callable[[], None]] = [bare, ours_one_club, ours_league]
    if run % 2 == 1:
        order.reverse()
    try:
        for step in order:
            step()
    finally:
        asyncio.run(db.drop_schemas())
    return results


SCENARIOS = (("bare", "bare stack"), ("one_club", "ours, one club"), ("league", "ours, 16 clubs"))


def print_run(db: Database, run: int, r: dict[str, Any]) -> None:
    bare = r["bare"]["rows_s"]
    print(f"  run {run + 1}:")
    for key, label in SCENARIOS:
        s = r[key]
        ratio = s["rows_s"] / bare if bare else float("nan")
        pg = f" postgres {s['postgres_us_per_row']:5.1f}" if db.kind == "postgres" else ""
        churn = (
            ""
            if s["backends_opened"] is None
            else f" db conns +{s['backends_opened']}/-{s['backends_closed']}"
        )
        print(
            f"    {label:<15} {s['rows_s']:>7,.0f} rows/s {s['req_s']:>5,.0f} req/s"
            f" p50 {s['p50_ms']:6.1f} ms p99 {s['p99_ms']:6.1f} ms {ratio:4.0%} of bare"
            f" | CPU µs/row: server {s['server_us_per_row']:5.1f}{pg}"
            f" generator {s['generator_us_per_row']:3.1f}"
            f" | other load {s['rest_cores']:.2f} cores{churn}"
            + (f" ERRORS {s['errors']}" if s["errors"] else "")
        )
    for key, label in (("bare_pull", "bare pull"), ("ours_pull", "ours pull")):
        p = r[key]
        print(
            f"    {label:<15} p50 {p['p50_ms']:6.2f} ms  p99 {p['p99_ms']:6.2f} ms"
            f"  ({p['changes']} changes, {p['raw_bytes']:,} B, {p['gzip_bytes']:,} B gzipped)"
        )


def print_summary(db: Database, runs: list[dict[str, Any]], opts: Options) -> None:
    n = len(runs)
    pg = db.kind == "postgres"
    print(
        f"\n{db.label}: {DEVICES} devices x {BATCH} changes per push, {opts.seconds:g} s "
        f"measured per scenario, median of {n} run{'s' if n != 1 else ''}"
    )
    print(
        f"  {'scenario':<15} {'rows/s':>7} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'vs bare':>7} {'server µs/row':>13}" + (f" {'postgres µs/row':>15}" if pg else "")
    )
    for key, label in SCENARIOS:

        def m(field_name: str, key: str = key) -> float:
            return median([r[key][field_name] for r in runs])

        ratio = median([r[key]["rows_s"] / r["bare"]["rows_s"] for r in runs])
        print(
            f"  {label:<15} {m('rows_s'):>7,.0f} {m('req_s'):>6,.0f} {m('p50_ms'):>7.1f}"
            f" {m('p99_ms'):>7.1f} {ratio:>7.0%} {m('server_us_per_row'):>13.1f}"
            + (f" {m('postgres_us_per_row'):>15.1f}" if pg else "")
        )
    gen = median([r[k]["generator_cores"] for r in runs for k, _ in SCENARIOS])
    other = median([r[k]["rest_cores"] for r in runs for k, _ in SCENARIOS])
    errors = sum(r[k]["errors"] for r in runs for k, _ in SCENARIOS)
    print(
        f"  load generator {gen:.2f} of a core, other load on the machine {other:.2f} cores"
        f" (medians); failed pushes {errors} in all"
    )
    for key, label in (("bare_pull", "bare"), ("ours_pull", "ours")):

        def p(field_name: str, key: str = key) -> float:
            return median([r[key][field_name] for r in runs])

        print(
            f"  pull of a {PULL_EVENTS}-event match, {label}: p50 {p('p50_ms'):.2f} ms,"
            f" p99 {p('p99_ms'):.2f} ms; {p('raw_bytes'):,.0f} B raw,"
            f" {p('gzip_bytes'):,.0f} B gzipped"
        )
    pull_ratio = median([r["ours_pull"]["p50_ms"] / r["bare_pull"]["p50_ms"] for r in runs])
    print(f"  pull p50, ours / bare: {pull_ratio:.1f}x")


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description="Push throughput and pull latency beside the bare stack, measured together."
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window (10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up before it (3)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are printed (3)")
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"loopback PostgreSQL (default $BENCH_POSTGRES_URL or {DEFAULT_POSTGRES})",
    )
    parser.add_argument("--pull-count", type=int, default=300, help="timed pulls (300)")
    parser.add_argument("--pull-warmup", type=int, default=30, help="untimed pulls first (30)")
    parser.add_argument(
        "--profile-with",
        metavar="PY_SPY",
        help="py-spy executable: profile our server during each push window (slows it down)",
    )
    parser.add_argument("--profile-dir", type=Path, default=None, help="where profiles go")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = parser.parse_args(argv)
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if not databases or any(d not in ("sqlite", "postgres") for d in databases):
        parser.error("--databases takes sqlite and/or postgres")
    if not 1 <= args.runs <= 20 or not 1 <= args.seconds <= 300 or not 0 <= args.warmup <= 60:
        parser.error("--runs 1..20, --seconds 1..300, --warmup 0..60")
    if not 1 <= args.pull_count <= 10_000 or not 0 <= args.pull_warmup <= 1000:
        parser.error("--pull-count 1..10000, --pull-warmup 0..1000")
    if "postgres" in databases:
        loopback_only(args.postgres_url, "database", "push_pull")
    profile_dir = args.profile_dir or Path(tempfile.gettempdir())
    if args.profile_with:
        profile_dir.mkdir(parents=True, exist_ok=True)
        profile_dir = Path(tempfile.mkdtemp(prefix="touchline-profile-", dir=profile_dir))
    return Options(
        seconds=args.seconds,
        warmup=args.warmup,
        runs=args.runs,
        databases=cast("list[DatabaseKind]", databases),
        postgres_url=args.postgres_url,
        pull_count=args.pull_count,
        pull_warmup=args.pull_warmup,
        py_spy=args.profile_with,
        profile_dir=profile_dir,
        json_path=args.json,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    with suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(
        f"push/pull benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{opts.runs} run(s) x {opts.warmup:g} s warm-up + {opts.seconds:g} s per scenario"
        + (" [PROFILED: py-spy slows our server]" if opts.py_spy else "")
    )
    all_results: dict[DatabaseKind, list[dict[str, Any]]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="touchline-bench-"))
    try:
        for kind in opts.databases:
            db = Database(kind, opts.postgres_url, workdir)
            print(f"\n{db.label}")
            runs = []
            for run in range(opts.runs):
                result = one_run(db, opts, run)
                print_run(db, run, result)
                runs.append(result)
            all_results[kind] = runs
        for kind, runs in all_results.items():
            print_summary(Database(kind, opts.postgres_url, workdir), runs, opts)
        if opts.py_spy:
            for profile in sorted(opts.profile_dir.glob("*.txt")):
                print(f"\nprofile {profile}:\n{summarize_profile(profile)}")
        if opts.json_path:
            opts.json_path.write_text(json.dumps(all_results, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
