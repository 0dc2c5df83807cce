"""Server CPU per one-change push, with nobody watching: over a coach's live socket and over HTTP.

A live coach logs an event about every ten seconds; a league's hundred events a second arrive
one change set at a time, each on a quiet connection. This measures what one such push costs
the server process (scheduler CPU of all its threads), at a fixed rate, on PostgreSQL:

    .venv/bin/python bench/push_cost.py                  # both transports, 3 runs, ~6 min
    .venv/bin/python bench/push_cost.py --transports ws --runs 1 --pushes 500

Per run and transport: a fresh server and schema (``sync-server serve``, one worker), 10
clubs with 5 live matches each (``bench/fanout.py``'s setup), one coach device per club
writing one new event per push round-robin over the matches, 200 untimed pushes, then
``--pushes`` at ``--rate`` per second. The CPU the host stole from the machine in the window
is printed beside each figure: on a busy host every process waits and runs colder.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    HOST,
    Database,
    HttpConnection,
    loopback_only,
    machine_steal_s,
)
from bench.fanout import LiveMatch, process_cpu_s, start_touchline, touchline_matches
from bench.fanout_load import CoachSocket, event_change_set

WARMUP_PUSHES = 200


class Coach:
    """One club's coach device: pushes one change set at a time, over its socket or HTTP."""

    def __init__(self, port: int, transport: str) -> None:
        self.port = port
        self.transport = transport
        self.seq = 0
        self.lock = asyncio.Lock()
        self.http: HttpConnection | None = None
        self.sockets: dict[str, CoachSocket] = {}

    async def push(self, match: LiveMatch, index: int) -> None:
        async with self.lock:
            body = event_change_set(match.target, str(uuid.uuid4()), "tackle", index, self.seq + 1)
            if self.transport == "ws":
                status, answer = await self._over_socket(match, body, index)
            else:
                status, answer = await self._over_http(match, body)
            if status != 200:
                raise RuntimeError(f"push refused: {status} {answer[:300]!r}")
            self.seq += 1

    async def _over_socket(self, match: LiveMatch, body: str, index: int) -> tuple[int, bytes]:
        socket = self.sockets.get(match.key)
        if socket is None:
            socket = self.sockets[match.key] = await CoachSocket.open(
                f"ws://{HOST}:{self.port}", match.target
            )
        return await asyncio.wait_for(socket.push(f"p{index}", body), 30)

    async def _over_http(self, match: LiveMatch, body: str) -> tuple[int, bytes]:
        if self.http is None:
            self.http = await HttpConnection.open(HOST, self.port)
        raw = body.encode()
        head = (
            f"POST /api/sync/push HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {match.target.bearer}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
        )
        return await asyncio.wait_for(self.http.request(head.encode() + raw), 30)

    async def close(self) -> None:
        for socket in self.sockets.values():
            await socket.close()
        if self.http is not None:
            await self.http.aclose()


async def measure(transport: str, opts: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        db = Database("postgres", opts.postgres_url, Path(workdir))
        server = start_touchline(db, None)
        coaches: dict[str, Coach] = {}
        try:
            matches = await touchline_matches(server.port, 50, 10)

            async def push(index: int) -> None:
                match = matches[index % len(matches)]
                coach = coaches.setdefault(match.target.device, Coach(server.port, transport))
                await coach.push(match, index)

            for index in range(WARMUP_PUSHES):
                await push(index)
            cpu, steal, started = process_cpu_s(server.pid), machine_steal_s(), time.monotonic()
            tasks = []
            for n in range(opts.pushes):
                delay = started + n / opts.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(push(WARMUP_PUSHES + n)))
            await asyncio.gather(*tasks)
            window = time.monotonic() - started
            used = process_cpu_s(server.pid) - cpu
            return {
                "transport": transport,
                "us_per_push": used / opts.pushes * 1e6,
                "pushes_per_s": opts.pushes / window,
                "stolen_cores": (machine_steal_s() - steal) / window,
            }
        finally:
            for coach in coaches.values():
                await coach.close()
            server.stop()
            await db.drop_schemas()


async def main(opts: argparse.Namespace) -> None:
    loopback_only(opts.postgres_url, "database", "push_cost")
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in opts.transports}
    for run in range(1, opts.runs + 1):
        # Alternate the order, so that neither transport always runs on a warmer machine.
        order = opts.transports if run % 2 else list(reversed(opts.transports))
        for transport in order:
            row = await measure(transport, opts)
            results[transport].append(row)
            print(
                f"run {run} {transport:>4}: {row['us_per_push']:,.0f} µs of server CPU per push"
                f" ({row['pushes_per_s']:.0f} pushes/s, stolen {row['stolen_cores']:.2f} cores)",
                flush=True,
            )
    for transport, rows in results.items():
        median = statistics.median(r["us_per_push"] for r in rows)
        print(f"median {transport:>4}: {median:,.0f} µs per push over {len(rows)} run(s)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transports", default="ws,http", help="ws,http")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=1500, help="timed pushes per run (1500)")
    parser.add_argument("--rate", type=float, default=100.0, help="pushes per second (100)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    opts = parser.parse_args()
    opts.transports = [t for t in opts.transports.split(",") if t]
    if not set(opts.transports) <= {"ws", "http"} or not 1 <= opts.runs <= 20:
        parser.error("--transports takes ws and http; --runs 1..20")
    return opts


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
