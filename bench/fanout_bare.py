"""The bare broadcast server that the fan-out benchmark measures the relay against.

A `websockets` asyncio server (uvloop when installed) and nothing else:

- a viewer connects to ``/m/<match>`` and then only listens;
- the publisher connects to ``/pub`` and sends text frames ``<match>\\n<json>``; the server
  hands the json to ``websockets.asyncio.server.broadcast`` for that match's viewers, which
  encodes it once and frames it for each connection;
- ``GET /health`` answers ``200`` so the benchmark can tell when the server is up.

No authentication, snapshot, database, per-connection queue or heartbeat of its own (the
library's protocol pings every 20 s stay on, as in any deployment): the floor for this shape
of work.

With ``--commit-to POSTGRES_URL --schema NAME`` it first commits each published message to
PostgreSQL (one ``INSERT`` of the match and the json into a table of that schema, in its own
transaction, through asyncpg) and broadcasts it once the commit has answered: the floor for a
relay that only sends what is durably stored, as Touchline does. Still no validation, merge,
lock, idempotency or acknowledgement.

Run by ``bench/fanout.py``; by hand:

    .venv/bin/python bench/fanout_bare.py --port 8200
    .venv/bin/python bench/fanout_bare.py --port 8200 \
        --commit-to postgresql://postgres@127.0.0.1:5432/test --schema bench_bare_commit
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import signal
from contextlib import suppress
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

HOST = "127.0.0.1"


class Rooms:
    """The open viewer connections of each match."""

    def __init__(self, store: Any = None, insert: str = "") -> None:
        self.viewers: dict[str, set[ServerConnection]] = {}
        self.store = store
        """An asyncpg connection to commit each message to before it is broadcast (or None).
        One is enough: the publisher's messages arrive on one socket, handled in order."""
        self.insert = insert

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
            if self.store is not None:
                await self.store.execute(self.insert, match, body)
            room = self.viewers.get(match)
            if room:
                broadcast(room, body)


def health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/health":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def open_store(url: str, schema: str) -> tuple[Any, str]:
    """A connection to ``url`` and the statement that commits one message into ``schema``."""
    import asyncpg

    table = f'"{schema}".messages'
    connection = await asyncpg.connect(url, timeout=10)
    await connection.execute(
        f'CREATE SCHEMA IF NOT EXISTS "{schema}";'
        f" CREATE TABLE IF NOT EXISTS {table}"
        " (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, match text NOT NULL,"
        " body text NOT NULL)"
    )
    return connection, f"INSERT INTO {table} (match, body) VALUES ($1, $2)"


async def run(port: int, commit_to: str | None, schema: str) -> None:
    store, insert = await open_store(commit_to, schema) if commit_to else (None, "")
    rooms = Rooms(store, insert)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    try:
        async with serve(rooms.handle, HOST, port, process_request=health, backlog=2048):
            # As the sync server does after start-up: what is loaded now is never collected.
            gc.freeze()
            await stop
    finally:
        if store is not None:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare websockets broadcast server.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--commit-to", help="commit each message to this PostgreSQL first")
    parser.add_argument("--schema", default="bench_bare_commit", help="the schema to commit to")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(run(args.port, args.commit_to, args.schema))


if __name__ == "__main__":
    main()
