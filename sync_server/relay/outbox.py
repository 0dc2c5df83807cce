"""One live connection's bounded outbox, shared by WebSocket and Server-Sent Events.

The hub encodes a message once and offers the same `Frame` to every connection; each
connection's own writer drains its outbox at the pace its network allows. A connection whose
outbox fills up (a stalled phone, a dead tunnel) is told to resync and dropped: it never
blocks the fan-out to everyone else, and its memory stays bounded by the outbox size.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from protocol.relay import EditingRecord, Resync, ServerMessage

Kind = Literal["coach", "viewer"]

_encode = msgspec.json.encode


def websocket_text_frame(data: bytes) -> bytes:
    """``data`` as one unmasked, unfragmented WebSocket text frame, as a server sends it
    (RFC 6455 §5.2); ``data`` is UTF-8."""
    size = len(data)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + data


class Frame:
    """A message encoded once: its JSON bytes, type and sequence, when its change merged, and
    (built on first use) its text, WebSocket frame and Server-Sent Events forms."""

    __slots__ = ("_sse", "_text", "_ws", "data", "merged_at", "seq", "type")

    def __init__(self, message: ServerMessage, *, merged_at: float | None = None) -> None:
        self.data = _encode(message)
        self.type: str = type(message).__struct_config__.tag  # type: ignore[assignment]
        self.seq = message.seq
        self.merged_at = merged_at
        self._text: str | None = None
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.data.decode()
        return self._text

    @property
    def ws(self) -> bytes:
        """The message as a WebSocket text frame: framed once, written to every socket."""
        if self._ws is None:
            self._ws = websocket_text_frame(self.data)
        return self._ws

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            head = f"id: {self.seq}\nevent: {self.type}\ndata: ".encode()
            self._sse = head + self.data + b"\n\n"
        return self._sse


REFUSED, QUEUED, SENT = 0, 1, 2
"""What ``Outbox.offer`` did with a frame."""


@dataclass(eq=False, slots=True)
class Outbox:
    """A connection as the hub sees it: who it is, where it is in the log, what it is owed."""

    kind: Kind
    club_id: uuid.UUID
    match_id: uuid.UUID
    limit: int
    transport: Literal["ws", "sse"] = "ws"
    device_id: str | None = None
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    link_id: uuid.UUID | None = None
    expires_at: float | None = None
    """Epoch seconds at which the share link stops working."""
    seq: int = 0
    """The club log sequence this connection has been brought up to."""
    editing: EditingRecord | None = None
    frames: deque[Frame] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: tuple[int, str] | None = None
    """Set when the connection must end: its close code and reason."""
    dropped: bool = False
    """True when it ended for falling behind."""
    opened_at: float = field(default_factory=time.monotonic)
    send_now: Callable[[bytes], bool] | None = None
    """Writes a whole WebSocket frame (``Frame.ws``) at once if the transport has room (see
    ``fast_socket``)."""
    busy: bool = False
    """The writer holds frames it has not finished sending."""

    def offer(self, frame: Frame) -> int:
        """Send a frame now when nothing is ahead of it and the transport has room, else
        queue it; REFUSED when the connection is closing or has just overflowed."""
        if self.closing is not None:
            return REFUSED
        if (
            self.send_now is not None
            and not self.frames
            and not self.busy
            and self.send_now(frame.ws)
        ):
            if frame.seq > self.seq:
                self.seq = frame.seq
            return SENT
        if len(self.frames) >= self.limit:
            self.frames.clear()
            self.frames.append(
                Frame(Resync(seq=self.seq, reason="too far behind; reconnect with since"))
            )
            self.dropped = True
            self.close(1013, "too far behind; reconnect")
            return REFUSED
        self.frames.append(frame)
        if frame.seq > self.seq:
            self.seq = frame.seq
        self.wake.set()
        return QUEUED

    def close(self, code: int, reason: str, last: Frame | None = None) -> None:
        """End the connection after the frames already queued (and ``last``, if given)."""
        if self.closing is not None:
            return
        if last is not None:
            self.frames.append(last)
        self.closing = (code, reason)
        self.wake.set()

    async def next_frames(self) -> list[Frame]:
        """Wait for frames; an empty list means close now (see ``closing``)."""
        while not self.frames:
            if self.closing is not None:
                return []
            self.wake.clear()
            await self.wake.wait()
        frames = list(self.frames)
        self.frames.clear()
        self.busy = True  # until the writer calls ``sent``
        return frames

    def sent(self) -> None:
        """The writer has sent everything ``next_frames`` gave it."""
        self.busy = False
