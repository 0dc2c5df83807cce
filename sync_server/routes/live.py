"""Live routes: the match WebSocket, the viewers' Server-Sent Events stream and /metrics.

A socket is accepted before its token is checked, so that a refusal can say why in an
``error`` message before the close code (browsers show neither an HTTP status nor a body for
a refused handshake). PROTOCOL.md §17 describes every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Response, WebSocket, get, websocket
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol import relay
from protocol.relay import Ack, ClientMessage, Editing, Ping, Pong, Problem, PushMessage
from sync_server.auth import Principal, SessionCache, principal_from_token, utc_now
from sync_server.problems import ProblemError, database_unavailable, database_unavailable_problem
from sync_server.ratelimit import MessageRate
from sync_server.relay.fast_socket import EXTENSION
from sync_server.relay.hub import Hub, MatchGone
from sync_server.relay.metrics import CONTENT_TYPE_LATEST
from sync_server.relay.outbox import Frame, Outbox
from sync_server.routes.sync import MAX_CURSOR, apply_push
from sync_server.settings import Settings
from sync_server.share_links import ShareLinks
from sync_server.store import ChangeStore

__all__ = ["ROUTES"]

_decode_client = msgspec.json.Decoder(ClientMessage)
MAX_RATE_VIOLATIONS = 20
"""Frames refused for rate before the socket is closed (1008)."""

log = logging.getLogger(__name__)


def _problem(error: ProblemError) -> Problem:
    return Problem(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        extensions=error.extensions,
    )


def _error(seq: int, error: ProblemError, message_id: str | None = None) -> Frame:
    return Frame(relay.Error(seq=seq, problem=_problem(error), id=message_id))


async def _refuse(socket: WebSocket[Any, Any, Any], error: ProblemError, code: int) -> None:
    await socket.send_text(_error(0, error).text)
    await socket.close(code=code, reason=error.title[:120])


def _send_now(socket: WebSocket[Any, Any, Any]) -> Callable[[bytes], bool] | None:
    """The server's direct send, when it offers one (``fast_socket``)."""
    extensions: dict[str, Any] = socket.scope.get("extensions") or {}
    found = extensions.get(EXTENSION)
    return found if callable(found) else None


def _since(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or int(raw) > MAX_CURSOR:
        raise ProblemError(
            400, "invalid-query", "Invalid query", f"since must be an integer 0..{MAX_CURSOR}"
        )
    return int(raw)


@websocket("/ws/match/{match_id:uuid}", opt={"exclude_from_auth": True})
async def match_socket(
    socket: WebSocket[Any, Any, Any],
    match_id: FromPath[uuid.UUID],
    hub: NamedDependency[Hub],
    settings: NamedDependency[Settings],
    engine: NamedDependency[AsyncEngine],
    sessions: NamedDependency[SessionCache],
    store: NamedDependency[ChangeStore],
) -> None:
    """A match live: coaches get every merged change and may push; viewers get the
    viewer-safe view and its deltas."""
    await socket.accept()
    send_now = _send_now(socket)
    token = socket.query_params.get("token", "")
    principal: Principal | None = None
    try:
        since = _since(socket.query_params.get("since"))
        if token.count(".") == 2:
            principal = await principal_from_token(token, settings, engine, sessions)
            if principal is None:
                raise ProblemError(
                    401,
                    "unauthorized",
                    "Invalid token",
                    "the access token is invalid, expired or revoked; refresh it and reconnect",
                )
            as_viewer = not principal.can_write or socket.query_params.get("view") == "viewer"
            outbox = Outbox(
                kind="viewer" if as_viewer else "coach",
                club_id=principal.club_id,
                match_id=match_id,
                limit=settings.relay_queue_limit,
                device_id=principal.device_id,
                user_id=principal.user_id,
                session_id=principal.session_id,
                send_now=send_now,
            )
        else:
            shared = await ShareLinks(engine, settings, hub.links).resolve(token, utc_now())
            if shared.match_id != match_id:
                raise ProblemError(
                    404, "not-found", "Match not found", "this link opens another match"
                )
            outbox = Outbox(
                kind="viewer",
                club_id=shared.club_id,
                match_id=match_id,
                limit=settings.relay_queue_limit,
                link_id=shared.link_id,
                expires_at=shared.expires_at.timestamp(),
                send_now=send_now,
            )
        if outbox.kind == "coach":
            await hub.join_coach(outbox, since)
        else:
            await hub.join_viewer(outbox)
    except MatchGone:
        await _refuse(
            socket, ProblemError(404, "not-found", "Match not found", f"no match {match_id}"), 4404
        )
        return
    except ProblemError as refused:
        await _refuse(socket, refused, 4000 + refused.status)
        return
    writer = asyncio.create_task(_write(socket, outbox, hub))
    try:
        await _Connection(socket, outbox, hub, settings, store, principal).read()
    finally:
        hub.leave(outbox)
        outbox.close(1000, "bye")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, timeout=1.0)
        writer.cancel()


async def _write(socket: WebSocket[Any, Any, Any], outbox: Outbox, hub: Hub) -> None:
    sent = hub.metrics.messages_sent.labels(outbox.kind)
    latency = hub.metrics.merge_to_send
    send = socket.send
    while True:
        frames = await outbox.next_frames()
        if not frames:
            code, reason = outbox.closing or (1000, "")
            with contextlib.suppress(Exception):
                await socket.close(code=code, reason=reason)
            return
        for frame in frames:
            await send({"type": "websocket.send", "text": frame.text, "bytes": None})
        outbox.sent()
        now = time.time()
        for frame in frames:
            if frame.merged_at is not None:
                latency.observe(now - frame.merged_at)
        sent.inc(len(frames))


@dataclass(frozen=True, slots=True)
class _Connection:
    """One open match socket: what reading and answering its messages needs."""

    socket: WebSocket[Any, Any, Any]
    outbox: Outbox
    hub: Hub
    settings: Settings
    store: ChangeStore
    principal: Principal | None

    async def read(self) -> None:
        """Answer the client's messages until it goes (PROTOCOL.md §17.5)."""
        outbox = self.outbox
        per_second = self.settings.ws_messages_per_second
        rate = MessageRate(per_second, burst=2 * per_second)
        violations = 0
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if outbox.closing is not None:
                continue  # closing: read until the peer's close arrives
            if not rate.allow(time.monotonic()):
                violations += 1
                refusal = ProblemError(
                    429,
                    "rate-limited",
                    "Too many messages",
                    f"at most {per_second} messages per second on one connection",
                )
                if violations > MAX_RATE_VIOLATIONS:
                    outbox.close(1008, "message rate exceeded", _error(outbox.seq, refusal))
                else:
                    outbox.offer(_error(outbox.seq, refusal))
                continue
            text, data = message.get("text"), message.get("bytes")
            raw = text if isinstance(text, str) else data if isinstance(data, bytes) else b""
            if len(raw) > self.settings.max_body_bytes:
                limit = self.settings.max_body_bytes
                outbox.offer(
                    _error(
                        outbox.seq,
                        ProblemError(
                            413,
                            "message-too-large",
                            "Message too large",
                            f"at most {limit} bytes per message",
                        ),
                    )
                )
                continue
            try:
                decoded = _decode_client.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as bad:
                outbox.offer(
                    _error(
                        outbox.seq,
                        ProblemError(422, "invalid-message", "Invalid message", str(bad)),
                    )
                )
                continue
            await self.handle(decoded)

    async def handle(self, message: ClientMessage) -> None:
        outbox = self.outbox
        if isinstance(message, Ping):
            now_ms = time.time_ns() // 1_000_000
            outbox.offer(Frame(Pong(seq=outbox.seq, server_time_ms=now_ms)))
            return
        message_id = message.id if isinstance(message, PushMessage) else None
        principal = self.principal
        if outbox.kind != "coach" or principal is None:
            refusal = ProblemError(
                403,
                "forbidden",
                "Read-only connection",
                "a viewer's connection cannot change anything",
            )
            outbox.offer(_error(outbox.seq, refusal, message_id))
            return
        if isinstance(message, Editing):
            self.hub.editing(outbox, message.record)
            return
        try:
            result = await apply_push(
                self.store,
                self.settings,
                principal,
                message.change_set,
                self.hub.metrics.sync,
                "ws",
            )
        except ProblemError as refused:
            outbox.offer(_error(outbox.seq, refused, message.id))
            return
        except Exception as failed:
            if not database_unavailable(failed):
                raise
            # As over HTTP: nothing was applied, the device sends the set again later.
            log.warning("database unavailable for a push over a live socket: %r", failed)
            outbox.offer(_error(outbox.seq, database_unavailable_problem(), message.id))
            return
        outbox.offer(Frame(Ack(seq=outbox.seq, id=message.id, result=result)))


@get(
    "/api/watch/{token:str}/stream",
    opt={"exclude_from_auth": True, "no_buffering": True},
    include_in_schema=False,
)
async def watch_stream(
    token: FromPath[str],
    hub: NamedDependency[Hub],
    settings: NamedDependency[Settings],
    engine: NamedDependency[AsyncEngine],
) -> Stream:
    """The viewer's live stream as Server-Sent Events, for networks that break WebSockets.
    A reconnect (``Last-Event-ID``) starts with a fresh snapshot: nothing missed, nothing
    twice."""
    shared = await ShareLinks(engine, settings, hub.links).resolve(token, utc_now())
    outbox = Outbox(
        kind="viewer",
        club_id=shared.club_id,
        match_id=shared.match_id,
        limit=settings.relay_queue_limit,
        transport="sse",
        link_id=shared.link_id,
        expires_at=shared.expires_at.timestamp(),
    )
    try:
        await hub.join_viewer(outbox)
    except MatchGone:
        raise ProblemError(404, "not-found", "Match not found", "the match is gone") from None

    async def events() -> AsyncIterator[bytes]:
        sent = hub.metrics.messages_sent.labels("viewer")
        try:
            yield b"retry: 2000\n\n"
            while True:
                frames = await outbox.next_frames()
                if not frames:
                    return
                yield b"".join(frame.sse for frame in frames)
                outbox.sent()
                sent.inc(len(frames))
        finally:
            hub.leave(outbox)

    return Stream(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@get("/metrics", opt={"exclude_from_auth": True}, include_in_schema=False)
async def metrics(
    hub: NamedDependency[Hub], engine: NamedDependency[AsyncEngine]
) -> Response[bytes]:
    """Prometheus metrics (counts only, nothing personal)."""
    await hub.metrics.sync.sample(engine)
    return Response(hub.metrics.render(), media_type=CONTENT_TYPE_LATEST)


ROUTES = [match_socket, watch_stream, metrics]
