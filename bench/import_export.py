"""How long `touchline-import` takes on a large export, beside a bare push of the same changes.

    .venv/bin/python bench/import_export.py [--events 1500] [--runs 5] [--databases sqlite,postgres]

The export is the shape a busy phone holds: a Dexie export of the older schema
(tests/fixtures/indexeddb/dexie-v3-small.json's teams, players and seasons), with ``--events``
events spread over matches of 60, each event in the ``events`` table and again in the
``outbox`` (as the app's hooks queue every write), and one goal in ten naming an assist in its
notes. For each database and each run, on a fresh club of one server (``sync-server serve``, one
worker, loopback only):

1. ``import``: the installed ``touchline-import`` command, end to end, timed from start to exit
   (reading the file, logging in, reading the club's log, pushing, logging out);
2. ``bare push``: the same changes the import pushed (read back from the log), pushed again as
   pre-built sets of 500 to a fresh club by a plain keep-alive HTTP client: what the server
   itself needs, with nothing of the importer.

Medians over the runs are printed, with their ratio. See bench/README.md for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
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
    DatabaseKind,
    HttpConnection,
    loopback_only,
    median,
    process_stat_cpu_s,
    start_sync_server,
)

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/indexeddb/dexie-v3-small.json"
PASSWORD = "a long enough bench password"
EVENTS_PER_MATCH = 60
KINDS = ("goal", "save", "tackle", "foul", "free_kick", "corner", "key_pass", "ball_won")


def build_export(events: int, seed: int = 7) -> dict[str, Any]:
    """A Dexie export of the older schema holding ``events`` events (and their outbox rows)."""
    rng = random.Random(seed)
    document: dict[str, Any] = json.loads(FIXTURE.read_text())
    blocks = {block["tableName"]: block for block in document["data"]["data"]}
    players = [row["id"] for row in blocks["players"]["rows"]]
    season = blocks["seasons"]["rows"][0]["season_id"]
    matches: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    start_ms = 1_757_000_000_000
    for number in range((events + EVENTS_PER_MATCH - 1) // EVENTS_PER_MATCH):
        match_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kickoff = start_ms + number * 7 * 86_400_000
        matches.append({
            "match_id": match_id, "id": match_id, "season_id": season, "kickoff_ts": kickoff,
            "competition": "League", "home_team_id": "1", "away_team_id": "2", "venue": "Rec",
            "duration_mins": 50, "period_format": "half", "created_at": kickoff,
            "updated_at": kickoff,
        })  # fmt: skip
        for index in range(min(EVENTS_PER_MATCH, events - number * EVENTS_PER_MATCH)):
            at = kickoff + index * 45_000
            kind = KINDS[rng.randrange(len(KINDS))]
            notes = f"Nice one (Assist: {rng.choice(players)})" if kind == "goal" else ""
            event_id = f"event-{at}-{rng.getrandbits(40):x}"
            event = {
                "id": event_id, "match_id": match_id, "season_id": season, "ts_server": at,
                "period_number": 1 + index * 2 // EVENTS_PER_MATCH,
                "clock_ms": (index % (EVENTS_PER_MATCH // 2)) * 45_000, "kind": kind,
                "team_id": "1", "player_id": rng.choice(players), "sentiment": 1, "notes": notes,
                "created_at": at, "updated_at": at,
            }  # fmt: skip
            rows.append(event)
            outbox.append({
                "table_name": "events", "record_id": event_id, "operation": "INSERT",
                "data": dict(event), "synced": False, "created_at": at, "retry_count": 0,
                "id": len(outbox) + 1,
            })  # fmt: skip
    blocks["matches"]["rows"] = matches
    blocks["events"]["rows"] = rows
    blocks["outbox"]["rows"] = outbox
    blocks["lineup"]["rows"] = []
    blocks["match_notes"]["rows"] = []
    for block in document["data"]["tables"]:
        block["rowCount"] = len(blocks[block["name"]]["rows"])
    return document


async def sign_up(port: int) -> tuple[str, str]:
    """A new club: its owner's email and an access token of device ``bench``."""
    email = f"bench-{secrets.token_hex(6)}@example.org"
    body = json.dumps({"email": email, "password": PASSWORD, "team_name": "Bench"}).encode()
    status, answer = await _post(port, "/api/auth/signup", body, None)
    if status != 201:
        raise RuntimeError(f"signup answered {status}: {answer[:200]!r}")
    body = json.dumps({"email": email, "password": PASSWORD, "device_id": "bench"}).encode()
    status, answer = await _post(port, "/api/auth/login", body, None)
    token: str = json.loads(answer)["access_token"]
    return email, token


async def _post(port: int, path: str, body: bytes, token: str | None) -> tuple[int, bytes]:
    connection = await HttpConnection.open(HOST, port)
    try:
        return await connection.request(_request(port, path, body, token))
    finally:
        await connection.aclose()


def _request(port: int, path: str, body: bytes, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_log(port: int, token: str) -> list[dict[str, Any]]:
    connection = await HttpConnection.open(HOST, port)
    changes: list[dict[str, Any]] = []
    cursor = 0
    try:
        while True:
            body = json.dumps(
                {"device_id": "bench", "cursor": cursor, "limit": 1000, "include_own": True}
            ).encode()
            status, answer = await connection.request(_request(port, "/api/sync/pull", body, token))
            if status != 200:
                raise RuntimeError(f"pull answered {status}: {answer[:300]!r}")
            page: dict[str, Any] = json.loads(answer)
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                return changes
    finally:
        await connection.aclose()


async def bare_push(port: int, token: str, changes: list[dict[str, Any]]) -> float:
    """Seconds to push ``changes`` (as device ``bench``, renumbered) in sets of 500."""
    sets = []
    for start in range(0, len(changes), 500):
        batch = [
            {"seq": start + i + 1, "hlc": c["hlc"], "table": c["table"], "id": c["id"],
             "op": c["op"], "fields": c["fields"]}
            for i, c in enumerate(changes[start : start + 500])
        ]  # fmt: skip
        body = json.dumps({"device_id": "bench", "changes": batch}).encode()
        sets.append(_request(port, "/api/sync/push", body, token))
    connection = await HttpConnection.open(HOST, port)
    try:
        began = time.perf_counter()
        for raw in sets:
            status, answer = await connection.request(raw)
            if status != 200:
                raise RuntimeError(f"push answered {status}: {answer[:300]!r}")
        return time.perf_counter() - began
    finally:
        await connection.aclose()


def run_import(port: int, email: str, export: Path, report: Path) -> tuple[float, float]:
    """Wall seconds and the importer's own CPU seconds for one `touchline-import`."""
    command = [
        str(Path(sys.executable).with_name("touchline-import")), str(export),
        "--server", f"http://{HOST}:{port}", "--email", email, "--report", str(report),
    ]  # fmt: skip
    before = os.times()
    began = time.perf_counter()
    result = subprocess.run(
        command,
        env={**os.environ, "TOUCHLINE_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall = time.perf_counter() - began
    after = os.times()
    if result.returncode != 0:
        raise RuntimeError(f"touchline-import exited {result.returncode}: {result.stderr}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


async def one_database(
    kind: DatabaseKind, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    db = Database(kind, args.postgres_url, workdir)
    export = workdir / "export.json"
    export.write_text(json.dumps(build_export(args.events)))
    server = start_sync_server(db, "import", f"sync-server ({db.label})", {})
    figures: dict[str, list[float]] = {"import_s": [], "import_cpu_s": [], "server_cpu_s": [],
                                       "bare_s": []}  # fmt: skip
    pushed = 0
    try:
        for run in range(args.runs):
            email, token = await sign_up(server.port)
            cpu_before = process_stat_cpu_s(server.pid)
            wall, cpu = run_import(server.port, email, export, workdir / f"report-{run}.json")
            figures["server_cpu_s"].append(process_stat_cpu_s(server.pid) - cpu_before)
            figures["import_s"].append(wall)
            figures["import_cpu_s"].append(cpu)
            report = json.loads((workdir / f"report-{run}.json").read_text())
            pushed = report["changes_pushed"]
            assert report["tables"]["events"]["imported"] == args.events, report["tables"]
            imported = [c for c in await read_log(server.port, token) if c["device_id"] != "server"]
            _, fresh_token = await sign_up(server.port)
            figures["bare_s"].append(await bare_push(server.port, fresh_token, imported))
            print(f"  {db.label} run {run + 1}: import {wall:.2f} s, bare push "
                  f"{figures['bare_s'][-1]:.2f} s", flush=True)  # fmt: skip
    finally:
        server.stop()
        await db.drop_schemas()
    medians = {name: median(values) for name, values in figures.items()}
    return {"database": db.label, "changes_pushed": pushed, **medians, "runs": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1500, help="events in the export (1500)")
    parser.add_argument("--runs", type=int, default=5, help="runs; medians are printed (5)")
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args(argv)
    loopback_only(args.postgres_url, "--postgres-url", "bench/import_export.py")
    results = []
    with tempfile.TemporaryDirectory(prefix="touchline-import-bench-") as workdir:
        for kind in args.databases.split(","):
            if kind not in ("sqlite", "postgres"):
                parser.error(f"unknown database {kind!r}")
            database: DatabaseKind = "sqlite" if kind == "sqlite" else "postgres"
            results.append(asyncio.run(one_database(database, args, Path(workdir))))
    print(f"\n{args.events} events ({args.events * 2} event rows with the outbox), "
          f"{args.runs} runs, medians:")  # fmt: skip
    print(f"{'database':<12}{'changes':>9}{'import s':>10}{'importer CPU s':>16}"
          f"{'server CPU s':>14}{'bare push s':>13}{'ratio':>7}")  # fmt: skip
    for r in results:
        print(f"{r['database']:<12}{r['changes_pushed']:>9}{r['import_s']:>10.2f}"
              f"{r['import_cpu_s']:>16.2f}{r['server_cpu_s']:>14.2f}{r['bare_s']:>13.2f}"
              f"{r['import_s'] / r['bare_s']:>7.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
