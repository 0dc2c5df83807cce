"""uvicorn's sans-I/O WebSocket protocol with a synchronous send for the relay.

Through plain ASGI every message to every socket is a coroutine call through the middleware
and, with a writer task per connection, a task switch: at 2,000 viewers of one match that
doubled the CPU of a goal's fan-out next to a bare broadcast. This protocol offers the app the
ASGI extension ``touchline.send_text``: a plain function that writes a text frame at once when
the connection is open and its transport has room, and answers False otherwise (the app then
queues the frame for the connection's writer, which waits for room). Other servers simply lack
the extension and the relay uses ASGI sends.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

__all__ = ["EXTENSION", "RelayWebSocketProtocol"]

EXTENSION = "touchline.send_text"
UVICORN_WS = f"{__name__}:RelayWebSocketProtocol"
"""What to pass as uvicorn's ``ws`` option."""


class RelayWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: dict[str, Any] | None = getattr(self, "scope", None)
        if scope is not None:
            scope.setdefault("extensions", {})[EXTENSION] = self.send_text_now

    def send_text_now(self, data: bytes) -> bool:
        """Write one text frame (UTF-8 ``data``) now; False when it cannot go now."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.initial_response is not None
        ):
            return False
        try:
            self.conn.send_text(data)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
