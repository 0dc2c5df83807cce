"""The relay frames each message once and writes the same bytes to every socket: those bytes
must be exactly the text frame the WebSocket library would send (RFC 6455 §5.2)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode
from websockets.streams import StreamReader

from protocol.relay import Heartbeat
from sync_server.relay.outbox import Frame, websocket_text_frame


def _parsed(wire: bytes) -> WireFrame:
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parser = WireFrame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: WireFrame = done.value
        assert reader.at_eof(), "nothing after the frame"
        return frame
    raise AssertionError("the frame was incomplete")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_every_length_encoding_parses_back_to_the_same_text(size: int) -> None:
    data = ("é" * (size // 2) + "x" * (size % 2)).encode()
    parsed = _parsed(websocket_text_frame(data))
    assert (parsed.opcode, parsed.fin, parsed.data) == (Opcode.TEXT, True, data)
    assert not (parsed.rsv1 or parsed.rsv2 or parsed.rsv3)


def test_a_message_is_framed_once_for_all_its_sockets() -> None:
    frame = Frame(Heartbeat(seq=7, server_time_ms=1))
    assert frame.ws is frame.ws
    assert _parsed(frame.ws).data == frame.data
