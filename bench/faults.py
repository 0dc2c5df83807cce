"""Faults: devices keep syncing while the server is killed and PostgreSQL is restarted.

    .venv/bin/python bench/faults.py [--databases sqlite,postgres] [--devices 6]
        [--changes 1000] [--kills 6] [--sigterms 2] [--pg-restarts 4] [--pg-down 2]
        [--seed N] [--postgres-url URL] [--restart-cluster 15/main]

**Server kills**, on each database: one club, ``--devices`` simulated devices in this process,
each a ``touchline_client.SyncDevice`` with its own state file and HTTP connection pool, each
making ``--changes`` changes (events created, then edited: its own and other devices', some
archived) and syncing them in rounds with the client's retries. Meanwhile the controller kills
``sync-server serve`` with SIGKILL ``--kills`` times at random moments (a random point of the
run's progress, always while a push is in flight) and starts it again on the same port and
database; ``--sigterms`` more times it stops it with SIGTERM instead, which must shut down
gracefully within its 10 s (uvicorn then raises the signal again: exit status -15). Then a
device in a process of its own pushes a set and is SIGKILLed once the server has committed
it, before the device has read the answer; restarted from its state file, it re-sends the
set and the server must acknowledge it as duplicates.

**PostgreSQL restarts**: the same fleet against one server whose PostgreSQL is stopped
``--pg-restarts`` times (alternately ``fast``, which ends every session, and ``immediate``, a
crash that recovers from the WAL), kept down ``--pg-down`` seconds and started again. The
server is never restarted: it must answer 503 with ``Retry-After`` meanwhile (never 500) and
recover by itself. By default the cluster is a throwaway one of this run's own (``initdb``
into a temporary directory, on a free loopback port), so that other users of the machine's
PostgreSQL are not disturbed; ``--restart-cluster VERSION/NAME`` restarts a cluster of the
machine with ``pg_ctlcluster`` instead (with ``--postgres-url`` pointing at it), and starts it
again whatever happens.

**Checks**, after each phase: every change each device made (its own log of ``(device_id,
seq)`` and content) is in the server's log exactly once with that content, and nothing else
is; every device converges: its replica, live and reloaded from its state file, equals a
fresh replica built from a full pull (``include_own``); no answer was a 500 (or any 5xx but
503), and every 503 carried ``Retry-After``. The run prints the figures and exits 1 when a
check fails. See "Faults" in bench/README.md.

``tests/test_faults.py`` runs a shortened version of the same machinery in ``make test``.
Traffic goes only to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol, cast

import httpx

if __package__ in (None, ""):
    # Run as a script: `bench` is importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    HOST,
    free_port,
    loopback_only,
    median,
    server_base_env,
    sync_server_command,
)
from protocol.replica import Replica
from protocol.schema import Scalar
from protocol.wire import (
    ConflictRecord,
    LoggedChange,
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
    SyncTransport,
    SyncUnavailable,
)

FAULTS_SCRIPT: Final = Path(__file__).resolve()
START_TIMEOUT_S: Final = 60.0
SIGTERM_EXIT_S: Final = 30.0
GRACEFUL_S: Final = 10.0
"""`sync-server serve`'s timeout_graceful_shutdown."""
"""uvicorn waits up to 10 s for in-flight requests, then closes the lifespan."""
REQUEST_TIMEOUT_S: Final = 20.0
PASSWORD_VARIABLE: Final = "TOUCHLINE_FAULTS_PASSWORD"
COMMITTED: Final = "committed"
"""What the crashing device prints once the server answered its push, before reading it."""
FREEZE_S: Final = 120.0

KINDS: Final = ("tackle", "interception", "key_pass", "ball_won", "foul", "corner", "save", "goal")
NOTES: Final = ("pressing high", "won it back", "quick throw", "late", "good shape", "")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- where the server keeps its data ----------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A server's database: a SQLite file, or a schema of a PostgreSQL database."""

    kind: Literal["sqlite", "postgres"]
    url: str
    """The SQLAlchemy URL the server is given."""
    schema: str | None = None

    @classmethod
    def sqlite(cls, path: Path) -> Target:
        return cls("sqlite", f"sqlite+aiosqlite:///{path}")

    @classmethod
    def postgres(cls, url: str, schema: str) -> Target:
        """``url`` as ``postgresql://`` or ``postgresql+asyncpg://``."""
        return cls("postgres", "postgresql+asyncpg://" + url.split("://", 1)[1], schema)

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.kind == "postgres" else "SQLite"

    @property
    def dsn(self) -> str:
        """The libpq-style URL asyncpg takes (PostgreSQL only)."""
        return "postgresql://" + self.url.split("://", 1)[1]

    def env(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.url}
        if self.schema is not None:
            env["DATABASE_SCHEMA"] = self.schema
        return env

    def through(self, host: str, port: int) -> Target:
        """The same database reached at another address (a relay in front of it)."""
        from sqlalchemy.engine import make_url

        moved = make_url(self.url).set(host=host, port=port)
        return Target(self.kind, moved.render_as_string(hide_password=False), self.schema)

    async def drop(self) -> None:
        """Drop the PostgreSQL schema (a SQLite file goes with its directory)."""
        if self.kind != "postgres" or self.schema is None:
            return
        import asyncpg

        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()


def server_env(target: Target, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server on ``target``: production, signups open, limits that never
    refuse a fleet of devices that all come from 127.0.0.1 (they are still counted)."""
    env = server_base_env()
    env.update(target.env())
    env.update(extra or {})
    return env


# -- the server process -----------------------------------------------------------------------


class ServerProcess:
    """``sync-server serve`` on one port and database, started again after every kill."""

    def __init__(self, env: Mapping[str, str], workdir: Path, port: int | None = None) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def migrate(self) -> None:
        """What ``sync-server migrate`` does, in this process (it saves starting one)."""
        from sync_server.migrate import upgrade_to_head_async
        from sync_server.settings import Settings

        await upgrade_to_head_async(Settings.from_env(self.env))

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Start serving; returns the seconds until it answered ``/health``."""
        if self.running:
            raise RuntimeError("the server is already running")
        started = time.monotonic()
        self.process = self._spawn()
        self.starts += 1
        await self.wait_ready(started + timeout_s)
        return time.monotonic() - started

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [*sync_server_command(), "serve", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [*command, "--log-level", "warning"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, deadline: float) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                if not self.running:
                    raise RuntimeError(f"the server exited at start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(self.url + "/health")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer /health:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    async def terminate(self, timeout_s: float = SIGTERM_EXIT_S) -> int:
        """SIGTERM, as an orchestrator stops an instance; returns the exit code."""
        self.sigterm()
        return await self.exited(timeout_s)

    def sigterm(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    async def exited(self, timeout_s: float = SIGTERM_EXIT_S) -> int:
        """The exit code, once the process has exited (SIGKILLed after ``timeout_s``)."""
        assert self.process is not None
        try:
            return await asyncio.to_thread(self.process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the server did not exit {timeout_s:g} s after SIGTERM") from None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=SIGTERM_EXIT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    async def aclose(self) -> None:
        """:meth:`stop` without blocking the event loop (which may be serving the server's
        way to its database)."""
        await asyncio.to_thread(self.stop)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# -- what the devices saw ---------------------------------------------------------------------


@dataclass
class StatusLog:
    """Every HTTP answer the devices got, by status, and what each 5xx other than 503 said."""

    statuses: Counter[int] = field(default_factory=Counter)
    without_retry_after: int = 0
    """503 and 429 answers that lacked a ``Retry-After`` header."""
    server_errors: list[str] = field(default_factory=list)

    async def on_response(self, response: httpx.Response) -> None:
        status = response.status_code
        self.statuses[status] += 1
        if status in (429, 503) and not response.headers.get("retry-after"):
            self.without_retry_after += 1
        if status >= 500 and status != 503:
            await response.aread()
            request = response.request
            self.server_errors.append(
                f"{status} {request.method} {request.url.path}: {response.text[:300]}"
            )

    def client(self, base_url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> httpx.AsyncClient:
        """An HTTP client whose every answer is recorded here."""
        return httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            event_hooks={"response": [self.on_response]},
        )

    @property
    def count_5xx_not_503(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)


@dataclass
class Progress:
    """What the devices' pushes did, shared by the devices and the controller."""

    in_flight: int = 0
    acknowledged: int = 0
    """Changes acknowledged, re-sent ones included."""
    resent: int = 0
    """Changes the server acknowledged as already stored (their first answer was lost)."""
    unanswered: int = 0
    """Requests that got no answer at all (server killed, connection refused or reset)."""
    unavailable: int = 0
    """Requests answered 5xx or 429."""
    successes: list[tuple[float, float]] = field(default_factory=list)
    """(sent, answered) of every acknowledged push, in monotonic seconds."""
    open_pushes: set[int] = field(default_factory=set)
    """The pushes waiting for their answer now, by number."""
    answered: set[int] = field(default_factory=set)
    """The pushes that were acknowledged, by number."""
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _condition: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def changed(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout_s), self._condition:
                await self._condition.wait_for(predicate)
        except TimeoutError:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}") from None

    def recovered_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the answer of the first push sent after it."""
        answers = [answered for sent, answered in self.successes if sent >= moment]
        return min(answers) - moment if answers else None


class WatchedTransport:
    """The device's transport, counting for :class:`Progress` what each request got."""

    def __init__(self, inner: SyncTransport, progress: Progress) -> None:
        self.inner = inner
        self.progress = progress
        self.answers: list[PushResponse] = []
        self.unavailable = 0
        """This device's requests answered 5xx or 429."""

    async def push(self, request: PushRequest) -> PushResponse:
        progress = self.progress
        sent = time.monotonic()
        number = next(progress._numbers)
        progress.in_flight += 1
        progress.open_pushes.add(number)
        await progress.changed()
        try:
            answer = await self.inner.push(request)
        except SyncUnavailable as exc:
            await self._failed(exc)
            raise
        finally:
            progress.in_flight -= 1
            progress.open_pushes.discard(number)
        progress.answered.add(number)
        progress.acknowledged += answer.applied + answer.duplicates
        progress.resent += answer.duplicates
        progress.successes.append((sent, time.monotonic()))
        self.answers.append(answer)
        await progress.changed()
        return answer

    async def pull(self, request: PullRequest) -> PullResponse:
        try:
            return await self.inner.pull(request)
        except SyncUnavailable as exc:
            await self._failed(exc)
            raise

    async def conflicts(
        self, match_id: uuid.UUID | None = None, since: int = 0
    ) -> list[ConflictRecord]:
        return await self.inner.conflicts(match_id, since)

    async def reinstate(self, conflict_id: uuid.UUID) -> ReinstateResponse:
        return await self.inner.reinstate(conflict_id)

    async def _failed(self, exc: SyncUnavailable) -> None:
        if exc.status is None:
            self.progress.unanswered += 1
        else:
            self.progress.unavailable += 1
            self.unavailable += 1
        await self.progress.changed()


# -- the club and its devices -----------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """The club's owner: every device of the fleet logs in as this user, as itself."""

    email: str
    password: str
    club_id: str


async def sign_up(url: str, statuses: StatusLog, device_id: str = "owner") -> Account:
    email = f"faults-{secrets.token_hex(6)}@example.org"
    password = "faults-" + secrets.token_hex(12)
    body = {"email": email, "password": password, "team_name": "Riverside U12"}
    async with statuses.client(url) as http:
        answer = await http.post("/api/auth/signup", json={**body, "device_id": device_id})
    if answer.status_code != 201:
        raise RuntimeError(f"signup failed: {answer.status_code} {answer.text[:300]}")
    return Account(email, password, str(answer.json()["club"]["id"]))


Made = tuple[str, uuid.UUID, str, dict[str, Scalar]]
"""What a device made: table, record id, op and fields (keyed by its seq in a journal)."""


def made_by(change: LoggedChange) -> Made:
    return change.table, change.id, change.op, dict(change.fields)


class FleetDevice:
    """One coach's phone: makes changes, syncs them with retries, and keeps its own journal of
    every change it made, by seq, to compare with the server's log at the end."""

    def __init__(
        self,
        device: SyncDevice,
        transport: WatchedTransport,
        http: httpx.AsyncClient,
        state_path: Path,
        rng: random.Random,
        match_id: uuid.UUID,
        team_id: uuid.UUID,
    ) -> None:
        self.device = device
        self.transport = transport
        self.http = http
        self.state_path = state_path
        self.rng = rng
        self.match_id = match_id
        self.team_id = team_id
        self.journal: dict[int, Made] = {}
        self.own: list[uuid.UUID] = []
        self.gave_up = 0
        """Syncs that failed after every retry of the client's policy (then tried again)."""

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def settled(self) -> int:
        """How many of its changes the server has acknowledged."""
        return self.device.last_seq - self.device.pending

    def edit(self, count: int) -> None:
        """Make ``count`` changes: mostly new events, then edits of its own events and of
        other devices' (those may conflict), and now and then an event archived."""
        known = list(self.device.confirmed.live("events"))
        for _ in range(count):
            roll = self.rng.random()
            if not self.own or roll < 0.5:
                self._create()
            elif roll < 0.8 or not known:
                self._update(self.rng.choice(self.own))
            elif roll < 0.97:
                self._update(self.rng.choice(known))
            else:
                record = self.rng.choice(self.own)
                self.device.delete("events", record)
                self.journal[self.device.last_seq] = ("events", record, "delete", {})

    def _create(self) -> None:
        n = self.device.last_seq + 1
        fields: dict[str, Scalar] = {
            "match_id": str(self.match_id),
            "kind": KINDS[n % len(KINDS)],
            "team_id": str(self.team_id),
            "period_number": 1 + n % 2,
            "clock_ms": self.rng.randrange(0, 3_000_000),
            "notes": NOTES[n % len(NOTES)],
        }
        record = self.device.create("events", fields)
        self.own.append(record)
        self.journal[self.device.last_seq] = ("events", record, "upsert", fields)

    def _update(self, record: uuid.UUID) -> None:
        choices: list[dict[str, Scalar]] = [
            {"notes": f"{self.device_id} {self.rng.randrange(10**6)}"},
            {"sentiment": self.rng.randint(-4, 4)},
            {"clock_ms": self.rng.randrange(0, 3_000_000), "period_number": 2},
        ]
        fields = self.rng.choice(choices)
        self.device.update("events", record, fields)
        self.journal[self.device.last_seq] = ("events", record, "upsert", fields)

    async def run(self, changes: int, deadline: float, pace_s: float = 0.05) -> None:
        """Make ``changes`` changes in rounds, syncing after each, until all are
        acknowledged; a sync that fails after every retry is tried again."""
        while time.monotonic() < deadline:
            missing = changes - self.device.last_seq
            if missing > 0:
                self.edit(min(missing, self.rng.randint(1, 40)))
            try:
                await self.device.sync(max_changes=self.rng.choice((25, 100, 500)))
            except SyncUnavailable:
                self.gave_up += 1
                continue
            if self.device.last_seq >= changes and self.device.pending == 0:
                return
            await asyncio.sleep(self.rng.uniform(0.0, pace_s))
        raise TimeoutError(
            f"{self.device_id}: {self.device.pending} of {self.device.last_seq} changes still "
            "unacknowledged at the deadline"
        )

    async def sync_until_settled(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await self.device.sync()
            except SyncUnavailable:
                self.gave_up += 1
                continue
            if self.device.pending == 0:
                return
        raise TimeoutError(f"{self.device_id} did not settle before the deadline")


def client_retry() -> RetryPolicy:
    """The devices' retries: quick at first, a few seconds at most between tries."""
    return RetryPolicy(attempts=8, base_s=0.1, cap_s=2.0)


class Fleet:
    """The club's simulated devices, one HTTP client each."""

    def __init__(self, url: str, account: Account, statuses: StatusLog, workdir: Path) -> None:
        self.url = url
        self.account = account
        self.statuses = statuses
        self.workdir = workdir
        self.progress = Progress()
        self.devices: list[FleetDevice] = []
        self.finished = 0
        self.match_id = uuid.uuid4()
        self.team_id = uuid.uuid4()

    def add(self, device_id: str, rng: random.Random) -> FleetDevice:
        http = self.statuses.client(self.url)
        credentials = Credentials(self.account.email, self.account.password, device_id)
        transport = WatchedTransport(HttpTransport(http, credentials), self.progress)
        state_path = self.workdir / f"{device_id}.json"
        device = SyncDevice(
            device_id,
            transport,
            now_ms=now_ms,
            rng=rng,
            retry=client_retry(),
            state_path=state_path,
        )
        fleet_device = FleetDevice(
            device, transport, http, state_path, rng, self.match_id, self.team_id
        )
        self.devices.append(fleet_device)
        return fleet_device

    @property
    def settled(self) -> int:
        return sum(d.settled for d in self.devices)

    @property
    def done(self) -> bool:
        return self.finished == len(self.devices)

    def recovered_since(self, moment: float) -> Callable[[], bool]:
        """Whether a push sent after ``moment`` was acknowledged (or the fleet finished)."""
        return lambda: self.done or self.progress.recovered_after(moment) is not None

    async def run(self, changes: int, deadline: float, pace_s: float = 0.05) -> None:
        async def one(device: FleetDevice) -> None:
            try:
                await device.run(changes, deadline, pace_s)
            finally:
                self.finished += 1
                await self.progress.changed()

        await asyncio.gather(*(one(d) for d in self.devices))

    async def settle(self, deadline: float) -> None:
        """Every device pushes what it still holds, then every device pulls the rest."""
        for _ in range(2):
            for device in self.devices:
                await device.sync_until_settled(deadline)

    async def aclose(self) -> None:
        for device in self.devices:
            await device.http.aclose()


# -- the controller ---------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    pushes_in_flight: int
    back_s: float
    """Seconds until the server (or PostgreSQL) was back: answering /health, or accepting."""
    recovered_s: float | None = None
    """Seconds from the fault to the answer of the first push sent after it."""
    exit_code: int | None = None
    in_flight_answered: int | None = None
    """SIGTERM: of the pushes in flight when it was sent, how many were acknowledged (the
    others had not reached the server, or reached a connection it was closing, and were
    sent again)."""
    exit_s: float | None = None
    """SIGTERM: seconds until the process exited."""


async def wait_for_moment(
    fleet: Fleet, point: int, timeout_s: float, rng: random.Random, jitter_s: float
) -> bool:
    """Wait until the fleet has ``point`` changes acknowledged, then (after a random jitter)
    until a push is in flight. False when the fleet finished first."""
    progress = fleet.progress
    await progress.wait_for(
        lambda: fleet.done or fleet.settled >= point, timeout_s, f"{point} acknowledged changes"
    )
    if jitter_s:
        await asyncio.sleep(rng.uniform(0.0, jitter_s))
    await progress.wait_for(
        lambda: fleet.done or progress.in_flight > 0, timeout_s, "a push in flight"
    )
    return not fleet.done


def fault_points(total: int, count: int, rng: random.Random) -> list[int]:
    """``count`` random moments of a run of ``total`` changes, as acknowledged-change counts."""
    return sorted(int(total * rng.uniform(0.05, 0.85)) for _ in range(count))


async def kill_server_repeatedly(
    server: ServerProcess,
    fleet: Fleet,
    total: int,
    kinds: Sequence[Literal["SIGKILL", "SIGTERM"]],
    rng: random.Random,
    *,
    timeout_s: float,
    jitter_s: float = 0.0,
) -> list[Fault]:
    """Kill the server at random moments of the fleet's run, each time while a push is in
    flight, and start it again on the same port; returns what each kill cost."""
    faults: list[Fault] = []
    for point, kind in zip(fault_points(total, len(kinds), rng), kinds, strict=True):
        if not await wait_for_moment(fleet, point, timeout_s, rng, jitter_s):
            break
        in_flight = set(fleet.progress.open_pushes)
        moment = time.monotonic()
        exit_code = answered = exit_s = None
        if kind == "SIGKILL":
            server.kill()
        else:
            exit_code = await server.terminate()
            exit_s = time.monotonic() - moment
            answered = len(in_flight & fleet.progress.answered)
        await server.start()
        fault = Fault(
            kind,
            len(in_flight),
            time.monotonic() - moment,
            exit_code=exit_code,
            in_flight_answered=answered,
            exit_s=exit_s,
        )
        faults.append(fault)
        # Until it exits, a server stopped by SIGTERM still answers what it had taken in.
        gone = moment + (exit_s or 0.0)
        await fleet.progress.wait_for(
            fleet.recovered_since(gone), timeout_s, f"a push acknowledged after the {kind}"
        )
        recovered = fleet.progress.recovered_after(gone)
        fault.recovered_s = None if recovered is None else recovered + (gone - moment)
    return faults


# -- a device that dies between the server's commit and reading the answer ----------------------


@dataclass
class CrashResult:
    changes: int
    """Changes in the set that was pushed when the device was killed."""
    stored_before_restart: int
    """Of those, how many the server held while the device was dead."""
    pending_after_restart: int
    """How many the restarted device still held as unacknowledged."""
    resent_as_duplicates: int
    applied_on_resend: int
    journal: dict[int, Made]
    device: SyncDevice
    http: httpx.AsyncClient
    state_path: Path


async def crash_after_commit(
    url: str,
    account: Account,
    statuses: StatusLog,
    workdir: Path,
    *,
    device_id: str = "crash-device",
    changes: int = 40,
    match_id: uuid.UUID | None = None,
    timeout_s: float = 60.0,
) -> CrashResult:
    """A device in its own process makes ``changes`` changes and pushes them; the moment the
    server's answer arrives (the set is committed) and before the device reads it, the process
    is SIGKILLed. Restarted from its state file, the device re-sends the set, and carries on
    with a few more changes. The caller closes ``http``."""
    state_path = workdir / f"{device_id}.json"
    env = {**os.environ, PASSWORD_VARIABLE: account.password}
    args = ["--url", url, "--email", account.email, "--device-id", device_id]
    args += ["--state", str(state_path), "--changes", str(changes)]
    args += ["--match-id", str(match_id or uuid.uuid4())]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(FAULTS_SCRIPT),
        "crash-device",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(100):
                line = (await process.stdout.readline()).decode().strip()
                if line == COMMITTED or not line:
                    break
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await process.wait()
    if line != COMMITTED:
        raise RuntimeError(f"the crashing device ended before its push was answered: {line!r}")

    stored = sum(c.device_id == device_id for c in await full_pull(url, account, statuses))
    http = statuses.client(url)
    credentials = Credentials(account.email, account.password, device_id)
    transport = WatchedTransport(HttpTransport(http, credentials), Progress())
    device = SyncDevice.load(state_path, transport, now_ms=now_ms, retry=client_retry())
    pending = device.pending
    journal: dict[int, Made] = {
        c.seq: (c.table, c.id, c.op, dict(c.fields)) for c in device.pending_changes
    }
    await device.push()
    resent = sum(a.duplicates for a in transport.answers)
    applied = sum(a.applied for a in transport.answers)
    for _ in range(5):
        fields: dict[str, Scalar] = {"match_id": str(uuid.uuid4()), "kind": "save"}
        record = device.create("events", fields)
        journal[device.last_seq] = ("events", record, "upsert", fields)
    await device.sync()
    return CrashResult(changes, stored, pending, resent, applied, journal, device, http, state_path)


async def crash_device_main(args: argparse.Namespace) -> int:
    """The crashing device's process (``faults.py crash-device``)."""

    async def freeze_on_commit(response: httpx.Response) -> None:
        # The answer's head has arrived, so the server has committed the set; the device
        # never gets to read it.
        if response.request.url.path.endswith("/api/sync/push") and response.status_code == 200:
            print(COMMITTED, flush=True)
            await asyncio.sleep(FREEZE_S)
            os._exit(3)

    password = os.environ[PASSWORD_VARIABLE]
    async with httpx.AsyncClient(
        base_url=args.url, timeout=REQUEST_TIMEOUT_S, event_hooks={"response": [freeze_on_commit]}
    ) as http:
        credentials = Credentials(args.email, password, args.device_id)
        device = SyncDevice(
            args.device_id,
            HttpTransport(http, credentials),
            now_ms=now_ms,
            state_path=Path(args.state),
        )
        for n in range(args.changes):
            device.create(
                "events",
                {"match_id": args.match_id, "kind": KINDS[n % len(KINDS)], "clock_ms": n * 1000},
            )
        print("made", flush=True)
        await device.push()
    print("pushed without freezing", flush=True)
    return 1


# -- the checks -------------------------------------------------------------------------------


async def full_pull(url: str, account: Account, statuses: StatusLog) -> list[LoggedChange]:
    """The club's whole log, every device's changes included, as a new device pulls it."""
    observer = f"observer-{secrets.token_hex(4)}"
    changes: list[LoggedChange] = []
    cursor = 0
    async with statuses.client(url) as http:
        transport = HttpTransport(http, Credentials(account.email, account.password, observer))
        for _ in range(100_000):
            request = PullRequest(device_id=observer, cursor=cursor, limit=1000, include_own=True)
            page = await transport.pull(request)
            changes.extend(page.changes)
            if not page.has_more:
                return changes
            cursor = page.cursor
    raise RuntimeError("the full pull did not end")


@dataclass
class Verdict:
    made: int
    """Changes the devices made (each device's last seq, summed)."""
    duplicates: int
    """Log entries beyond the first of one (device, seq)."""
    losses: int
    """Changes a device made that the log does not hold."""
    phantoms: int
    """Log entries of these devices that no device made."""
    mismatches: list[str]
    """Changes stored with other content than the device made."""
    diverged: list[str]
    """Devices whose replica (live or reloaded) differs from a fresh one of the full log."""
    records: int
    journal_gaps: list[str]

    @property
    def ok(self) -> bool:
        return not (
            self.duplicates
            or self.losses
            or self.phantoms
            or self.mismatches
            or self.diverged
            or self.journal_gaps
        )

    def problems(self) -> list[str]:
        found = [
            f"{name}: {value}"
            for name, value in (
                ("duplicates", self.duplicates),
                ("losses", self.losses),
                ("phantoms", self.phantoms),
            )
            if value
        ]
        found += [f"content differs: {m}" for m in self.mismatches[:5]]
        found += [f"diverged: {d}" for d in self.diverged]
        found += [f"journal: {g}" for g in self.journal_gaps]
        return found


def check(
    journals: Mapping[str, Mapping[int, Made]],
    last_seqs: Mapping[str, int],
    log: Sequence[LoggedChange],
    replicas: Mapping[str, Replica],
) -> Verdict:
    """Compare each device's journal with the server's log, and each replica with a fresh
    one built from the log."""
    counts: dict[str, Counter[int]] = {d: Counter() for d in journals}
    stored: dict[tuple[str, int], LoggedChange] = {}
    for change in log:
        if change.device_id in counts:
            counts[change.device_id][change.seq] += 1
            stored[change.device_id, change.seq] = change
    duplicates = sum(n - 1 for c in counts.values() for n in c.values() if n > 1)
    losses = sum(1 for d, journal in journals.items() for seq in journal if not counts[d][seq])
    phantoms = sum(1 for d, c in counts.items() for seq in c if seq not in journals[d])
    mismatches = [
        f"{d} seq {seq}: made {made}, stored {made_by(stored[d, seq])}"
        for d, journal in journals.items()
        for seq, made in journal.items()
        if (d, seq) in stored and made_by(stored[d, seq]) != made
    ]
    gaps = [
        f"{d} made seqs 1..{last_seqs[d]} but journaled {len(journal)}"
        for d, journal in journals.items()
        if set(journal) != set(range(1, last_seqs[d] + 1))
    ]
    fresh = Replica()
    for change in log:
        fresh.apply(change)
    expected = fresh.snapshot()
    diverged = [name for name, replica in replicas.items() if replica.snapshot() != expected]
    return Verdict(
        made=sum(last_seqs.values()),
        duplicates=duplicates,
        losses=losses,
        phantoms=phantoms,
        mismatches=mismatches,
        diverged=diverged,
        records=len(expected),
        journal_gaps=gaps,
    )


class Offline:
    """The transport of a device reloaded only to look at its state."""

    async def push(self, request: PushRequest) -> PushResponse:
        raise SyncUnavailable("offline")

    async def pull(self, request: PullRequest) -> PullResponse:
        raise SyncUnavailable("offline")

    async def conflicts(
        self, match_id: uuid.UUID | None = None, since: int = 0
    ) -> list[ConflictRecord]:
        raise SyncUnavailable("offline")

    async def reinstate(self, conflict_id: uuid.UUID) -> ReinstateResponse:
        raise SyncUnavailable("offline")


async def check_fleet(
    fleet: Fleet, extra: Sequence[tuple[SyncDevice, Path, Mapping[int, Made]]] = ()
) -> Verdict:
    """:func:`check` for every device of ``fleet`` and ``extra`` (device, state file,
    journal): each replica as it is, and as its state file reloads it."""
    devices = [(d.device, d.state_path, d.journal) for d in fleet.devices] + list(extra)
    log = await full_pull(fleet.url, fleet.account, fleet.statuses)
    replicas: dict[str, Replica] = {}
    for device, path, _ in devices:
        replicas[device.device_id] = device.view()
        reloaded = SyncDevice.load(path, Offline(), now_ms=now_ms)
        replicas[f"{device.device_id} (reloaded)"] = reloaded.view()
    return check(
        {d.device_id: journal for d, _, journal in devices},
        {d.device_id: d.last_seq for d, _, _ in devices},
        log,
        replicas,
    )


# -- PostgreSQL restarts ----------------------------------------------------------------------


class Postgres(Protocol):
    url: str

    async def stop(self, mode: Literal["fast", "immediate"]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Leave the cluster as it should be at the end (running, or removed if private)."""
        ...


def postgres_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL's initdb is not installed")
    return Path(initdb).parent


async def wait_accepting(dsn: str, timeout_s: float = START_TIMEOUT_S) -> None:
    import asyncpg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not come back: {exc!r}") from exc
            await asyncio.sleep(0.1)
            continue
        await conn.close()
        return


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: ``initdb`` into a temporary directory, served on a free
    loopback port (as the ``postgres`` user when run as root), removed at the end."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="touchline-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / program), *args],
            user=self.user,
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def create(self) -> None:
        if self.user is not None:
            shutil.chown(self.root, self.user)
        init = ("-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        await asyncio.to_thread(self._run, "initdb", *init)
        await self.start()

    async def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses={HOST} -k {self.root}"
        log = str(self.root / "postgres.log")
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start"
        )
        await wait_accepting(self.url)

    async def stop(self, mode: Literal["fast", "immediate"]) -> None:
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    async def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                await self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class SystemCluster:
    """A cluster of the machine (Debian's ``pg_ctlcluster``); started again at the end, whatever
    happened."""

    def __init__(self, cluster: str, url: str) -> None:
        self.version, self.name = cluster.split("/", 1)
        self.url = url

    def _ctl(self, *args: str, check: bool = True) -> int:
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *args]
        return subprocess.run(command, check=check, timeout=120).returncode

    async def stop(self, mode: Literal["fast", "immediate"]) -> None:
        await asyncio.to_thread(self._ctl, "stop", "-m", mode)

    async def start(self) -> None:
        await asyncio.to_thread(self._ctl, "start")
        await wait_accepting(self.url)

    async def close(self) -> None:
        if await asyncio.to_thread(self._ctl, "status", check=False) != 0:
            await self.start()
        await wait_accepting(self.url)


async def restart_postgres_repeatedly(
    postgres: Postgres,
    fleet: Fleet,
    total: int,
    restarts: int,
    down_s: float,
    rng: random.Random,
    *,
    timeout_s: float,
) -> list[Fault]:
    """Stop PostgreSQL at random moments of the fleet's run (while a push is in flight), keep
    it down ``down_s``, start it again; the server is left alone."""
    faults: list[Fault] = []
    for i, point in enumerate(fault_points(total, restarts, rng)):
        if not await wait_for_moment(fleet, point, timeout_s, rng, 0.5):
            break
        mode: Literal["fast", "immediate"] = "fast" if i % 2 == 0 else "immediate"
        in_flight = fleet.progress.in_flight
        moment = time.monotonic()
        try:
            await postgres.stop(mode)
            await asyncio.sleep(down_s)  # the outage itself
        finally:
            await postgres.start()
        fault = Fault(f"PostgreSQL {mode} stop", in_flight, time.monotonic() - moment)
        faults.append(fault)
        back = time.monotonic()
        await fleet.progress.wait_for(
            fleet.recovered_since(back), timeout_s, "a push acknowledged after PostgreSQL is back"
        )
        recovered = fleet.progress.recovered_after(back)
        fault.recovered_s = None if recovered is None else recovered + (back - moment)
    return faults


# -- the phases -------------------------------------------------------------------------------


@dataclass
class PhaseReport:
    name: str
    database: str
    devices: int
    seconds: float
    faults: list[Fault]
    statuses: Counter[int]
    without_retry_after: int
    server_errors: list[str]
    progress: Progress
    verdict: Verdict
    crash: CrashResult | None = None
    server_starts: int = 1
    problems: list[str] = field(default_factory=list)
    server_log: str = ""
    """What the server logged (warnings and errors), every start of it."""

    @property
    def ok(self) -> bool:
        return not self.problems and self.verdict.ok


def judge(report: PhaseReport, *, expect_503: bool) -> None:
    """Fill in ``report.problems``: what the run's checks found wrong."""
    problems = report.problems
    problems += report.verdict.problems()
    if report.server_errors or sum(n for s, n in report.statuses.items() if s >= 500 and s != 503):
        problems.append(f"5xx other than 503: {report.server_errors[:3]}")
    if report.without_retry_after:
        problems.append(f"{report.without_retry_after} answers 503/429 without Retry-After")
    if expect_503 and not report.statuses[503]:
        problems.append("no 503 seen during the database outage")
    # uvicorn shuts down gracefully on SIGTERM and then raises it again, so that the exit
    # status says what stopped the process.
    problems += [
        f"SIGTERM exit code {f.exit_code}"
        for f in report.faults
        if f.exit_code not in (None, 0, -signal.SIGTERM)
    ]
    problems += [
        f"SIGTERM: exit after {f.exit_s:.1f} s, beyond the graceful shutdown's 10 s"
        for f in report.faults
        if f.exit_s is not None and f.exit_s >= GRACEFUL_S
    ]
    if "timeout graceful shutdown exceeded" in report.server_log:
        problems.append("the server cancelled requests: timeout graceful shutdown exceeded")
    problems += [f"no recovery after {f.kind}" for f in report.faults if f.recovered_s is None]
    if report.crash is not None:
        crash = report.crash
        if not (
            crash.stored_before_restart
            == crash.pending_after_restart
            == crash.resent_as_duplicates
            == crash.changes
            and crash.applied_on_resend == 0
        ):
            problems.append(
                f"crashed device: {crash.changes} pushed, {crash.stored_before_restart} stored, "
                f"{crash.pending_after_restart} pending after restart, "
                f"{crash.resent_as_duplicates} re-sent as duplicates, "
                f"{crash.applied_on_resend} applied again"
            )


async def server_kill_phase(
    target: Target,
    workdir: Path,
    *,
    devices: int,
    changes: int,
    kills: int,
    sigterms: int,
    rng: random.Random,
    timeout_s: float,
    jitter_s: float = 0.3,
    crash_changes: int = 40,
    pace_s: float = 0.05,
) -> PhaseReport:
    """Server kills on ``target``: see the module's docstring."""
    statuses = StatusLog()
    server = ServerProcess(server_env(target), workdir)
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        await server.migrate()
        await server.start()
        account = await sign_up(server.url, statuses)
        fleet = Fleet(server.url, account, statuses, workdir)
        for i in range(devices):
            fleet.add(f"phone-{i + 1:02d}", random.Random(rng.random()))
        kinds = cast("list[Literal['SIGKILL', 'SIGTERM']]", ["SIGKILL"] * kills)
        kinds += ["SIGTERM"] * sigterms
        rng.shuffle(kinds)
        crash: CrashResult | None = None
        try:
            run = asyncio.ensure_future(fleet.run(changes, deadline, pace_s))
            try:
                faults = await kill_server_repeatedly(
                    server,
                    fleet,
                    devices * changes,
                    kinds,
                    rng,
                    timeout_s=timeout_s,
                    jitter_s=jitter_s,
                )
            finally:
                if not run.done():
                    await asyncio.wait([run], timeout=max(1.0, deadline - time.monotonic()))
                run.cancel()
            await run
            extra = []
            if crash_changes:
                crash = await crash_after_commit(
                    server.url,
                    account,
                    statuses,
                    workdir,
                    changes=crash_changes,
                    match_id=fleet.match_id,
                )
                extra.append((crash.device, crash.state_path, crash.journal))
            await fleet.settle(deadline)
            verdict = await check_fleet(fleet, extra)
        finally:
            await fleet.aclose()
            if crash is not None:
                await crash.http.aclose()
    finally:
        await server.aclose()
    report = PhaseReport(
        "server kills",
        target.label,
        devices,
        time.monotonic() - started,
        faults,
        statuses.statuses,
        statuses.without_retry_after,
        statuses.server_errors,
        fleet.progress,
        verdict,
        crash,
        server.starts,
        server_log=server.log_tail(1_000_000),
    )
    judge(report, expect_503=False)
    if len(faults) != len(kinds):
        report.problems.append(f"only {len(faults)} of {len(kinds)} kills happened")
    return report


async def postgres_restart_phase(
    postgres: Postgres,
    workdir: Path,
    *,
    devices: int,
    changes: int,
    restarts: int,
    down_s: float,
    rng: random.Random,
    timeout_s: float,
    pace_s: float = 0.05,
) -> PhaseReport:
    """PostgreSQL restarts under one server: see the module's docstring."""
    statuses = StatusLog()
    target = Target.postgres(postgres.url, f"faults_{secrets.token_hex(4)}")
    server = ServerProcess(server_env(target), workdir)
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        await server.migrate()
        await server.start()
        pid = server.pid
        account = await sign_up(server.url, statuses)
        fleet = Fleet(server.url, account, statuses, workdir)
        for i in range(devices):
            fleet.add(f"tablet-{i + 1:02d}", random.Random(rng.random()))
        try:
            run = asyncio.ensure_future(fleet.run(changes, deadline, pace_s))
            try:
                faults = await restart_postgres_repeatedly(
                    postgres, fleet, devices * changes, restarts, down_s, rng, timeout_s=timeout_s
                )
            finally:
                if not run.done():
                    await asyncio.wait([run], timeout=max(1.0, deadline - time.monotonic()))
                run.cancel()
            await run
            await fleet.settle(deadline)
            verdict = await check_fleet(fleet)
        finally:
            await fleet.aclose()
        same_process = server.running and server.pid == pid and server.starts == 1
    finally:
        await server.aclose()
        with contextlib.suppress(Exception):
            await target.drop()
    report = PhaseReport(
        "PostgreSQL restarts",
        target.label,
        devices,
        time.monotonic() - started,
        faults,
        statuses.statuses,
        statuses.without_retry_after,
        statuses.server_errors,
        fleet.progress,
        verdict,
        server_starts=server.starts,
        server_log=server.log_tail(1_000_000),
    )
    judge(report, expect_503=True)
    if not same_process:
        report.problems.append("the server process did not survive the outages by itself")
    if len(faults) != restarts:
        report.problems.append(f"only {len(faults)} of {restarts} restarts happened")
    return report


# -- the run ----------------------------------------------------------------------------------


def print_report(report: PhaseReport) -> None:
    v = report.verdict
    p = report.progress
    print(f"\n{report.name} ({report.database}, {report.devices} devices): {report.seconds:.0f} s")
    print(
        f"  changes made {v.made:,}, stored once each; records {v.records:,};"
        f" duplicates {v.duplicates}, losses {v.losses}, other entries {v.phantoms},"
        f" content differing {len(v.mismatches)}, replicas diverged {len(v.diverged)}"
    )
    for fault in report.faults:
        recovered = "never"
        if fault.recovered_s is not None:
            recovered = (
                f"{fault.recovered_s:.2f} s ({fault.recovered_s - fault.back_s:.2f} s later)"
            )
        code = ""
        if fault.exit_code is not None:
            code = (
                f"; {fault.in_flight_answered} of them answered 200;"
                f" exit {fault.exit_code} after {fault.exit_s:.2f} s"
            )
        print(
            f"  {fault.kind:<24} {fault.pushes_in_flight} push(es) in flight; back after"
            f" {fault.back_s:.2f} s, first push acknowledged after {recovered}{code}"
        )
    statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(report.statuses.items()))
    print(f"  answers by status: {statuses}")
    print(
        f"  503s {report.statuses[503]} (without Retry-After: {report.without_retry_after}),"
        f" 500s {report.statuses[500]}, requests with no answer {p.unanswered},"
        f" changes re-sent and recognised as stored {p.resent:,}"
    )
    if report.crash is not None:
        c = report.crash
        print(
            f"  device SIGKILLed after the commit: {c.changes} changes pushed,"
            f" {c.stored_before_restart} stored, {c.pending_after_restart} pending on restart,"
            f" re-sent: {c.resent_as_duplicates} acknowledged as duplicates,"
            f" {c.applied_on_resend} applied again"
        )
    for problem in report.problems:
        print(f"  FAILED: {problem}")
    if report.problems:
        print("  the server's log ends with:\n" + report.server_log[-3000:])


def print_summary(reports: Sequence[PhaseReport]) -> None:
    kills = [f for r in reports if r.name == "server kills" for f in r.faults]
    restarts = [f for r in reports if r.name != "server kills" for f in r.faults]

    def recovery(faults: list[Fault]) -> str:
        times = [f.recovered_s for f in faults if f.recovered_s is not None]
        if not times:
            return "-"
        return f"median {median(times):.2f} s, max {max(times):.2f} s"

    print("\nsummary")
    print(f"  changes pushed               {sum(r.verdict.made for r in reports):,}")
    print(
        f"  server kills survived        {len(kills)}"
        f" ({sum(f.kind == 'SIGKILL' for f in kills)} SIGKILL,"
        f" {sum(f.kind == 'SIGTERM' for f in kills)} SIGTERM); recovery {recovery(kills)}"
    )
    print(f"  PostgreSQL restarts          {len(restarts)}; recovery {recovery(restarts)}")
    print(f"  503s seen                    {sum(r.statuses[503] for r in reports):,}")
    print(f"  500s seen                    {sum(r.statuses[500] for r in reports)}")
    print(f"  duplicates                   {sum(r.verdict.duplicates for r in reports)}")
    print(f"  losses                       {sum(r.verdict.losses for r in reports)}")
    failed = [r for r in reports if not r.ok]
    print("  result                       " + ("FAILED" if failed else "all checks passed"))


@dataclass
class Options:
    databases: list[Literal["sqlite", "postgres"]]
    devices: int
    changes: int
    kills: int
    sigterms: int
    pg_restarts: int
    pg_down: float
    seed: int
    postgres_url: str
    restart_cluster: str | None
    timeout: float


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description="Devices syncing through server kills and PostgreSQL restarts."
    )
    parser.add_argument("--databases", default="sqlite,postgres", help="server-kill phases")
    parser.add_argument("--devices", type=int, default=6, help="simulated devices (6)")
    parser.add_argument("--changes", type=int, default=1000, help="changes per device (1000)")
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs per database (6)")
    parser.add_argument("--sigterms", type=int, default=2, help="SIGTERMs per database (2)")
    parser.add_argument("--pg-restarts", type=int, default=4, help="PostgreSQL restarts (4)")
    parser.add_argument("--pg-down", type=float, default=2.0, help="seconds down each time (2)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase, seconds (900)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL of the server-kill phase (and of --restart-cluster)",
    )
    parser.add_argument(
        "--restart-cluster",
        metavar="VERSION/NAME",
        help="restart this cluster of the machine (pg_ctlcluster) instead of a private one",
    )
    args = parser.parse_args(argv)
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if any(d not in ("sqlite", "postgres") for d in databases):
        parser.error("--databases takes sqlite and/or postgres")
    if not 1 <= args.devices <= 32 or not 1 <= args.changes <= 100_000:
        parser.error("--devices 1..32, --changes 1..100000")
    if not 0 <= args.kills <= 100 or not 0 <= args.sigterms <= 100:
        parser.error("--kills and --sigterms 0..100")
    if not 0 <= args.pg_restarts <= 100 or not 0 <= args.pg_down <= 60:
        parser.error("--pg-restarts 0..100, --pg-down 0..60")
    if "postgres" in databases or args.restart_cluster:
        loopback_only(args.postgres_url, "database", "faults")
    if args.restart_cluster and "/" not in args.restart_cluster:
        parser.error("--restart-cluster takes VERSION/NAME, such as 15/main")
    seed = args.seed if args.seed is not None else secrets.randbelow(10**9)
    return Options(
        databases=cast("list[Literal['sqlite', 'postgres']]", databases),
        devices=args.devices,
        changes=args.changes,
        kills=args.kills,
        sigterms=args.sigterms,
        pg_restarts=args.pg_restarts,
        pg_down=args.pg_down,
        seed=seed,
        postgres_url=args.postgres_url,
        restart_cluster=args.restart_cluster,
        timeout=args.timeout,
    )


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="touchline-faults-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def run(opts: Options) -> int:
    rng = random.Random(opts.seed)
    print(
        f"faults: {opts.devices} devices x {opts.changes} changes per phase; per database"
        f" {opts.kills} SIGKILL + {opts.sigterms} SIGTERM; {opts.pg_restarts} PostgreSQL"
        f" restarts of {opts.pg_down:g} s; seed {opts.seed}"
    )
    reports: list[PhaseReport] = []
    with workspace() as workdir:
        for kind in opts.databases:
            phase_dir = workdir / kind
            phase_dir.mkdir()
            target = (
                Target.sqlite(phase_dir / "faults.db")
                if kind == "sqlite"
                else Target.postgres(opts.postgres_url, f"faults_{secrets.token_hex(4)}")
            )
            try:
                report = await server_kill_phase(
                    target,
                    phase_dir,
                    devices=opts.devices,
                    changes=opts.changes,
                    kills=opts.kills,
                    sigterms=opts.sigterms,
                    rng=rng,
                    timeout_s=opts.timeout,
                )
            finally:
                await target.drop()
            print_report(report)
            reports.append(report)
        if opts.pg_restarts:
            phase_dir = workdir / "restarts"
            phase_dir.mkdir()
            postgres: Postgres
            if opts.restart_cluster:
                postgres = SystemCluster(opts.restart_cluster, opts.postgres_url)
            else:
                private = PrivatePostgres()
                postgres = private
            try:
                if not opts.restart_cluster:
                    await private.create()
                report = await postgres_restart_phase(
                    postgres,
                    phase_dir,
                    devices=opts.devices,
                    changes=opts.changes,
                    restarts=opts.pg_restarts,
                    down_s=opts.pg_down,
                    rng=rng,
                    timeout_s=opts.timeout,
                )
            finally:
                await postgres.close()
            print_report(report)
            reports.append(report)
    print_summary(reports)
    return 0 if all(r.ok for r in reports) else 1


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["crash-device"]:
        parser = argparse.ArgumentParser(prog="faults.py crash-device")
        for name in ("--url", "--email", "--device-id", "--state", "--match-id"):
            parser.add_argument(name, required=True)
        parser.add_argument("--changes", type=int, required=True)
        return asyncio.run(crash_device_main(parser.parse_args(arguments[1:])))
    opts = parse_args(arguments)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(run(opts))


if __name__ == "__main__":
    sys.exit(main())
