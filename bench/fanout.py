"""Fan-out of live match events to viewers, beside a bare broadcast server, in one run.

    .venv/bin/python bench/fanout.py                      # both scenarios, 3 runs (~15 min)
    .venv/bin/python bench/fanout.py --quick              # smoke run, ~200 viewers (~1.5 min)
    .venv/bin/python bench/fanout.py --scenarios burst --runs 1
    .venv/bin/python bench/fanout.py --viewers 2000 --matches 200 --clubs 20 --rate 40

Per scenario and run, on free loopback ports, three servers get the same load one after the
other (the order alternates between runs):

- ``bare``: ``bench/fanout_bare.py``, a ``websockets`` broadcast server (uvloop);
- ``bare-commit``: the same server committing each published message to PostgreSQL (one
  ``INSERT``, its own transaction) before broadcasting it: the floor for a relay that sends
  only what is durably stored (skipped when PostgreSQL is not reachable);
- ``touchline``: ``sync-server migrate`` + ``sync-server serve`` (one worker) on a fresh
  PostgreSQL schema (``--database``; SQLite when PostgreSQL is not reachable), viewers on
  ``/ws/match/{id}?token=<share token>``. Signup, rate and token-lifetime limits are raised
  (every socket comes from 127.0.0.1); the relay's own settings keep their defaults.

**Scenarios.**

- ``steady``: 5,000 viewers over 500 live matches (50 clubs of 10 matches; each match made
  through the REST API, kicked off, its clock started, its share link minted), 100 new events
  per second in all, round-robin over the matches (kinds that change no score); 5 s warm-up,
  then a 20 s window. Targets: merge-to-viewer p99 under 50 ms, nothing lost.
- ``burst``: 2,000 viewers on one match; a goal every second, one untimed and then 5 timed.
  Targets: every viewer gets every goal, p99 under 150 ms.

Both: server CPU per delivered message within 1.5x the bare server's; memory per idle viewer
connection, measured.

**Phases of one measurement.** (1) *Writes alone* (steady): the same writes at the same rate
with no viewer connected, 10 s: the server's CPU for the writes themselves. (2) Viewers
connect: 2% of them first, then the server's RSS is read, then the rest, then RSS again after
2 s; the difference over the viewers added is the memory per idle viewer. (3) *Idle*, 20 s
(one period of the servers' 20 s keepalive pings): the CPU that connected, idle viewers cost.
(4) The measured phase: warm-up, then the window. (5) Until every copy has arrived (or none
has for 3 s, at most 20 s), then the viewers report.

**Load generator**, in separate processes (``bench/fanout_load.py``, spawned, uvloop): ``--procs``
viewer processes holding the sockets, and one publisher. The publisher writes each event on
its schedule, to Touchline as the club's coach device: by default a one-change sync push over
the coach's live socket of the match (PROTOCOL.md §17.5, what a live coach's app does; one
socket per device and match), with ``--writes push`` the same push as
``POST /api/sync/push``, with ``--writes rest`` ``POST /api/matches/{id}/events`` (up to 32
writes in flight). The bare server gets a ``<match>\\n<json>`` frame on ``/pub`` whose json
has the shape and size of the message Touchline sends viewers for the event (a ``delta``; a
goal's carries the match header too).

**Figures.**

- Latency: the viewer's arrival time minus the publisher's send time (``time.time_ns`` in
  both processes, one clock). For Touchline it includes the whole write (merge, commit, the
  answer, then the relay), so it is conservative; "after the answer" is arrival minus the
  moment the write was answered. Percentiles over every (event, viewer) pair of the window.
- Lost: an (event, viewer of its match) pair where the viewer was connected and never got
  it (cut-off viewers count); writes the server refused are reported, not expected.
- CPU per delivered message: the server process's CPU over the window (scheduler ns of all its
  threads) over every frame the viewers received in the window (heartbeats included), and
  "relay": the same minus the idle CPU (per second x window) and the writes-alone CPU (per
  write x writes in the window) over the frames the writes caused (all but heartbeats).
  PostgreSQL's backends serving the server are counted apart. "other" is the rest of the
  machine's busy time.

**Limits.** Everything shares the machine's cores: the generator (its CPU is printed, with
the busiest process) and anything else running. A burst's latency spread is mostly serial
work: the server writing 2,000 frames one after the other, and each viewer process reading
its share; the bare server's figures are that floor. Keepalive pings (websockets' and
uvicorn's, every 20 s) and Touchline's heartbeats (15 s) fall in short windows by phase, so
the burst's CPU figures move with it; compare the two servers within a run. Share tokens
travel in the query string, as browsers send them. Traffic goes only to 127.0.0.1; every
wait is bounded (``--max-minutes`` stops everything).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, TypeVar

if __package__ in (None, ""):
    # Run as a script: `bench` is importable from the checkout (the editable install already
    # puts it on the path; this keeps the script working without it).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    HOST,
    Database,
    Server,
    backend_delta,
    free_port,
    loopback_only,
    machine_busy_s,
    machine_steal_s,
    median,
    process_stat_cpu_s,
    rss_kb,
    server_backends,
    start_sync_server,
    started,
)
from bench.fanout_load import (
    ConnectReport,
    PublisherConfig,
    PublishJob,
    PublishReport,
    PublishTarget,
    ViewerConfig,
    ViewerRecord,
    ViewerReport,
    ViewerTarget,
    prepare_process,
    publisher_main,
    viewer_main,
)

BENCH_DIR = Path(__file__).resolve().parent

WARM_FRACTION = 0.02
"""Viewers connected before the memory baseline is read (first-use costs stay out of it)."""
SETTLE_S = 2.0
DRAIN_QUIET_S = 3.0
DRAIN_MAX_S = 20.0

Kind = Literal["bare", "bare-commit", "touchline"]
KINDS: tuple[Kind, ...] = ("bare", "bare-commit", "touchline")
T = TypeVar("T")
SERVER_LABEL = {
    "bare": "bare websockets",
    "bare-commit": "bare + commit",
    "touchline": "Touchline",
}


class RelayMissing(Exception):
    """Touchline has no working viewer endpoint: its scenarios are skipped, not failed."""


# -- small helpers ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a process: the scheduler's nanoseconds summed over its live threads,
    or user + system ticks (10 ms steps) where the kernel keeps no schedstat."""
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with suppress(OSError, ValueError, IndexError):
                total += int(Path(task.path, "schedstat").read_text().split()[0])
    except OSError:
        return 0.0
    if total:
        return total / 1e9
    return process_stat_cpu_s(pid)


@contextmanager
def owned(task: asyncio.Task[T]) -> Iterator[asyncio.Task[T]]:
    """A task that is cancelled if the block is left before it is done."""
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit


async def sleep_until(when_ns: int) -> None:
    delay = (when_ns - time.time_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


# -- databases --------------------------------------------------------------------------------


async def postgres_reachable(url: str) -> str | None:
    """None when a connection works, else why not."""
    try:
        import asyncpg

        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class BackendCpu:
    """CPU of the PostgreSQL backends serving one server process (others left out)."""

    def __init__(self, postgres_url: str, server_pid: int) -> None:
        self.url = postgres_url
        self.port = urllib.parse.urlsplit(postgres_url).port or 5432
        self.server_pid = server_pid
        self.conn: Any = None

    async def open(self) -> None:
        import asyncpg

        self.conn = await asyncpg.connect(self.url, timeout=10)

    async def sample(self) -> dict[int, float]:
        if self.conn is None:
            return {}
        pids = await server_backends(self.conn, self.server_pid, self.port)
        return {pid: process_cpu_s(pid) for pid in pids}

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None


# -- servers ----------------------------------------------------------------------------------


def start_bare(workdir: Path, commit_to: Database | None = None) -> Server:
    """The bare broadcast server; with ``commit_to``, committing each message there first."""
    port = free_port()
    name = "bare" if commit_to is None else "bare-commit"
    command = [sys.executable, str(BENCH_DIR / "fanout_bare.py"), "--port", str(port)]
    if commit_to is not None:
        schema = commit_to.fresh_name("bare_commit")
        command += ["--commit-to", commit_to.postgres_url, "--schema", schema]
    log_path = workdir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    return started(Server(name, process, port, log_path))


def start_touchline(db: Database, redis_url: str | None) -> Server:
    extra_env = {
        # Every viewer comes from 127.0.0.1 as well: still counted, never refusing.
        "WS_MESSAGES_PER_SECOND": "100000",
        # The publisher's coach tokens outlive the longest run.
        "ACCESS_TOKEN_TTL_S": "86400",
    }
    if redis_url:
        extra_env["REDIS_URL"] = redis_url
    return start_sync_server(db, "fanout", "touchline", extra_env)


# -- matches and who watches them ----------------------------------------------------------------


@dataclass(frozen=True)
class LiveMatch:
    key: str
    viewer_url: str
    target: PublishTarget


def bare_matches(port: int, count: int) -> list[LiveMatch]:
    keys = [f"m{i:05d}" for i in range(count)]
    return [LiveMatch(k, f"ws://{HOST}:{port}/m/{k}", PublishTarget(k, "")) for k in keys]


async def touchline_matches(port: int, count: int, clubs: int) -> list[LiveMatch]:
    """Sign up ``clubs`` coaches; give each club its share of ``count`` live matches (against
    an opponent, kicked off ten minutes ago, clock started) and the match's share link."""
    import httpx

    tag = secrets.token_hex(4)
    password = "bench-password-" + secrets.token_hex(8)
    kickoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    per_club = [list(range(c, count, clubs)) for c in range(clubs)]
    found: dict[int, LiveMatch] = {}
    gate = asyncio.Semaphore(8)

    async def checked(response: httpx.Response, expected: int) -> Any:
        if response.status_code != expected:
            raise RuntimeError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:300]}"
            )
        return response.json()

    async def club(client: httpx.AsyncClient, index: int, match_numbers: list[int]) -> None:
        async with gate:
            signup = await checked(
                await client.post(
                    "/api/auth/signup",
                    json={
                        "email": f"fanout-{tag}-{index}@example.org",
                        "password": password,
                        "team_name": f"Riverside U11 {index}",
                        "device_id": f"fanout-coach-{index}",
                    },
                ),
                201,
            )
            bearer = str(signup["access_token"])
            headers = {"Authorization": f"Bearer {bearer}"}
            home = signup["team"]["id"]
            away = (
                await checked(
                    await client.post(
                        "/api/teams",
                        json={"name": f"Hillview U11 {index}", "is_opponent": True},
                        headers=headers,
                    ),
                    201,
                )
            )["id"]
            for number in match_numbers:
                match = await checked(
                    await client.post(
                        "/api/matches",
                        json={
                            "home_team_id": home,
                            "away_team_id": away,
                            "kickoff_ts": kickoff,
                            "period_format": "half",
                            "duration_mins": 60,
                            "venue": "Riverside Park, pitch 3",
                        },
                        headers=headers,
                    ),
                    201,
                )
                match_id = str(match["id"])
                await checked(
                    await client.post(
                        f"/api/matches/{match_id}/clock", json={"action": "start"}, headers=headers
                    ),
                    200,
                )
                share = await checked(
                    await client.get(f"/api/matches/{match_id}/share", headers=headers), 200
                )
                url = f"ws://{HOST}:{port}/ws/match/{match_id}?token={share['token']}"
                target = PublishTarget(match_id, bearer, f"fanout-coach-{index}", home)
                found[number] = LiveMatch(match_id, url, target)

    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=60.0) as client:
        await asyncio.gather(
            *(club(client, i, numbers) for i, numbers in enumerate(per_club) if numbers)
        )
    return [found[i] for i in range(count)]


async def probe_relay(url: str) -> str | None:
    """None when a viewer can connect and gets a ``snapshot`` first, else what happened."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    try:
        async with connect(url, open_timeout=10, ping_interval=None, compression=None) as ws:
            first = await asyncio.wait_for(ws.recv(), 10)
    except InvalidStatus as exc:
        return f"the handshake was answered HTTP {exc.response.status_code}"
    except (OSError, TimeoutError, WebSocketException) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        kind = json.loads(first).get("type")
    except (ValueError, AttributeError):
        kind = None
    if kind != "snapshot":
        return f"the first message is not a snapshot: {str(first)[:200]!r}"
    return None


# -- the load generator processes ---------------------------------------------------------------


class LoadGenerator:
    """Viewer processes and the publisher process, with their pipes; stopped on exit."""

    def __init__(self, viewers: list[ViewerConfig], publisher: PublisherConfig) -> None:
        self.configs = viewers
        context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.viewer_pipes: list[Connection] = []
        for config in viewers:
            self.viewer_pipes.append(self._spawn(context, viewer_main, config))
        self.publisher_pipe = self._spawn(context, publisher_main, publisher)

    def _spawn(
        self, context: Any, target: Callable[[Connection, Any], None], config: object
    ) -> Connection:
        mine, theirs = multiprocessing.Pipe()
        process: BaseProcess = context.Process(target=target, args=(theirs, config), daemon=True)
        process.start()
        theirs.close()
        self.processes.append(process)
        return mine

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def cpu_s(self) -> list[float]:
        return [process_cpu_s(pid) for pid in self.pids]

    @staticmethod
    async def ask(pipe: Connection, command: tuple[object, ...], limit_s: float) -> object:
        pipe.send(command)
        if not await asyncio.to_thread(pipe.poll, limit_s):
            raise TimeoutError(f"load generator did not answer {command[0]!r} in {limit_s} s")
        answer: object = pipe.recv()
        return answer

    async def connect(self, counts: list[int], limit_s: float) -> list[ConnectReport]:
        answers = await asyncio.gather(
            *(
                self.ask(pipe, ("connect", n), limit_s)
                for pipe, n in zip(self.viewer_pipes, counts, strict=True)
            )
        )
        return [a for a in answers if isinstance(a, ConnectReport)]

    async def received(self) -> int:
        answers = await asyncio.gather(*(self.ask(p, ("count",), 30) for p in self.viewer_pipes))
        return sum(a for a in answers if isinstance(a, int))

    async def collect(self) -> list[ViewerReport]:
        answers = await asyncio.gather(*(self.ask(p, ("collect",), 60) for p in self.viewer_pipes))
        return [a for a in answers if isinstance(a, ViewerReport)]

    async def publish(self, job: PublishJob, limit_s: float) -> PublishReport:
        answer = await self.ask(self.publisher_pipe, ("publish", job), limit_s)
        if not isinstance(answer, PublishReport):
            raise RuntimeError(f"publisher answered {answer!r}")
        return answer

    async def close_viewers(self) -> None:
        await asyncio.gather(
            *(self.ask(p, ("close",), 30) for p in self.viewer_pipes), return_exceptions=True
        )

    def stop(self) -> None:
        for pipe in [*self.viewer_pipes, self.publisher_pipe]:
            with suppress(OSError):
                pipe.close()
        deadline = time.monotonic() + 10
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- one measurement --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: Literal["steady", "burst"]
    viewers: int
    matches: int
    clubs: int
    count: int
    """Events published in the measured phase (warm-up included)."""
    interval_s: float
    warmup_s: float
    """From the first event to the window's start."""
    window_s: float
    kind: str | None
    alone_s: float
    """A window of the same writes before any viewer connects (0: none)."""
    idle_s: float
    """A window with every viewer connected and nothing written (0: none)."""


STEAL_WARNING_CORES = 0.05
"""Above this, a window's figures are flagged: the host was busy elsewhere."""


@dataclass
class Sample:
    server_cpu: float
    generator_cpu: list[float]
    machine: float
    steal: float
    backends: dict[int, float]

    @classmethod
    async def take(cls, server: Server, gen: LoadGenerator, pg: BackendCpu | None) -> Sample:
        return cls(
            process_cpu_s(server.pid),
            gen.cpu_s(),
            machine_busy_s(),
            machine_steal_s(),
            await pg.sample() if pg else {},
        )


def window_cpu(a: Sample, b: Sample) -> dict[str, float]:
    generator = [y - x for x, y in zip(a.generator_cpu, b.generator_cpu, strict=True)]
    server = b.server_cpu - a.server_cpu
    postgres = backend_delta(a.backends, b.backends)
    machine = b.machine - a.machine
    return {
        "server_cpu_s": server,
        "postgres_cpu_s": postgres,
        "generator_cpu_s": sum(generator),
        "generator_max_process_cpu_s": max(generator, default=0.0),
        "machine_busy_s": machine,
        "steal_s": b.steal - a.steal,
        "other_cpu_s": max(0.0, machine - (b.steal - a.steal) - server - postgres - sum(generator)),
    }


async def writes_alone(
    server: Server, gen: LoadGenerator, pg: BackendCpu | None, sc: Scenario, targets: list[Any]
) -> dict[str, float]:
    """Server CPU per second for the scenario's writes with nobody watching."""
    interval_ns = round(sc.interval_s * 1e9)
    warm_ns = 1_000_000_000
    start = time.time_ns() + 300_000_000
    count = int((warm_ns + sc.alone_s * 1e9) // interval_ns)
    job = PublishJob(tuple(targets), start, count, interval_ns, sc.kind)
    window_start, window_end = start + warm_ns, start + warm_ns + round(sc.alone_s * 1e9)
    with owned(asyncio.create_task(gen.publish(job, limit_s=sc.alone_s + 120))) as task:
        await sleep_until(window_start)
        a = await Sample.take(server, gen, pg)
        await sleep_until(window_end)
        b = await Sample.take(server, gen, pg)
        report = await task
    cpu = window_cpu(a, b)
    # Per write sent in the window: a server that cannot keep up takes fewer than were due.
    writes = sum(1 for s in report.sent if window_start <= s.send_ns < window_end) or math.nan
    return {
        "alone_server_cores": cpu["server_cpu_s"] / sc.alone_s,
        "alone_postgres_cores": cpu["postgres_cpu_s"] / sc.alone_s,
        "alone_server_s_per_write": cpu["server_cpu_s"] / writes,
        "alone_postgres_s_per_write": cpu["postgres_cpu_s"] / writes,
        "alone_writes_per_s": writes / sc.alone_s,
        "alone_failed_writes": float(report.failed),
    }


async def measure(kind: Kind, sc: Scenario, opts: Options, db: Database) -> dict[str, Any]:
    """One server, one scenario: start it, set it up, load it, stop it."""
    bare = kind != "touchline"
    if bare:
        server = start_bare(db.workdir, db if kind == "bare-commit" else None)
    else:
        server = start_touchline(db, opts.redis_url)
    pg: BackendCpu | None = None
    try:
        t0 = time.monotonic()
        if bare:
            matches = bare_matches(server.port, sc.matches)
        else:
            matches = await touchline_matches(server.port, sc.matches, sc.clubs)
            why = await probe_relay(matches[0].viewer_url)
            if why is not None:
                raise RelayMissing(why)
        setup_s = time.monotonic() - t0
        if kind != "bare" and db.kind == "postgres":
            pg = BackendCpu(db.postgres_url, server.pid)
            await pg.open()
        targets = [
            ViewerTarget(matches[j % len(matches)].viewer_url, matches[j % len(matches)].key)
            for j in range(sc.viewers)
        ]
        procs = max(1, min(opts.procs, sc.viewers))
        configs = [
            ViewerConfig(tuple(targets[p::procs]), kind == "touchline", opts.deflate)
            for p in range(procs)
        ]
        url = f"ws://{HOST}:{server.port}/pub" if bare else f"http://{HOST}:{server.port}"
        publisher = PublisherConfig("bare" if bare else "touchline", url, writes=opts.writes)
        with LoadGenerator(configs, publisher) as gen:
            return await load(server, gen, pg, sc, matches, configs, setup_s)
    except RelayMissing:
        raise
    except Exception:
        print(f"    ! {kind} server log (tail):\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if pg is not None:
            await pg.close()
        server.stop()


_BUCKET = re.compile(r'^touchline_relay_merge_to_send_seconds_bucket\{le="([^"]+)"\} (\S+)$')


async def merge_to_send_buckets(server: Server) -> dict[float, float] | None:
    """Touchline's merge-to-send histogram (cumulative counts by upper bound, seconds): from
    a change's commit to its frame being written to a viewer's socket, on the server."""
    if server.name != "touchline":
        return None
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://{HOST}:{server.port}/metrics")).text
    found = {}
    for line in text.splitlines():
        if matched := _BUCKET.match(line):
            found[float(matched.group(1))] = float(matched.group(2))
    return found


def merge_to_send(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Upper bounds of the window's merge-to-send p50 and p99 (the histogram's buckets)."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0.0

    def bound_of(share: float) -> float | None:
        for bound, cumulative in counts:
            if total and cumulative >= share * total:
                return bound * 1000
        return None

    return {
        "merge_to_send_count": total,
        "merge_to_send_p50_ms": bound_of(0.50),
        "merge_to_send_p99_ms": bound_of(0.99),
    }


async def load(
    server: Server,
    gen: LoadGenerator,
    pg: BackendCpu | None,
    sc: Scenario,
    matches: list[LiveMatch],
    configs: list[ViewerConfig],
    setup_s: float,
) -> dict[str, Any]:
    row: dict[str, Any] = {"setup_s": setup_s}
    publish_targets = [m.target for m in matches]
    if sc.alone_s > 0:
        row |= await writes_alone(server, gen, pg, sc, publish_targets)

    # Idle connections: memory read after a small first batch, and after all of them.
    connect_timeout = 120 + sc.viewers * 0.05
    warm = [min(len(c.targets), max(1, math.ceil(len(c.targets) * WARM_FRACTION))) for c in configs]
    first = await gen.connect(warm, connect_timeout)
    await asyncio.sleep(SETTLE_S / 2)
    rss_before = rss_kb(server.pid)
    t0 = time.perf_counter()
    rest = await gen.connect(
        [len(c.targets) - w for c, w in zip(configs, warm, strict=True)], connect_timeout
    )
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(SETTLE_S)
    rss_after = rss_kb(server.pid)
    reports = first + rest
    opened = sum(r.opened for r in reports)
    opened_later = sum(r.opened for r in rest)
    errors = [e for r in reports for e in r.errors]
    row |= {
        "viewers": sc.viewers,
        "opened": opened,
        "connect_failed": sum(r.failed for r in reports),
        "connect_errors": errors[:3],
        "connect_per_s": opened_later / connect_s if connect_s > 0 else float("nan"),
        "extensions": next((r.extensions for r in reports if r.extensions is not None), None),
        "rss_before_mb": rss_before / 1024,
        "rss_after_mb": rss_after / 1024,
        "kb_per_idle_viewer": (rss_after - rss_before) / opened_later if opened_later else None,
    }

    # Idle connections: what keeping them costs with nothing to send (heartbeats, pings).
    idle_from = time.time_ns()
    if sc.idle_s > 0:
        a = await Sample.take(server, gen, pg)
        await asyncio.sleep(sc.idle_s)
        b = await Sample.take(server, gen, pg)
        idle = window_cpu(a, b)
        row["idle_server_cores"] = idle["server_cpu_s"] / sc.idle_s
        row["idle_postgres_cores"] = idle["postgres_cpu_s"] / sc.idle_s
    idle_to = time.time_ns()

    # The measured phase.
    interval_ns = round(sc.interval_s * 1e9)
    start = time.time_ns() + 500_000_000
    window_start = start + round(sc.warmup_s * 1e9)
    window_end = window_start + round(sc.window_s * 1e9)
    job = PublishJob(tuple(publish_targets), start, sc.count, interval_ns, sc.kind)
    publishing = asyncio.create_task(gen.publish(job, limit_s=sc.warmup_s + sc.window_s + 120))
    with owned(publishing):
        await sleep_until(window_start)
        a = await Sample.take(server, gen, pg)
        buckets_a = await merge_to_send_buckets(server)
        await sleep_until(window_end)
        b = await Sample.take(server, gen, pg)
        buckets_b = await merge_to_send_buckets(server)
        report = await publishing

    # Wait until every copy has arrived, or arrivals stop.
    viewers_of: Counter[str] = Counter(t.match for c in configs for t in c.targets)
    hoped = sum(viewers_of[s.match] for s in report.sent if s.ok)
    last, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + DRAIN_MAX_S
    while time.monotonic() < deadline:
        got = await gen.received()
        if got >= hoped:
            break
        if got != last:
            last, quiet_since = got, time.monotonic()
        elif time.monotonic() - quiet_since > DRAIN_QUIET_S:
            break
        await asyncio.sleep(0.2)
    collected = await gen.collect()
    await gen.close_viewers()

    row |= window_cpu(a, b)
    row |= deliveries(report, collected, window_start, window_end)
    if buckets_a is not None and buckets_b is not None:
        row |= merge_to_send(buckets_a, buckets_b)
    row["idle_frames_per_s"] = (
        sum(1 for r in collected for t, _, _ in r.frames if idle_from <= t < idle_to) / sc.idle_s
        if sc.idle_s > 0
        else None
    )
    row["window_s"] = sc.window_s
    row["due_per_s"] = 1 / sc.interval_s
    row["published_per_s"] = row["published"] / sc.window_s
    row["generator_procs"] = len(configs) + 1
    return row


def deliveries(
    report: PublishReport, collected: list[ViewerReport], window_start: int, window_end: int
) -> dict[str, Any]:
    records: list[ViewerRecord] = [v for r in collected for v in r.viewers]
    by_match: dict[str, list[ViewerRecord]] = {}
    for record in records:
        by_match.setdefault(record.match, []).append(record)
    latencies: list[float] = []
    after_answer: list[float] = []
    expected = lost = 0
    for sent in report.sent:
        if not sent.ok:
            continue
        in_window = window_start <= sent.send_ns < window_end
        for viewer in by_match.get(sent.match, ()):
            expected += 1
            arrived = viewer.events.get(sent.event_id)
            if arrived is None:
                lost += 1
            elif in_window:
                latencies.append((arrived - sent.send_ns) / 1e6)
                after_answer.append((arrived - sent.done_ns) / 1e6)
    events_in_window = sum(
        1 for v in records for t in v.events.values() if window_start <= t < window_end
    )
    kinds = Counter(
        kind for r in collected for t, kind, _ in r.frames if window_start <= t < window_end
    )
    window_sent = [s for s in report.sent if window_start <= s.send_ns < window_end]
    writes = [(s.done_ns - s.send_ns) / 1e6 for s in window_sent if s.ok]
    lateness = [(s.send_ns - s.due_ns) / 1e6 for s in window_sent]
    closed = Counter(v.closed for v in records if v.closed)
    return {
        "published": len(window_sent),
        "publish_failed": report.failed,
        "publish_errors": report.errors[:3],
        "expected": expected,
        "lost": lost,
        "duplicates": sum(v.duplicates for v in records),
        "closed": sum(closed.values()),
        "closed_reasons": dict(closed.most_common(3)),
        "latencies": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "after_answer_p50_ms": percentile(after_answer, 0.50),
        "after_answer_p99_ms": percentile(after_answer, 0.99),
        "write_p50_ms": percentile(writes, 0.50),
        "write_p99_ms": percentile(writes, 0.99),
        "publish_late_max_ms": max(lateness, default=float("nan")),
        "events_in_window": events_in_window,
        "frame_types_in_window": dict(kinds),
        "frames_in_window": sum(kinds.values()),
    }


def cost_figures(row: dict[str, Any]) -> dict[str, float]:
    """µs of CPU per delivered message, two ways.

    ``server_us``: the server's CPU in the window over every frame delivered in it
    (heartbeats included). ``relay_us``: the server's CPU minus what the same window costs
    with the viewers idle and minus the window's writes at their writes-alone cost, over the
    frames the writes caused
    (every frame but heartbeats): the fan-out itself. Likewise for PostgreSQL.
    """
    nan = float("nan")
    window = row["window_s"]
    frames = row["frames_in_window"] or nan
    caused = (frames - row["frame_types_in_window"].get("heartbeat", 0)) or nan
    server = row["server_cpu_s"]
    postgres = row["postgres_cpu_s"]
    writes = row["published"]
    relay = (
        server
        - row.get("idle_server_cores", 0.0) * window
        - row.get("alone_server_s_per_write", 0.0) * writes
    )
    relay_pg = (
        postgres
        - row.get("idle_postgres_cores", 0.0) * window
        - row.get("alone_postgres_s_per_write", 0.0) * writes
    )
    return {
        "server_us": server / frames * 1e6,
        "server_us_per_event": server / (row["events_in_window"] or nan) * 1e6,
        "relay_us": relay / caused * 1e6,
        "postgres_us": postgres / frames * 1e6,
        "relay_postgres_us": relay_pg / caused * 1e6,
        "server_cores": server / window,
        "idle_us_per_viewer_s": row.get("idle_server_cores", nan) / row["opened"] * 1e6
        if row["opened"]
        else nan,
        "generator_cores": row["generator_cpu_s"] / window,
        "generator_max_cores": row["generator_max_process_cpu_s"] / window,
        "other_cores": row["other_cpu_s"] / window,
        "steal_cores": row.get("steal_s", nan) / window,
        "deliveries_per_s": frames / window,
    }


# -- options, scenarios, output ---------------------------------------------------------------


@dataclass
class Options:
    scenarios: list[Literal["steady", "burst"]]
    servers: list[Kind]
    viewers: int
    matches: int
    clubs: int
    rate: float
    seconds: float
    warmup: float
    alone: float
    idle: float
    burst_viewers: int
    goals: int
    goal_interval: float
    runs: int
    procs: int
    database: str
    postgres_url: str
    redis_url: str | None
    deflate: bool
    writes: Literal["socket", "push", "rest"]
    json_path: Path | None
    max_minutes: float


def scenario(name: Literal["steady", "burst"], opts: Options) -> Scenario:
    if name == "steady":
        return Scenario(
            name="steady",
            viewers=opts.viewers,
            matches=opts.matches,
            clubs=min(opts.clubs, opts.matches),
            count=round(opts.rate * (opts.warmup + opts.seconds)),
            interval_s=1 / opts.rate,
            warmup_s=opts.warmup,
            window_s=opts.seconds,
            kind=None,
            alone_s=opts.alone,
            idle_s=opts.idle,
        )
    # One untimed goal, then `goals` timed ones; the window runs from half an interval after
    # the untimed goal to half an interval after the last goal. Six writes cost next to
    # nothing beside their 12,000 deliveries: no writes-alone window.
    return Scenario(
        name="burst",
        viewers=opts.burst_viewers,
        matches=1,
        clubs=1,
        count=opts.goals + 1,
        interval_s=opts.goal_interval,
        warmup_s=opts.goal_interval / 2,
        window_s=opts.goals * opts.goal_interval,
        kind="goal",
        alone_s=0.0,
        idle_s=opts.idle,
    )


def describe(sc: Scenario) -> str:
    extra = (f"; writes alone {sc.alone_s:g} s" if sc.alone_s else "") + (
        f"; idle {sc.idle_s:g} s" if sc.idle_s else ""
    )
    if sc.name == "steady":
        return (
            f"steady: {sc.viewers:,} viewers over {sc.matches:,} live matches ({sc.clubs} clubs),"
            f" {1 / sc.interval_s:g} new events/s, {sc.warmup_s:g} s warm-up + {sc.window_s:g} s"
            + extra
        )
    return (
        f"burst: {sc.viewers:,} viewers on one match, {sc.count - 1} goals"
        f" {sc.interval_s:g} s apart (after one untimed)" + extra
    )


def fmt(value: Any, spec: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def print_row(kind: Kind, row: dict[str, Any]) -> None:
    c = cost_figures(row)
    pg = (
        f"; PostgreSQL {fmt(c['postgres_us'])}, relay {fmt(c['relay_postgres_us'])}"
        if row["postgres_cpu_s"]
        else ""
    )
    print(
        f"    {SERVER_LABEL[kind]:<16} {row['opened']:>6,}/{row['viewers']:,} viewers"
        f" | {row['expected'] - row['lost']:>7,}/{row['expected']:,} delivered, lost {row['lost']}"
        f" | p50 {fmt(row['p50_ms'])} p95 {fmt(row['p95_ms'])} p99 {fmt(row['p99_ms'])}"
        f" max {fmt(row['max_ms'])} ms"
    )
    kinds = ", ".join(f"{k} {v:,}" for k, v in row["frame_types_in_window"].items())
    print(
        f"      CPU µs/msg: server {fmt(c['server_us'])}, relay {fmt(c['relay_us'])}{pg}"
        f" | {fmt(row['kb_per_idle_viewer'])} KB and {fmt(c['idle_us_per_viewer_s'])} µs/s"
        f" per idle viewer | connect {fmt(row['connect_per_s'], ',.0f')}/s"
        + (f" | negotiated {row['extensions']}" if row["extensions"] else "")
    )
    print(
        f"      {c['deliveries_per_s']:,.0f} msgs/s delivered ({kinds}; carrying"
        f" {row['events_in_window']:,} events) | cores: server {c['server_cores']:.2f},"
        f" generator {c['generator_cores']:.2f}"
        f" (busiest process {c['generator_max_cores']:.2f}), other {c['other_cores']:.2f},"
        f" stolen {c['steal_cores']:.2f} | publish late max {fmt(row['publish_late_max_ms'])} ms"
    )
    if c["steal_cores"] > STEAL_WARNING_CORES:
        print(
            f"      ! the host took {c['steal_cores']:.2f} of a core from this machine in the"
            " window: its processes waited and ran colder; compare servers within a quiet run"
        )
    if kind == "touchline":
        print(
            f"      writes: {row['published_per_s']:,.1f}/s of {row['due_per_s']:,.1f}/s due,"
            f" answered p50 {fmt(row['write_p50_ms'])} p99 {fmt(row['write_p99_ms'])} ms;"
            f" viewer arrival after the answer p50 {fmt(row['after_answer_p50_ms'])}"
            f" p99 {fmt(row['after_answer_p99_ms'])} ms"
        )
        if row.get("merge_to_send_count"):
            print(
                "      merge to send on the server (its histogram, commit to socket write):"
                f" p50 <= {fmt(row['merge_to_send_p50_ms'])} p99 <="
                f" {fmt(row['merge_to_send_p99_ms'])} ms"
            )
    problems = []
    if row["connect_failed"]:
        problems.append(
            f"{row['connect_failed']} viewers failed to connect: {row['connect_errors']}"
        )
    if row["publish_late_max_ms"] > 100 or row["published_per_s"] < 0.95 * row["due_per_s"]:
        problems.append(
            f"the publisher fell behind its schedule by up to {row['publish_late_max_ms']:,.0f} ms:"
            " the server did not keep up with the writes (figures are for the rate it took)"
        )
    if row["publish_failed"]:
        problems.append(f"{row['publish_failed']} writes failed: {row['publish_errors']}")
    if row["closed"]:
        problems.append(f"{row['closed']} viewers cut off: {row['closed_reasons']}")
    if row["duplicates"]:
        problems.append(f"{row['duplicates']} duplicate events")
    if row.get("alone_failed_writes"):
        problems.append(
            f"{row['alone_failed_writes']:.0f} writes failed in the writes-alone window"
        )
    for problem in problems:
        print(f"      ! {problem}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summarize(
    sc: Scenario, runs: list[dict[Kind, dict[str, Any]]], skipped: str | None, opts: Options
) -> list[str]:
    """Medians over the runs, the targets and the verdict lines for one scenario."""
    lines = [f"\n{describe(sc)}; medians of {len(runs)} run(s)"]
    lines.append(
        f"  {'server':<16} {'lost':>5} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'µs/msg':>7} {'relay':>7} {'pg µs':>6} {'KB/idle':>7} {'msgs/s':>7} {'other':>5}"
        f" {'stolen':>6}"
    )

    def m(kind: Kind, key: str) -> float:
        return median([r[kind][key] for r in runs if kind in r and r[kind].get(key) is not None])

    def mc(kind: Kind, key: str) -> float:
        return median([cost_figures(r[kind])[key] for r in runs if kind in r])

    for kind in opts.servers:
        if not any(kind in r for r in runs):
            continue
        lines.append(
            f"  {SERVER_LABEL[kind]:<16} {sum(r[kind]['lost'] for r in runs if kind in r):>5}"
            f" {fmt(m(kind, 'p50_ms')):>7} {fmt(m(kind, 'p95_ms')):>7}"
            f" {fmt(m(kind, 'p99_ms')):>7} {fmt(m(kind, 'max_ms')):>7}"
            f" {fmt(mc(kind, 'server_us')):>7} {fmt(mc(kind, 'relay_us')):>7}"
            f" {fmt(mc(kind, 'postgres_us') if m(kind, 'postgres_cpu_s') else None):>6}"
            f" {fmt(m(kind, 'kb_per_idle_viewer')):>7} {mc(kind, 'deliveries_per_s'):>7,.0f}"
            f" {mc(kind, 'other_cores'):>5.2f} {mc(kind, 'steal_cores'):>6.2f}"
        )
    lines.append(
        "  (µs/msg: server CPU over every frame delivered; relay: minus the idle viewers' and"
        " the writes' own CPU, over the frames the writes caused; other: cores used by the rest of"
        " the machine; stolen: cores the host took from the machine)"
    )
    if skipped:
        lines.append(f"  Touchline not measured: {skipped}")
    both = [r for r in runs if "bare" in r and "touchline" in r]
    ours = [r["touchline"] for r in runs if "touchline" in r]
    if not ours:
        return lines
    p99 = median([r["p99_ms"] for r in ours])
    lost = sum(r["lost"] for r in ours)
    short = sum(r["viewers"] - r["opened"] for r in ours)
    cut = sum(r["closed"] for r in ours)
    limit = 50.0 if sc.name == "steady" else 150.0
    lines.append("  targets (Touchline):")
    lines.append(
        f"    p99 under {limit:g} ms: {fmt(p99)} ms (worst run"
        f" {fmt(max(r['p99_ms'] for r in ours))})  {verdict(p99 < limit)}"
    )
    merged = [r["merge_to_send_p99_ms"] for r in ours if r.get("merge_to_send_p99_ms")]
    if merged:
        lines.append(
            f"      merge to send on the server alone (commit to socket write, histogram bucket):"
            f" p99 <= {fmt(median(merged))} ms  {verdict(median(merged) < limit)}"
        )
    taken, due = median([r["published_per_s"] for r in ours]), ours[0]["due_per_s"]
    saturated = taken < 0.95 * due
    if saturated:
        lines.append(
            f"      (the server took {taken:,.1f} of the {due:,.1f} writes/s due: it was saturated,"
            " and the latencies include the writes' queueing)"
        )
    lines.append(
        f"    nothing lost: {lost} lost, {cut} viewers cut off, {short} never connected"
        f"  {verdict(lost == 0 and cut == 0 and short == 0)}"
    )
    if not both:
        return lines

    def ratio(key: str) -> float:
        return median(
            [cost_figures(r["touchline"])[key] / cost_figures(r["bare"])[key] for r in both]
        )

    total, relay, per_event = ratio("server_us"), ratio("relay_us"), ratio("server_us_per_event")
    lines.append(
        f"    CPU per delivered message within 1.5x bare: server {total:.2f}x"
        f"  {verdict(total <= 1.5)}"
    )
    if abs(per_event - total) > 0.05:
        lines.append(
            f"      per event delivered (heartbeats and other messages not counted):"
            f" {per_event:.2f}x  {verdict(per_event <= 1.5)}"
        )
    if saturated:
        lines.append(
            "      relay alone: not measured, the server was saturated (the writes alone took"
            f" {median([r['touchline'].get('alone_server_cores', math.nan) for r in both]):.2f}"
            " of a core)"
        )
    elif not relay > 0:
        lines.append(
            "      relay alone: within the noise (what the writes cost alone, measured apart,"
            " varies by more than the relay adds); see the server figure above"
        )
    else:
        lines.append(
            "      relay alone (idle viewers and the writes' own CPU taken out of both):"
            f" {relay:.2f}x  {verdict(relay <= 1.5)}"
        )
    lines += against_floor(runs)
    pg = median([cost_figures(r["touchline"])["postgres_us"] for r in both])
    if pg == pg and pg > 0:
        relay_pg = median([cost_figures(r["touchline"])["relay_postgres_us"] for r in both])
        lines.append(
            f"      not counted above: PostgreSQL {pg:.1f} µs/msg, of it {relay_pg:.1f} for"
            " the relay (the bare broadcast has no database)"
        )
    kb_ours = median([r["touchline"]["kb_per_idle_viewer"] or math.nan for r in both])
    kb_bare = median([r["bare"]["kb_per_idle_viewer"] or math.nan for r in both])
    lines.append(
        f"    memory per idle viewer: {fmt(kb_ours)} KB (bare {fmt(kb_bare)} KB,"
        f" {kb_ours / kb_bare:.1f}x)  measured"
    )
    return lines


def against_floor(runs: list[dict[Kind, dict[str, Any]]]) -> list[str]:
    """Touchline and the bare server beside the bare server that commits each event first."""
    trios = [r for r in runs if "bare" in r and "bare-commit" in r and "touchline" in r]
    if not trios:
        return []

    def ratio(key: str, over: Kind, under: Kind) -> float:
        return median([cost_figures(r[over])[key] / cost_figures(r[under])[key] for r in trios])

    return [
        "      beside the bare server that commits each event to PostgreSQL before sending it:"
        f" that floor is {ratio('server_us', 'bare-commit', 'bare'):.2f}x the bare broadcast"
        f" ({ratio('server_us_per_event', 'bare-commit', 'bare'):.2f}x per event), and Touchline"
        f" {ratio('server_us', 'touchline', 'bare-commit'):.2f}x the floor"
        f" ({ratio('server_us_per_event', 'touchline', 'bare-commit'):.2f}x per event)"
    ]


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description="Live fan-out to viewers, Touchline beside a bare websockets broadcast."
    )
    parser.add_argument("--scenarios", default="steady,burst", help="steady,burst")
    parser.add_argument("--servers", default=",".join(KINDS), help=f"{','.join(KINDS)} (all three)")
    parser.add_argument("--viewers", type=int, help="steady: viewers (5000)")
    parser.add_argument("--matches", type=int, help="steady: live matches (500)")
    parser.add_argument("--clubs", type=int, help="steady: clubs the matches belong to (50)")
    parser.add_argument("--rate", type=float, help="steady: new events per second in all (100)")
    parser.add_argument("--seconds", type=float, help="steady: measured window (20)")
    parser.add_argument("--warmup", type=float, help="steady: warm-up before it (5)")
    parser.add_argument(
        "--writes-alone",
        dest="alone",
        type=float,
        help="steady: window of the same writes before any viewer connects (10; 0: none)",
    )
    parser.add_argument(
        "--idle", type=float, help="window with the viewers connected and no writes (20; 0: none)"
    )
    parser.add_argument("--burst-viewers", type=int, help="burst: viewers of the match (2000)")
    parser.add_argument("--goals", type=int, help="burst: timed goals (5)")
    parser.add_argument("--goal-interval", type=float, help="burst: seconds between goals (1)")
    parser.add_argument("--runs", type=int, help="runs; medians are printed (3)")
    parser.add_argument("--procs", type=int, default=2, help="viewer processes (2)")
    parser.add_argument(
        "--database", choices=("auto", "postgres", "sqlite"), default="auto",
        help="Touchline's database; auto: PostgreSQL when reachable, else SQLite",
    )  # fmt: skip
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"loopback PostgreSQL (default $BENCH_POSTGRES_URL or {DEFAULT_POSTGRES})",
    )
    parser.add_argument("--redis-url", help="give Touchline this loopback REDIS_URL (default none)")
    parser.add_argument(
        "--deflate", action="store_true", help="viewers offer permessage-deflate, as browsers do"
    )
    parser.add_argument(
        "--writes",
        choices=["socket", "push", "rest"],
        default="socket",
        help="how Touchline's events are written: a device's sync push over its live socket "
        "(default, what a live coach's app does), the same push over HTTP, or "
        "POST /api/matches/{id}/events",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: ~200 viewers, 1 run")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument(
        "--max-minutes", type=float, default=60, help="stop everything after this long (60)"
    )
    args = parser.parse_args(argv)
    full = {
        "viewers": 5000, "matches": 500, "clubs": 50, "rate": 100.0, "seconds": 20.0,
        "warmup": 5.0, "alone": 10.0, "idle": 20.0, "burst_viewers": 2000, "goals": 5,
        "goal_interval": 1.0, "runs": 3,
    }  # fmt: skip
    quick = {
        "viewers": 200, "matches": 20, "clubs": 5, "rate": 20.0, "seconds": 5.0,
        "warmup": 2.0, "alone": 3.0, "idle": 3.0, "burst_viewers": 200, "goals": 3,
        "goal_interval": 1.0, "runs": 1,
    }  # fmt: skip
    chosen = {
        k: (
            getattr(args, k) if getattr(args, k) is not None else (quick if args.quick else full)[k]
        )
        for k in full
    }
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not scenarios or any(s not in ("steady", "burst") for s in scenarios):
        parser.error("--scenarios takes steady and/or burst")
    if not servers or any(s not in KINDS for s in servers):
        parser.error(f"--servers takes some of {', '.join(KINDS)}")
    if not (
        1 <= chosen["viewers"] <= 20_000
        and 1 <= chosen["matches"] <= chosen["viewers"]
        and chosen["clubs"] >= 1
        and 0.1 <= chosen["rate"] <= 5_000
        and 1 <= chosen["seconds"] <= 600
        and 0 <= chosen["warmup"] <= 120
        and 0 <= chosen["alone"] <= 600
        and 0 <= chosen["idle"] <= 600
        and 1 <= chosen["burst_viewers"] <= 20_000
        and 1 <= chosen["goals"] <= 100
        and 0.1 <= chosen["goal_interval"] <= 60
        and 1 <= chosen["runs"] <= 20
        and 1 <= args.procs <= 32
    ):
        parser.error(
            "out of range: --viewers 1..20000, --matches 1..viewers, --rate 0.1..5000,"
            " --seconds 1..600, --warmup 0..120, --writes-alone and --idle 0..600,"
            " --burst-viewers 1..20000, --goals 1..100, --goal-interval 0.1..60, --runs 1..20,"
            " --procs 1..32"
        )
    if {"touchline", "bare-commit"} & set(servers) and args.database != "sqlite":
        loopback_only(args.postgres_url, "database", "fanout")
    if args.redis_url:
        loopback_only(args.redis_url, "Redis", "fanout")
    return Options(
        scenarios=scenarios,
        servers=[k for k in KINDS if k in servers],
        viewers=int(chosen["viewers"]),
        matches=int(chosen["matches"]),
        clubs=int(chosen["clubs"]),
        rate=float(chosen["rate"]),
        seconds=float(chosen["seconds"]),
        warmup=float(chosen["warmup"]),
        alone=float(chosen["alone"]),
        idle=float(chosen["idle"]),
        burst_viewers=int(chosen["burst_viewers"]),
        goals=int(chosen["goals"]),
        goal_interval=float(chosen["goal_interval"]),
        runs=int(chosen["runs"]),
        procs=args.procs,
        database=args.database,
        postgres_url=args.postgres_url,
        redis_url=args.redis_url,
        deflate=args.deflate,
        writes=args.writes,
        json_path=args.json,
        max_minutes=args.max_minutes,
    )


async def choose_database(opts: Options, workdir: Path) -> Database:
    if not {"touchline", "bare-commit"} & set(opts.servers) or opts.database == "sqlite":
        return Database("sqlite", opts.postgres_url, workdir)
    why = await postgres_reachable(opts.postgres_url)
    if why is None:
        return Database("postgres", opts.postgres_url, workdir)
    if opts.database == "postgres":
        sys.exit(f"fanout: PostgreSQL is not reachable: {why}")
    print(f"PostgreSQL not reachable ({why}): Touchline runs on SQLite")
    return Database("sqlite", opts.postgres_url, workdir)


WRITES = {
    "socket": "sync push over the coach's live socket",
    "push": "sync push over HTTP",
    "rest": "the REST API",
}


async def run_all(opts: Options, workdir: Path) -> dict[str, Any]:
    db = await choose_database(opts, workdir)
    touchline = (
        f" Touchline on {db.label}{' + Redis' if opts.redis_url else ''}"
        f" (events written by {WRITES[opts.writes]}),"
    )
    print(
        f"fan-out benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]},"
        + (touchline if "touchline" in opts.servers else "")
        + f" {opts.procs} viewer processes + 1 publisher,"
        f" compression {'offered (deflate)' if opts.deflate else 'off'}, {opts.runs} run(s)"
    )
    results: dict[str, Any] = {}
    skipped: str | None = None
    summaries: list[str] = []
    for name in opts.scenarios:
        sc = scenario(name, opts)
        print(f"\n{describe(sc)}")
        runs: list[dict[Kind, dict[str, Any]]] = []
        for run in range(opts.runs):
            print(f"  run {run + 1}:")
            rows: dict[Kind, dict[str, Any]] = {}
            order = list(opts.servers) if run % 2 == 0 else list(reversed(opts.servers))
            for kind in order:
                if kind == "touchline" and skipped:
                    continue
                if kind == "bare-commit" and db.kind != "postgres":
                    if run == 0:
                        print("    bare + commit: not measured, it needs PostgreSQL")
                    continue
                try:
                    rows[kind] = await measure(kind, sc, opts, db)
                except RelayMissing as exc:
                    skipped = f"no viewer endpoint at /ws/match/{{id}} ({exc})"
                    print(f"    Touchline: {skipped}")
                    continue
                finally:
                    await db.drop_schemas()
                print_row(kind, rows[kind])
            runs.append(rows)
        summaries += summarize(sc, runs, skipped, opts)
        results[name] = {"scenario": sc.__dict__, "runs": runs}
    print("\n".join(summaries))
    results["touchline_skipped"] = skipped
    return results


def on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit passes through the event loop (other exceptions raised in a signal handler
    # would be swallowed by a callback's error handling); every `finally` then stops what runs.
    raise SystemExit(f"fanout: stopped by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # Servers inherit the limit: 5,000 sockets need more than the usual 1,024.
    prepare_process()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(max(1, round(opts.max_minutes * 60)))
    workdir = Path(tempfile.mkdtemp(prefix="touchline-fanout-"))
    try:
        results = asyncio.run(run_all(opts, workdir))
        if opts.json_path:
            opts.json_path.write_text(json.dumps(results, indent=2, default=str))
    except KeyboardInterrupt:
        print("fanout: interrupted; servers and load generator stopped", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
