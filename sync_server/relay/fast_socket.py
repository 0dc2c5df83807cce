"""uvicorn's sans-I/O WebSocket protocol with a synchronous send for the relay.

Through plain ASGI every message to every socket is a coroutine call through the middleware
and, with a writer task per connection, a task switch: at 2,000 viewers of one match that
doubled the CPU of a goal's fan-out next to a bare broadcast. This protocol offers the app the
ASGI extension ``touchline.send_frame``: a plain function that writes a whole WebSocket frame
at once when the connection is open and its transport has room, and answers False otherwise
(the app then queues the message for the connection's writer, which waits for room). The relay
frames each message once (``Frame.ws``) and writes the same bytes to every socket, instead of
having the WebSocket library frame it again for each one. Other servers simply lack the
extension and the relay uses ASGI sends.

Keepalive pings (every ``ws_ping_interval``, closing a peer whose pong does not come within
``ws_ping_timeout``) keep uvicorn's meaning but not its timer per connection: 5,000 viewers
pinged every 20 s woke the process 250 times a second, each time for one frame. Here the pings
due in the same second go out together from one timer per event loop (``PingWheel``), at most
a second later than uvicorn would send them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

__all__ = ["EXTENSION", "PingWheel", "RelayWebSocketProtocol"]

log = logging.getLogger(__name__)

EXTENSION = "touchline.send_frame"
UVICORN_WS = f"{__name__}:RelayWebSocketProtocol"
"""What to pass as uvicorn's ``ws`` option."""


class _Due:
    """One connection's next ping on the wheel; ``cancel`` as on a timer handle."""

    __slots__ = ("ping",)

    def __init__(self, ping: Callable[[], None]) -> None:
        self.ping: Callable[[], None] | None = ping

    def cancel(self) -> None:
        self.ping = None


class PingWheel:
    """The keepalive pings of one event loop's connections, by the whole second (of the
    loop's clock) they fall due in; one timer, armed for the earliest second."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[int, list[_Due]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: int | None = None

    def schedule(self, delay: float, ping: Callable[[], None]) -> _Due:
        """Call ``ping`` at the first whole second after ``delay`` seconds from now."""
        second = math.ceil(self._loop.time() + delay)
        entry = _Due(ping)
        self._due.setdefault(second, []).append(entry)
        if self._armed_for is None or second < self._armed_for:
            self._arm(second)
        return entry

    def pending(self) -> int:
        """Pings waiting on the wheel (cancelled ones included until their second)."""
        return sum(len(entries) for entries in self._due.values())

    def _arm(self, second: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = second
        self._timer = self._loop.call_at(second, self._fire)

    def _fire(self) -> None:
        self._timer = self._armed_for = None
        now = self._loop.time()
        for second in sorted(s for s in self._due if s <= now):
            for entry in self._due.pop(second):
                ping, entry.ping = entry.ping, None
                if ping is None:
                    continue
                try:
                    ping()
                except Exception:
                    # One broken connection must not cost the others their pings.
                    log.exception("keepalive ping failed")
        if self._due:
            self._arm(min(self._due))


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PingWheel] = (
    weakref.WeakKeyDictionary()
)


def ping_wheel(loop: asyncio.AbstractEventLoop) -> PingWheel:
    """The loop's wheel, made on first use."""
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = PingWheel(loop)
    return wheel


class RelayWebSocketProtocol(WebSocketsSansIOProtocol):
    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        # uvicorn only ever cancels its ping timer, which the wheel's entry also does.
        self.ping_timer = cast(Any, ping_wheel(self.loop).schedule(delay, self.send_keepalive_ping))

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: dict[str, Any] | None = getattr(self, "scope", None)
        if scope is not None:
            scope.setdefault("extensions", {})[EXTENSION] = self.send_frame_now

    def send_frame_now(self, frame: bytes) -> bool:
        """Write one whole, unmasked frame now; False when it cannot go now.

        Written around the WebSocket library, which keeps no state for the data frames it
        sends: the connection must be open, with no extension negotiated (the server offers
        none: a frame compressed per connection would not be the same bytes for everyone)."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.initial_response is not None
            or self.conn.state is not State.OPEN
            or self.conn.extensions
        ):
            return False
        self.transport.write(frame)
        return True
