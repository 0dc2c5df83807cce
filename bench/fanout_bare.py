"""The bare broadcast server that the fan-out benchmark measures the relay against.

A `websockets` asyncio server (uvloop when installed) and nothing else:

- a viewer connects to ``/m/<match>`` and then only listens;
- the publisher connects to ``/pub`` and sends text frames ``<match>\\n<json>``; the server
  hands the json to ``websockets.asyncio.server.broadcast`` for that match's viewers, which
  encodes it once and frames it for each connection;
- ``GET /health`` answers ``200`` so the benchmark can tell when the server is up.

No authentication, snapshot, database, per-connection queue or heartbeat of its own (the
library's protocol pings every 20 s stay on, as in any deployment): the floor for this shape
of work. Run by ``bench/fanout.py``; by hand:

    .venv/bin/python bench/fanout_bare.py --port 8200
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import signal
from contextlib import suppress
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

HOST = "127.0.0.1"


class Rooms:
    """The open viewer connections of each match."""

    def __init__(self) -> None:
        self.viewers: dict[str, set[ServerConnection]] = {}

    async def handle(self, connection: ServerConnection) -> None:
        path = connection.request.path if connection.request is not None else ""
        if path == "/pub":
            await self.publish_from(connection)
        elif path.startswith("/m/") and len(path) > 3:
            await self.watch(connection, path[3:])
        else:
            await connection.close(4404, "no such path")

    async def watch(self, connection: ServerConnection, match: str) -> None:
        room = self.viewers.setdefault(match, set())
        room.add(connection)
        try:
            await connection.wait_closed()
        finally:
            room.discard(connection)
            if not room:
                del self.viewers[match]

    async def publish_from(self, connection: ServerConnection) -> None:
        async for message in connection:
            text = message if isinstance(message, str) else message.decode()
            match, _, body = text.partition("\n")
            room = self.viewers.get(match)
            if room:
                broadcast(room, body)


def health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/health":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def run(port: int) -> None:
    rooms = Rooms()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(rooms.handle, HOST, port, process_request=health, backlog=2048):
        # As the sync server does after start-up: what is loaded now is never collected.
        gc.freeze()
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare websockets broadcast server.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(run(args.port))


if __name__ == "__main__":
    main()
