"""The load generator of ``bench/fanout.py``: viewer processes and the publisher process.

Each process runs one asyncio loop (uvloop when installed) and obeys the commands the
benchmark sends down a multiprocessing pipe, answering on the same pipe. A process whose pipe
closes (the benchmark finished or died) drops its sockets and exits.

**Viewers** hold WebSocket connections with the ``websockets`` client: no compression unless
asked for, no client pings (browsers send none). Each notes the wall-clock time
(``time.time_ns``, comparable across processes) at which every frame arrives; ``event``
frames by their event id. **The publisher** creates events on a fixed schedule, through
Touchline's REST API (``POST /api/matches/{id}/events`` with the event id chosen here) or as
``<match>\\n<json>`` frames on the bare server's ``/pub`` socket, and notes when each was sent
and when the write was answered.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import urllib.parse
import uuid
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal, cast

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from bench.common import HttpConnection

STEADY_KINDS = ("tackle", "interception", "key_pass", "ball_won", "ball_lost", "save", "corner")
"""Kinds that change no score: one ``event`` message per viewer and nothing else."""

DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)

MAX_ERRORS = 5
"""Error texts kept per process; the rest are only counted."""


# -- what goes down and up the pipes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ViewerTarget:
    url: str
    match: str
    """The match the viewer watches (the bare server's room or Touchline's match id)."""


@dataclass(frozen=True, slots=True)
class ViewerConfig:
    targets: tuple[ViewerTarget, ...]
    expect_snapshot: bool
    """Touchline sends ``snapshot`` first: a viewer counts as connected once it has it."""
    deflate: bool
    """Offer permessage-deflate, as browsers do."""
    concurrency: int = 50
    """Handshakes in flight at once in this process."""
    timeout_s: float = 60.0


@dataclass(slots=True)
class ConnectReport:
    opened: int
    failed: int
    errors: list[str]
    seconds: float
    extensions: str | None
    """The ``Sec-WebSocket-Extensions`` the server answered (first connection)."""


@dataclass(slots=True)
class ViewerRecord:
    match: str
    events: dict[str, int]
    """Event id -> arrival time (ns) of its first copy."""
    duplicates: int
    closed: str | None
    """Why the server or the network ended the connection, if it did before the end."""


@dataclass(slots=True)
class ViewerReport:
    viewers: list[ViewerRecord]
    frames: list[tuple[int, str, int]]
    """(arrival ns, type, events carried) of every frame after the snapshots."""


@dataclass(frozen=True, slots=True)
class PublishTarget:
    match: str
    bearer: str
    """A coach's access token of the match's club (Touchline); empty for the bare server."""
    device: str = ""
    """The device that token belongs to (sync pushes name it)."""
    team: str = ""
    """The match's home team id."""


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    kind: Literal["bare", "touchline"]
    url: str
    """``ws://127.0.0.1:P/pub`` or ``http://127.0.0.1:P``."""
    concurrency: int = 32
    """Touchline: writes in flight at once (one keep-alive connection each)."""
    writes: Literal["socket", "push", "rest"] = "socket"
    """Touchline: how events are written: a coach device's sync push over the match's live
    socket (PROTOCOL.md §17.5, what a live coach does), the same push over HTTP
    (POST /api/sync/push), or the REST API's POST /api/matches/{id}/events."""


@dataclass(frozen=True, slots=True)
class PublishJob:
    targets: tuple[PublishTarget, ...]
    """Event ``i`` goes to ``targets[i % len(targets)]``."""
    start_ns: int
    count: int
    interval_ns: int
    kind: str | None
    """Every event's kind; ``None`` cycles through ``STEADY_KINDS``."""


@dataclass(slots=True)
class Sent:
    match: str
    event_id: str
    due_ns: int
    send_ns: int
    done_ns: int
    """When the write was answered (Touchline) or handed to the socket (bare)."""
    ok: bool


@dataclass(slots=True)
class PublishReport:
    sent: list[Sent]
    errors: list[str]
    failed: int


# -- small things every process does -----------------------------------------------------------


def prepare_process() -> None:
    """All the file descriptors the hard limit allows; uvloop when installed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _receive(pipe: Connection) -> object | None:
    try:
        command: object = pipe.recv()
    except (EOFError, OSError):
        return None
    return command


def viewer_delta_message(seq: int, event_id: str, kind: str, clock_ms: int, goals: int) -> str:
    """What Touchline sends a viewer for a new event (PROTOCOL.md §17.2), in shape and size:
    the bare server broadcasts exactly this. A goal changes the score, so its ``delta`` also
    carries the match header."""
    seconds = clock_ms // 1000
    now_ms = time.time_ns() // 1_000_000
    message: dict[str, object] = {"type": "delta", "seq": seq, "server_time_ms": now_ms}
    if kind in ("goal", "own_goal"):
        message["match"] = {
            "id": str(uuid.uuid4()),
            "home_team": "Riverside U11 0",
            "away_team": "Hillview U11 0",
            "score": {"home": goals, "away": 0},
            "status": "live",
            "current_period": 1,
            "clock_time": "10:00",
            "clock_running": True,
            "period_elapsed_ms": 600_000 + seconds * 1000,
            "period_format": "half",
            "kickoff_ts": "2026-11-21T10:00:00+00:00",
            "competition": None,
            "venue": "Riverside Park, pitch 3",
        }
    message["events"] = [
        {
            "id": event_id,
            "kind": kind,
            "player": None,
            "team": "home",
            "timestamp": f"{seconds // 60:02d}:{seconds % 60:02d}",
            "period": 1,
        }
    ]
    return json.dumps(message, separators=(",", ":"))


# -- viewers ----------------------------------------------------------------------------------


class _EventId(msgspec.Struct):
    id: str


class _Frame(msgspec.Struct):
    """What a viewer looks at in a message: its type and the ids of the events it carries
    (``delta``: ``events``; the earlier one-event message: ``event``)."""

    type: str
    event: _EventId | None = None
    events: list[_EventId] | None = None


_decode_frame = msgspec.json.Decoder(_Frame).decode


class _ViewerProtocol(asyncio.Protocol):
    """One viewer: the `websockets` Sans-I/O client protocol on an asyncio transport.

    The library's asyncio client wakes a task and a future for every message: about 28 µs
    of CPU per frame here against about 19 for this, and in a burst of 2,000 frames that
    queueing in the load generator showed in the bare server's median latency. Frames are
    parsed (and pings answered) by the same library code; the arrival time is read once per
    chunk of data the socket delivers, before any message in it is decoded.
    """

    def __init__(self, owner: ViewerSet, target: ViewerTarget) -> None:
        self.owner = owner
        self.match = target.match
        self.protocol = ClientProtocol(
            parse_uri(target.url),
            extensions=enable_client_permessage_deflate(None) if owner.config.deflate else None,
            max_size=8 * 1024 * 1024,
        )
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        """Done once the viewer is connected (Touchline: has its snapshot), with the
        ``Sec-WebSocket-Extensions`` the server answered."""
        self.extensions = ""
        self.events: dict[str, int] = {}
        self.duplicates = 0
        self.closed: str | None = None
        self.fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        now = time.time_ns()
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self._answered(event)
            elif isinstance(event, Frame) and event.opcode in DATA_OPCODES:
                self.fragments.append(bytes(event.data))
                if event.fin:
                    message = b"".join(self.fragments)
                    self.fragments.clear()
                    self._message(message, now)
        self._flush()

    def _answered(self, response: Response) -> None:
        if self.protocol.handshake_exc is not None:
            self._fail(self.protocol.handshake_exc)
            return
        self.extensions = response.headers.get("Sec-WebSocket-Extensions", "")
        if not self.owner.config.expect_snapshot and not self.opened.done():
            self.opened.set_result(self.extensions)

    def _message(self, message: bytes, now: int) -> None:
        try:
            frame = _decode_frame(message)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._fail(RuntimeError(f"undecodable message: {exc}: {message[:200]!r}"))
            if self.transport is not None:
                self.transport.abort()
            return
        if not self.opened.done():
            if frame.type == "snapshot":
                self.opened.set_result(self.extensions)
            else:
                self._fail(RuntimeError(f"first message is not a snapshot: {message[:300]!r}"))
        else:
            carried = frame.events or ([frame.event] if frame.event is not None else [])
            for event in carried:
                if event.id in self.events:
                    self.duplicates += 1
                else:
                    self.events[event.id] = now
            self.owner.frames.append((now, frame.type, len(carried)))

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        elif self.closed is None and not self.owner.closing:
            self.closed = str(exc)

    def _flush(self) -> None:
        if self.transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.protocol.close_expected():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        received = self.protocol.close_rcvd
        why = (
            f"closed {received.code} {received.reason}".strip()
            if received is not None
            else f"connection lost{f': {exc}' if exc else ''}"
        )
        if not self.opened.done():
            self.opened.set_exception(
                self.protocol.handshake_exc or ConnectionError(f"before it opened: {why}")
            )
        elif self.closed is None and not self.owner.closing:
            self.closed = why

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with suppress(Exception):
            self.protocol.send_close(1000)
            self._flush()
        self.transport.close()


class ViewerSet:
    """The connections of one viewer process."""

    def __init__(self, config: ViewerConfig) -> None:
        self.config = config
        self.next_target = 0
        self.viewers: list[_ViewerProtocol] = []
        self.frames: list[tuple[int, str, int]] = []
        self.closing = False

    async def connect(self, count: int) -> ConnectReport:
        targets = self.config.targets[self.next_target : self.next_target + count]
        self.next_target += len(targets)
        gate = asyncio.Semaphore(self.config.concurrency)
        errors: list[str] = []
        extensions: list[str] = []
        started = time.perf_counter()

        async def one(target: ViewerTarget) -> bool:
            async with gate:
                try:
                    viewer, answered = await asyncio.wait_for(
                        self._open(target), self.config.timeout_s
                    )
                except Exception as exc:
                    if len(errors) < MAX_ERRORS:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    return False
            self.viewers.append(viewer)
            extensions.append(answered)
            return True

        results = await asyncio.gather(*(one(t) for t in targets))
        opened = sum(results)
        return ConnectReport(
            opened=opened,
            failed=len(targets) - opened,
            errors=errors,
            seconds=time.perf_counter() - started,
            extensions=extensions[0] if extensions else None,
        )

    async def _open(self, target: ViewerTarget) -> tuple[_ViewerProtocol, str]:
        viewer = _ViewerProtocol(self, target)
        uri = viewer.protocol.uri
        transport, _ = await asyncio.get_running_loop().create_connection(
            lambda: viewer, uri.host, uri.port
        )
        try:
            answered = await viewer.opened
        except BaseException:
            transport.abort()
            raise
        return viewer, answered

    def received(self) -> int:
        return sum(len(v.events) for v in self.viewers)

    def report(self) -> ViewerReport:
        return ViewerReport(
            viewers=[
                ViewerRecord(v.match, dict(v.events), v.duplicates, v.closed) for v in self.viewers
            ],
            frames=list(self.frames),
        )

    async def close(self) -> None:
        self.closing = True
        for viewer in self.viewers:
            viewer.close()
        # Let the close frames and FINs go out before the loop stops.
        await asyncio.sleep(0.5)
        for viewer in self.viewers:
            if viewer.transport is not None:
                viewer.transport.abort()
        self.viewers.clear()


async def _viewers(pipe: Connection, config: ViewerConfig) -> None:
    viewers = ViewerSet(config)
    try:
        while True:
            command = await asyncio.to_thread(_receive, pipe)
            match command:
                case ("connect", int(count)):
                    pipe.send(await viewers.connect(count))
                case ("count",):
                    pipe.send(viewers.received())
                case ("collect",):
                    pipe.send(viewers.report())
                case ("close",):
                    await viewers.close()
                    pipe.send("closed")
                    return
                case _:
                    return
    finally:
        await viewers.close()


def viewer_main(pipe: Connection, config: ViewerConfig) -> None:
    """Entry point of a viewer process."""
    prepare_process()
    with suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole process group
        asyncio.run(_viewers(pipe, config))


# -- the publisher ----------------------------------------------------------------------------


async def _sleep_until(when_ns: int) -> None:
    delay = (when_ns - time.time_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


def _clock_ms(index: int) -> int:
    return (index * 7919) % 1_500_000


async def _publish_bare(config: PublisherConfig, job: PublishJob) -> PublishReport:
    sent: list[Sent] = []
    errors: list[str] = []
    goals = 0
    async with connect(config.url, compression=None, ping_interval=None) as socket:
        for index in range(job.count):
            target = job.targets[index % len(job.targets)]
            kind = job.kind or STEADY_KINDS[index % len(STEADY_KINDS)]
            event_id = str(uuid.uuid4())
            goals += kind == "goal"
            body = viewer_delta_message(100_000 + index, event_id, kind, _clock_ms(index), goals)
            due = job.start_ns + index * job.interval_ns
            await _sleep_until(due)
            send_ns = time.time_ns()
            try:
                await socket.send(f"{target.match}\n{body}")
            except ConnectionClosed as exc:
                errors.append(f"publisher socket closed: {exc}")
                break
            sent.append(Sent(target.match, event_id, due, send_ns, time.time_ns(), ok=True))
    return PublishReport(sent, errors, failed=job.count - len(sent))


_PUSHED: dict[str, list[int]] = {}
"""The last sequence each device pushed, across the publisher's jobs."""


def event_change_set(
    target: PublishTarget, event_id: str, kind: str, clock_ms: int, seq: int
) -> str:
    """A coach device's push of one new event (a ``PushRequest``), as JSON text."""
    # The device's clock: a fresh HLC per change (PROTOCOL.md §2.5).
    hlc = f"{time.time_ns() // 1_000_000:015d}-{seq % 100_000:05d}"
    return (
        f'{{"device_id":"{target.device}","changes":[{{"seq":{seq},"hlc":"{hlc}",'
        f'"table":"events","id":"{event_id}","fields":{{"match_id":"{target.match}",'
        f'"kind":"{kind}","team_id":"{target.team}","period_number":1,'
        f'"clock_ms":{clock_ms}}}}}]}}'
    )


class CoachSocket:
    """A coach device's live socket on one match (PROTOCOL.md §17), pushing change sets and
    awaiting each one's ``ack`` or ``error`` by message id; other frames are read and
    dropped. Opened once per (device, match) and kept across the publisher's jobs."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.waiting: dict[str, asyncio.Future[dict[str, object]]] = {}
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base_url: str, target: PublishTarget) -> CoachSocket:
        url = f"{base_url}/ws/match/{target.match}?token={target.bearer}"
        return cls(await connect(url, compression=None, ping_interval=None, max_size=None))

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                if '"id"' not in raw[:200]:  # snapshots, deltas, heartbeats, presence
                    continue
                message = json.loads(raw)
                waiter = self.waiting.pop(str(message.get("id")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            for waiter in self.waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("coach socket closed"))

    async def push(self, message_id: str, change_set: str) -> tuple[int, bytes]:
        """Send one change set; (HTTP-like status, the answer's text)."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[message_id] = waiter
        await self.socket.send(f'{{"type":"push","id":"{message_id}","change_set":{change_set}}}')
        answer = await waiter
        if answer.get("type") == "ack":
            return 200, json.dumps(answer).encode()
        problem = cast(dict[str, object], answer.get("problem") or {})
        return int(cast(int, problem.get("status", 0))), json.dumps(answer).encode()

    async def close(self) -> None:
        await self.socket.close()
        with suppress(asyncio.CancelledError):
            await self.reader


_COACH_SOCKETS: dict[tuple[str, str], CoachSocket] = {}
"""Open coach sockets by (device, match), across the publisher's jobs."""


async def _publish_touchline(config: PublisherConfig, job: PublishJob) -> PublishReport:
    sent: list[Sent] = []
    errors: list[str] = []
    failed = [0]
    url = urllib.parse.urlsplit(config.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    ws_base = f"ws://{host}:{port}"
    idle: asyncio.Queue[HttpConnection | None] = asyncio.Queue()
    for _ in range(config.concurrency):
        idle.put_nowait(None)  # a free slot, its connection opened when first needed

    locks: dict[str, asyncio.Lock] = {}

    def rest_request(target: PublishTarget, event_id: str, kind: str, index: int) -> bytes:
        body = (
            f'{{"id":"{event_id}","kind":"{kind}","team":"home","period_number":1,'
            f'"clock_ms":{_clock_ms(index)}}}'
        ).encode()
        return (
            f"POST /api/matches/{target.match}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {target.bearer}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def push_request(
        target: PublishTarget, event_id: str, kind: str, index: int, seq: int
    ) -> bytes:
        body = event_change_set(target, event_id, kind, _clock_ms(index), seq).encode()
        return (
            f"POST /api/sync/push HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {target.bearer}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def write(index: int, due: int) -> None:
        target = job.targets[index % len(job.targets)]
        kind = job.kind or STEADY_KINDS[index % len(STEADY_KINDS)]
        event_id = str(uuid.uuid4())
        if config.writes == "rest":
            await send(index, due, target, event_id, rest_request(target, event_id, kind, index))
            return
        # A device's pushes carry dense sequences: one at a time per device.
        last = _PUSHED.setdefault(target.device, [0])
        async with locks.setdefault(target.device, asyncio.Lock()):
            if config.writes == "socket":
                body = event_change_set(target, event_id, kind, _clock_ms(index), last[0] + 1)
                if await send_socket(index, due, target, event_id, body):
                    last[0] += 1
                return
            raw = push_request(target, event_id, kind, index, last[0] + 1)
            if await send(index, due, target, event_id, raw):
                last[0] += 1

    async def send_socket(
        index: int, due: int, target: PublishTarget, event_id: str, body: str
    ) -> bool:
        key = (target.device, target.match)
        try:
            coach = _COACH_SOCKETS.get(key)
            if coach is None:
                coach = _COACH_SOCKETS[key] = await CoachSocket.open(ws_base, target)
            send_ns = time.time_ns()
            status, answer = await asyncio.wait_for(coach.push(f"e{index}", body), 60)
            done_ns = time.time_ns()
        except (OSError, ConnectionError, ConnectionClosed, TimeoutError) as exc:
            fail(f"{type(exc).__name__}: {exc}")
            stale = _COACH_SOCKETS.pop(key, None)
            if stale is not None:
                await stale.close()
            return False
        write = Sent(target.match, event_id, due, send_ns, done_ns, status == 200)
        return answered(write, status, answer)

    def fail(error: str) -> None:
        failed[0] += 1
        if len(errors) < MAX_ERRORS:
            errors.append(error)

    def answered(write: Sent, status: int, answer: bytes) -> bool:
        """Note a write the server answered; whether it took it."""
        if not write.ok:
            fail(f"{status} {answer[:300]!r}")
        sent.append(write)
        return write.ok

    async def send(index: int, due: int, target: PublishTarget, event_id: str, raw: bytes) -> bool:
        connection = await idle.get()
        try:
            if connection is None:
                connection = await HttpConnection.open(host, port)
            send_ns = time.time_ns()
            status, answer = await asyncio.wait_for(connection.request(raw), 60)
            done_ns = time.time_ns()
        except (
            OSError,
            RuntimeError,
            ValueError,
            asyncio.IncompleteReadError,
            TimeoutError,
        ) as exc:
            fail(f"{type(exc).__name__}: {exc}")
            if connection is not None:
                connection.close()
            idle.put_nowait(None)
            return False
        idle.put_nowait(connection)
        ok = status == (201 if config.writes == "rest" else 200)
        return answered(Sent(target.match, event_id, due, send_ns, done_ns, ok), status, answer)

    tasks = []
    try:
        for index in range(job.count):
            due = job.start_ns + index * job.interval_ns
            await _sleep_until(due)
            tasks.append(asyncio.create_task(write(index, due)))
        await asyncio.gather(*tasks)
    finally:
        while not idle.empty():
            connection = idle.get_nowait()
            if connection is not None:
                connection.close()
    return PublishReport(sent, errors, failed[0])


async def _publisher(pipe: Connection, config: PublisherConfig) -> None:
    while True:
        command = await asyncio.to_thread(_receive, pipe)
        match command:
            case ("publish", PublishJob() as job):
                if config.kind == "bare":
                    pipe.send(await _publish_bare(config, job))
                else:
                    pipe.send(await _publish_touchline(config, job))
            case _:
                for coach in _COACH_SOCKETS.values():
                    with suppress(OSError, ConnectionClosed):
                        await coach.close()
                return


def publisher_main(pipe: Connection, config: PublisherConfig) -> None:
    """Entry point of the publisher process."""
    prepare_process()
    with suppress(KeyboardInterrupt):
        asyncio.run(_publisher(pipe, config))
