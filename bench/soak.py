"""Soak: one server under steady pushes, pulls and live viewers for half an hour.

    .venv/bin/python bench/soak.py [--minutes 30] [--window 5] [--database postgres|sqlite]
        [--coaches 4] [--readers 2] [--viewers 24] [--match-minutes 5] [--json PATH]

One ``sync-server serve`` (one worker, production settings, a fresh PostgreSQL schema or
SQLite file) and, in this process:

- ``--coaches`` coach devices (``touchline_client.SyncDevice`` over HTTP, logged in with
  their own device ids), each logging its own match: about once a second a few changes
  (events created, some edited), then a sync (push, then a club-wide pull). Every
  ``--match-minutes`` a coach starts a new match, as a day of fixtures would;
- ``--readers`` devices that only pull the club's log, every 2 s;
- ``--viewers`` WebSocket viewers on the share links of the coaches' current matches, moving
  to the new match's link when a coach starts one. The first viewer of each match times
  every event it receives from the moment its coach sent the push (delivery latency).

Every 10 s the server's resident memory (``VmRSS``) is sampled. Per ``--window`` minutes:
pushes, pulls and viewer messages, latency percentiles, errors, memory and the server's CPU.
At the end: memory growth (the mean RSS of the last window against the first window after
warm-up, which is the first window), errors (any failed request, refusal, exception, viewer
``error`` message or socket the server closed), and latency drift (the same two windows).
The run fails (exit 1) on any error or a memory growth of 10% or more.

A token expires after 15 minutes; the client renews it on the 401, which is counted apart
and not an error. Traffic goes only to 127.0.0.1; every loop is bounded in count and time.
See "Soak" in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    HOST,
    Database,
    Server,
    loopback_only,
    percentile,
    process_stat_cpu_s,
    rss_kb,
    start_sync_server,
)
from protocol.schema import Scalar
from protocol.wire import (
    ConflictRecord,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    ReinstateResponse,
)
from touchline_client import (
    Credentials,
    HttpTransport,
    RetryPolicy,
    SyncDevice,
    SyncError,
)

SAMPLE_S: Final = 10.0
KINDS: Final = (
    "goal",
    "save",
    "tackle",
    "corner",
    "foul",
    "key_pass",
    "yellow_card",
    "shot_on_target",
)
MAX_LOOPS: Final = 10_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- what happened, per window ------------------------------------------------------------------


@dataclass
class Window:
    index: int
    pushes: list[float] = field(default_factory=list)
    """Push latencies, ms."""
    pulls: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    """From a coach sending a push to a viewer receiving its event, ms."""
    viewer_messages: int = 0
    errors: list[str] = field(default_factory=list)
    renewals: int = 0
    rss: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    own_cpu_s: float = 0.0
    sampled_s: float = 0.0

    def row(self) -> dict[str, Any]:
        return {
            "window": self.index + 1,
            "pushes": len(self.pushes),
            "pulls": len(self.pulls),
            "viewer_messages": self.viewer_messages,
            "push_p50_ms": percentile(self.pushes, 0.5),
            "push_p99_ms": percentile(self.pushes, 0.99),
            "pull_p50_ms": percentile(self.pulls, 0.5),
            "pull_p99_ms": percentile(self.pulls, 0.99),
            "delivery_p50_ms": percentile(self.delivery, 0.5),
            "delivery_p99_ms": percentile(self.delivery, 0.99),
            "errors": len(self.errors),
            "token_renewals": self.renewals,
            "rss_mean_mb": sum(self.rss) / len(self.rss) if self.rss else float("nan"),
            "rss_max_mb": max(self.rss, default=float("nan")),
            "server_cores": self.server_cpu_s / self.sampled_s if self.sampled_s else 0.0,
            "soak_cores": self.own_cpu_s / self.sampled_s if self.sampled_s else 0.0,
        }


class Record:
    """The windows, and which one is current."""

    def __init__(self, window_s: float, total_s: float) -> None:
        self.window_s = window_s
        self.count = max(1, math.ceil(total_s / window_s - 1e-9))
        self.started = time.monotonic()
        self.windows: list[Window] = [Window(0)]
        self.shown = 0
        """Windows printed so far."""

    @property
    def now(self) -> Window:
        """The current window (the last one for whatever finishes after the end)."""
        index = min(self.count - 1, int((time.monotonic() - self.started) // self.window_s))
        while len(self.windows) <= index:
            self.windows.append(Window(len(self.windows)))
        return self.windows[index]

    def error(self, what: str) -> None:
        self.now.errors.append(what)


# -- devices ------------------------------------------------------------------------------------


class Timed:
    """The device's transport, timing its pushes and pulls into the current window."""

    def __init__(self, inner: HttpTransport, record: Record) -> None:
        self.inner = inner
        self.record = record
        self.sent: dict[uuid.UUID, float] = {}
        """Events of the last pushes and when they were sent (for delivery latency)."""

    async def push(self, request: PushRequest) -> PushResponse:
        started = time.monotonic()
        for change in request.changes:
            self.sent.setdefault(change.id, started)
        answer = await self.inner.push(request)
        self.record.now.pushes.append((time.monotonic() - started) * 1000)
        return answer

    async def pull(self, request: PullRequest) -> PullResponse:
        started = time.monotonic()
        answer = await self.inner.pull(request)
        self.record.now.pulls.append((time.monotonic() - started) * 1000)
        return answer

    async def conflicts(
        self, match_id: uuid.UUID | None = None, since: int = 0
    ) -> list[ConflictRecord]:
        return await self.inner.conflicts(match_id, since)

    async def reinstate(self, conflict_id: uuid.UUID) -> ReinstateResponse:
        return await self.inner.reinstate(conflict_id)


@dataclass
class Club:
    url: str
    email: str
    password: str
    record: Record
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def http(self) -> httpx.AsyncClient:
        async def on_response(response: httpx.Response) -> None:
            status = response.status_code
            if status == 401 and response.request.url.path.startswith("/api/sync/"):
                self.record.now.renewals += 1  # an expired token; the client renews it
            elif status >= 400:
                await response.aread()
                path = response.request.url.path
                self.record.error(f"{status} {path}: {response.text[:200]}")

        client = httpx.AsyncClient(
            base_url=self.url, timeout=30, event_hooks={"response": [on_response]}
        )
        self.clients.append(client)
        return client

    def device(self, device_id: str) -> tuple[SyncDevice, Timed, httpx.AsyncClient]:
        http = self.http()
        transport = Timed(
            HttpTransport(http, Credentials(self.email, self.password, device_id)), self.record
        )
        # No retries: in a soak every failure is an error to report.
        device = SyncDevice(device_id, transport, now_ms=now_ms, retry=RetryPolicy(attempts=1))
        return device, transport, http


@dataclass
class Match:
    id: uuid.UUID
    share: str
    generation: int


class Coach:
    """Logs one match after another; tells the viewers which match is current."""

    def __init__(self, club: Club, name: str, rng: random.Random) -> None:
        self.device, self.transport, self.http = club.device(name)
        self.club = club
        self.rng = rng
        self.match: Match | None = None
        self.events: list[uuid.UUID] = []
        self.changed = asyncio.Event()
        self.generation = 0

    async def new_match(self) -> None:
        match_id, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.device.create("teams", {"name": "Riverside U12"}, record_id=home)
        self.device.create("teams", {"name": "Hillview U12", "is_opponent": True}, record_id=away)
        self.device.create(
            "matches",
            {
                "home_team_id": str(home),
                "away_team_id": str(away),
                "kickoff_ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "period_format": "half",
                "duration_mins": 60,
            },
            record_id=match_id,
        )
        await self.device.sync()
        token = await self.transport.inner.auth.access_token(self.http, "")
        answer = await self.http.get(
            f"/api/matches/{match_id}/share", headers={"Authorization": f"Bearer {token}"}
        )
        answer.raise_for_status()
        self.generation += 1
        self.match = Match(match_id, str(answer.json()["token"]), self.generation)
        self.events = []
        self.transport.sent.clear()
        self.changed.set()
        self.changed = asyncio.Event()

    def log_some(self) -> None:
        assert self.match is not None
        for _ in range(self.rng.randint(1, 3)):
            if self.events and self.rng.random() < 0.3:
                fields: dict[str, Scalar] = {"notes": f"edited {self.rng.randrange(10**6)}"}
                self.device.update("events", self.rng.choice(self.events), fields)
            else:
                fields = {
                    "match_id": str(self.match.id),
                    "kind": self.rng.choice(KINDS),
                    "period_number": 1,
                    "clock_ms": self.rng.randrange(0, 3_000_000),
                }
                self.events.append(self.device.create("events", fields))

    async def run(self, until: float, match_s: float, first_match_s: float) -> None:
        next_match = time.monotonic() + first_match_s
        for _ in range(MAX_LOOPS):
            if time.monotonic() >= until:
                return
            try:
                if self.match is None or time.monotonic() >= next_match:
                    await self.new_match()
                    next_match = time.monotonic() + match_s
                self.log_some()
                await self.device.sync()
            except (SyncError, httpx.HTTPError) as exc:
                self.club.record.error(f"{self.device.device_id}: {exc!r}")
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))


async def reader(club: Club, name: str, until: float, rng: random.Random) -> None:
    device, _, _ = club.device(name)
    for _ in range(MAX_LOOPS):
        if time.monotonic() >= until:
            return
        try:
            await device.pull()
        except SyncError as exc:
            club.record.error(f"{name}: {exc!r}")
        await asyncio.sleep(rng.uniform(1.5, 2.5))


async def viewer(coach: Coach, timing: bool, until: float, record: Record) -> None:
    """Watch the coach's current match; move to the next one when the coach starts it."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    port = coach.club.url.rsplit(":", 1)[1]
    for _ in range(MAX_LOOPS):
        if time.monotonic() >= until:
            return
        match = coach.match
        if match is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(coach.changed.wait(), timeout=10)
            continue
        url = f"ws://{HOST}:{port}/ws/match/{match.id}?token={match.share}"
        moved = coach.changed
        try:
            async with connect(url, max_size=None) as ws:
                while time.monotonic() < until and not moved.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=1.0)
                    except TimeoutError:
                        continue
                    record.now.viewer_messages += 1
                    message = json.loads(raw)
                    if message["type"] == "error":
                        record.error(f"viewer: {message}")
                    elif timing and message["type"] == "delta":
                        arrived = time.monotonic()
                        for event in message.get("events", []):
                            sent = coach.transport.sent.pop(uuid.UUID(event["id"]), None)
                            if sent is not None:
                                record.now.delivery.append((arrived - sent) * 1000)
        except ConnectionClosed as exc:
            record.error(f"viewer of {match.id}: the server closed the socket: {exc!r}")
        except OSError as exc:
            record.error(f"viewer of {match.id}: {exc!r}")


async def sampler(server: Server, record: Record, until: float) -> None:
    pid = server.process.pid
    last_server, last_own, last_at = process_stat_cpu_s(pid), time.process_time(), time.monotonic()
    for _ in range(MAX_LOOPS):
        if time.monotonic() >= until:
            return
        await asyncio.sleep(SAMPLE_S)
        if time.monotonic() >= until:
            return
        window = record.now
        window.rss.append(rss_kb(pid) / 1024)
        server_cpu, own_cpu, at = process_stat_cpu_s(pid), time.process_time(), time.monotonic()
        window.server_cpu_s += server_cpu - last_server
        window.own_cpu_s += own_cpu - last_own
        window.sampled_s += at - last_at
        last_server, last_own, last_at = server_cpu, own_cpu, at
        if server.process.poll() is not None:
            record.error(f"the server exited with {server.process.returncode}")
            return


# -- the run ------------------------------------------------------------------------------------


async def sign_up(url: str) -> tuple[str, str]:
    email = f"soak-{secrets.token_hex(6)}@example.org"
    password = "soak-" + secrets.token_hex(12)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.post(
            "/api/auth/signup",
            json={
                "email": email,
                "password": password,
                "team_name": "Riverside U12",
                "device_id": "soak-owner",
            },
        )
    answer.raise_for_status()
    return email, password


async def soak(server: Server, opts: Options) -> Record:
    url = f"http://{HOST}:{server.port}"
    email, password = await sign_up(url)
    record = Record(opts.window_minutes * 60, opts.minutes * 60)
    club = Club(url, email, password, record)
    until = record.started + opts.minutes * 60
    rng = random.Random(opts.seed)
    coaches = [
        Coach(club, f"coach-{i + 1}", random.Random(rng.random())) for i in range(opts.coaches)
    ]
    match_s = opts.match_minutes * 60
    tasks = [
        asyncio.ensure_future(c.run(until, match_s, first_match_s=match_s * (i + 1) / len(coaches)))
        for i, c in enumerate(coaches)
    ]
    tasks += [
        asyncio.ensure_future(reader(club, f"reader-{i + 1}", until, random.Random(rng.random())))
        for i in range(opts.readers)
    ]
    tasks += [
        asyncio.ensure_future(viewer(coaches[i % len(coaches)], i < len(coaches), until, record))
        for i in range(opts.viewers)
    ]
    tasks.append(asyncio.ensure_future(sampler(server, record, until)))
    progress = asyncio.ensure_future(report_progress(record, until))
    try:
        done, pending = await asyncio.wait(tasks, timeout=opts.minutes * 60 + 120)
        for task in pending:
            task.cancel()
            record.error(f"a task did not finish: {task!r}")
        for task in done:
            if task.exception() is not None:
                record.error(f"a task failed: {task.exception()!r}")
    finally:
        progress.cancel()
        for client in club.clients:
            await client.aclose()
    return record


async def report_progress(record: Record, until: float) -> None:
    for _ in range(MAX_LOOPS):
        await asyncio.sleep(5)
        while record.shown < len(record.windows) - 1:
            print_window(record.windows[record.shown].row())
            record.shown += 1
        if time.monotonic() >= until:
            return


HEADER: Final = (
    f"  {'window':>6} {'pushes':>7} {'pulls':>6} {'viewer msgs':>11} {'push p50/p99 ms':>16}"
    f" {'pull p50/p99 ms':>16} {'delivery p50/p99 ms':>20} {'errors':>6} {'RSS MB':>7}"
    f" {'server cores':>12}"
)


def print_window(row: dict[str, Any]) -> None:
    print(
        f"  {row['window']:>6} {row['pushes']:>7,} {row['pulls']:>6,} {row['viewer_messages']:>11,}"
        f" {row['push_p50_ms']:>7.1f} / {row['push_p99_ms']:>6.1f}"
        f" {row['pull_p50_ms']:>7.1f} / {row['pull_p99_ms']:>6.1f}"
        f" {row['delivery_p50_ms']:>9.1f} / {row['delivery_p99_ms']:>8.1f}"
        f" {row['errors']:>6} {row['rss_mean_mb']:>7.1f} {row['server_cores']:>12.2f}",
        flush=True,
    )


def drift(first: float, last: float) -> str:
    if not first or first != first or last != last:
        return "n/a"
    return f"{(last - first) / first:+.0%}"


def summarise(record: Record, opts: Options) -> dict[str, Any]:
    rows = [w.row() for w in record.windows if w.rss]
    errors = [e for w in record.windows for e in w.errors]
    first, last = (rows[1], rows[-1]) if len(rows) > 2 else (rows[0], rows[-1])
    growth = (last["rss_mean_mb"] - first["rss_mean_mb"]) / first["rss_mean_mb"]
    return {
        "options": vars(opts) | {"json": str(opts.json) if opts.json else None},
        "windows": rows,
        "memory_growth": growth,
        "compared_windows": (first["window"], last["window"]),
        "errors": len(errors),
        "first_errors": errors[:10],
        "token_renewals": sum(w.renewals for w in record.windows),
        "drift": {
            key: drift(first[key], last[key])
            for key in (
                "push_p50_ms",
                "push_p99_ms",
                "pull_p50_ms",
                "pull_p99_ms",
                "delivery_p50_ms",
                "delivery_p99_ms",
            )
        },
        "ok": growth < 0.10 and not errors,
    }


@dataclass
class Options:
    minutes: float
    window_minutes: float
    database: str
    postgres_url: str
    coaches: int
    readers: int
    viewers: int
    match_minutes: float
    seed: int
    json: Path | None


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description="Steady pushes, pulls and viewers for a while.")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (30)")
    parser.add_argument("--window", type=float, default=5.0, help="minutes per window (5)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"loopback PostgreSQL (default $BENCH_POSTGRES_URL or {DEFAULT_POSTGRES})",
    )
    parser.add_argument("--coaches", type=int, default=4, help="pushing devices (4)")
    parser.add_argument("--readers", type=int, default=2, help="pulling devices (2)")
    parser.add_argument("--viewers", type=int, default=24, help="WebSocket viewers (24)")
    parser.add_argument("--match-minutes", type=float, default=5.0, help="per match (5)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0.5 <= args.minutes <= 24 * 60 or not 0.25 <= args.window <= args.minutes:
        parser.error("--minutes 0.5..1440, --window 0.25..minutes")
    if not 1 <= args.coaches <= 64 or not 0 <= args.readers <= 64 or not 0 <= args.viewers <= 1000:
        parser.error("--coaches 1..64, --readers 0..64, --viewers 0..1000")
    if not 0.25 <= args.match_minutes <= 24 * 60:
        parser.error("--match-minutes 0.25..1440")
    if args.database == "postgres":
        loopback_only(args.postgres_url, "database", "soak")
    return Options(
        minutes=args.minutes,
        window_minutes=args.window,
        database=args.database,
        postgres_url=args.postgres_url,
        coaches=args.coaches,
        readers=args.readers,
        viewers=args.viewers,
        match_minutes=args.match_minutes,
        seed=args.seed if args.seed is not None else secrets.randbelow(10**9),
        json=args.json,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(
        f"soak: {opts.minutes:g} min on {opts.database}, {opts.coaches} coaches,"
        f" {opts.readers} readers, {opts.viewers} viewers, a new match every"
        f" {opts.match_minutes:g} min per coach, windows of {opts.window_minutes:g} min;"
        f" seed {opts.seed}",
        flush=True,
    )
    print(HEADER, flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="touchline-soak-"))
    db = Database(
        "postgres" if opts.database == "postgres" else "sqlite", opts.postgres_url, workdir
    )
    try:
        server = start_sync_server(db, "soak", "soak", {})
        try:
            record = asyncio.run(soak(server, opts))
        finally:
            server.stop()
        asyncio.run(db.drop_schemas())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = summarise(record, opts)
    for window in record.windows[record.shown :]:
        print_window(window.row())  # not shown while the run went on
    first, last = result["compared_windows"]
    print(
        f"\nmemory growth {result['memory_growth']:+.1%} (window {last} against window {first});"
        f" errors {result['errors']}; token renewals {result['token_renewals']}"
    )
    print(
        "latency drift, same windows: " + ", ".join(f"{k} {v}" for k, v in result["drift"].items())
    )
    for error in result["first_errors"]:
        print(f"  error: {error}")
    print("result: " + ("passed" if result["ok"] else "FAILED"))
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
