"""Bytes a phone pays for one 120-event match, against the mobile data budgets.

    .venv/bin/python bench/mobile_bytes.py

Runs the app in this process (Litestar's test client: no port, no server left behind) on a
temporary SQLite database, with ENVIRONMENT=production settings (its security headers count
on the wire). It signs a club up, pushes the teams, 14 players, the match and its clock
through sync (as the coach's phone would), logs 120 realistic events through
``POST /api/matches/{id}/events`` (goals with assists, an own goal, shots, saves, tackles,
cards, substitutions, notes, ratings, pitch positions) and makes 5 corrections through
``PUT /api/events/{id}``. Then it fetches, once with each ``Accept-Encoding`` (identity, gzip,
br), and prints the body sizes:

- the full match view ``GET /api/matches/{id}`` (falls back to ``GET /api/watch/{token}``,
  saying so, when that route does not exist yet): budget 6 KB compressed;
- the events list ``GET /api/matches/{id}/events?limit=1000``: budget 12 KB compressed;
- a second coach device's full pull (``POST /api/sync/pull`` from cursor 0, unscoped, every
  page): budget < 25 KB on the wire;
- the family viewer's view ``GET /api/watch/{token}``: budget < 15 KB on the wire.

"Compressed" is the larger of the gzip and brotli bodies (in practice gzip, which every phone
browser accepts). "On the wire" adds the response's status line and headers. 1 KB = 1,000 bytes.
Each budget prints PASS or FAIL; the exit status is 1 when any fails. Takes a few seconds; an
alarm stops it after 60.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import brotli  # type: ignore[import-untyped]  # noqa: E402
from litestar.testing import TestClient  # noqa: E402

from sync_server.app import create_app  # noqa: E402
from sync_server.migrate import upgrade_to_head  # noqa: E402
from sync_server.settings import Settings  # noqa: E402

KB = 1000
DEADLINE_S = 60
ENCODINGS = ("identity", "gzip", "br")
EVENTS = 120
DEVICE = "coach-phone"
OTHER_DEVICE = "coach-tablet"
PASSWORD = "correct horse battery staple"

HOME_PLAYERS = [
    ("Maya Okafor", 1, "GK"), ("Leo Brandt", 2, "RB"), ("Sam Whitfield", 3, "LB"),
    ("Aisha Khan", 4, "CB"), ("Tom Nakamura", 5, "CB"), ("Isla McKenzie", 6, "CM"),
    ("Noah Adeyemi", 7, "RW"), ("Ruby Castellano", 8, "CM"), ("Finn O'Connell", 9, "ST"),
    ("Zara Lindqvist", 10, "AM"), ("Oscar Dubois", 11, "LW"), ("Priya Raman", 12, "CB"),
    ("Jack Thompson-Reid", 14, "ST"), ("Ellie Novak", 15, "CM"),
]  # fmt: skip
# (kind, how many, share logged for the home side)
KINDS = [
    ("shot_on_target", 10, 0.7), ("shot_off_target", 9, 0.6), ("save", 8, 0.5),
    ("tackle", 15, 0.7), ("interception", 12, 0.7), ("key_pass", 10, 0.8),
    ("ball_won", 8, 0.8), ("ball_lost", 8, 0.8), ("foul", 6, 0.5), ("free_kick", 4, 0.5),
    ("corner", 6, 0.6), ("offside", 2, 0.5), ("yellow_card", 1, 0.0), ("clearance", 4, 0.6),
]  # fmt: skip
NOTES = [
    "great pressing from the front", "lost it under pressure", "needs to scan earlier",
    "switched play well", "good recovery run", "won the header", "late challenge",
    "quick throw caught them out", "first-time finish", "should have passed",
    "brave block", "calm on the ball", "talk to her about positioning at set pieces",
]  # fmt: skip


@dataclass
class Sizes:
    """Body bytes per requested encoding, and the response headers' bytes (with gzip)."""

    body: dict[str, int]
    headers: int
    requests: int = 1
    note: str = ""

    @property
    def compressed(self) -> int:
        return max(self.body["gzip"], self.body["br"])

    @property
    def wire(self) -> int:
        return self.compressed + self.headers


def fail(message: str) -> None:
    print(f"mobile_bytes: {message}", file=sys.stderr)
    sys.exit(2)


def ok(response: Any, status: int = 200) -> Any:
    if response.status_code != status:
        fail(f"{response.request.method} {response.request.url.path}: {response.text}")
    return response.json()


def fetch(
    client: TestClient[Any], method: str, url: str, headers: dict[str, str], **kw: Any
) -> tuple[bytes, Any, int]:
    """The raw body as sent, its decoded JSON and the response's status and header bytes."""
    with client.stream(method, url, headers=headers, **kw) as response:
        raw = b"".join(response.iter_raw())
        if response.status_code != 200:
            fail(f"{method} {url}: {response.status_code} {raw[:300]!r}")
        encoding = response.headers.get("content-encoding", "identity")
        status_line = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
        header_bytes = status_line + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2
    plain = {"gzip": gzip.decompress, "br": brotli.decompress}.get(encoding, bytes)(raw)
    return raw, json.loads(plain), header_bytes


def measure(client: TestClient[Any], method: str, url: str, headers: dict[str, str]) -> Sizes:
    body: dict[str, int] = {}
    header_bytes = 0
    for encoding in ENCODINGS:
        raw, _, with_headers = fetch(
            client, method, url, headers={**headers, "Accept-Encoding": encoding}
        )
        body[encoding] = len(raw)
        if encoding == "gzip":
            header_bytes = with_headers
    return Sizes(body, header_bytes)


def measure_pull(client: TestClient[Any], headers: dict[str, str]) -> Sizes:
    """Every page of a fresh device's unscoped pull from cursor 0, once per encoding."""
    total = dict.fromkeys(ENCODINGS, 0)
    header_bytes = pages = changes = 0
    for encoding in ENCODINGS:
        cursor, has_more, pages, changes = 0, True, 0, 0
        while has_more and pages < 50:
            body = {"device_id": OTHER_DEVICE, "cursor": cursor, "limit": 1000}
            raw, page, with_headers = fetch(
                client,
                "POST",
                "/api/sync/pull",
                headers={**headers, "Accept-Encoding": encoding},
                json=body,
            )
            total[encoding] += len(raw)
            header_bytes += with_headers if encoding == "gzip" else 0
            cursor, has_more = page["cursor"], page["has_more"]
            changes += len(page["changes"])
            pages += 1
    return Sizes(total, header_bytes, requests=pages, note=f"{changes} changes")


def build_match(client: TestClient[Any]) -> dict[str, Any]:
    """Sign up, push the teams, players, match and clock, log 120 events over REST."""
    rng = random.Random(4)
    email = f"coach-{uuid.uuid4().hex[:10]}@example.org"
    signup = ok(
        client.post(
            "/api/auth/signup",
            json={
                "email": email,
                "password": PASSWORD,
                "team_name": "Riverside Juniors U11",
                "device_id": DEVICE,
            },
        ),
        201,
    )
    coach = {"Authorization": f"Bearer {signup['access_token']}"}
    home, away, match = signup["team"]["id"], str(uuid.uuid4()), str(uuid.uuid4())
    players = [str(uuid.uuid4()) for _ in HOME_PLAYERS]
    kickoff = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=47)

    def at(minutes: float) -> str:
        return (kickoff + timedelta(minutes=minutes)).isoformat()

    records: list[tuple[str, str, dict[str, Any]]] = [
        ("teams", away, {"name": "Hillview Rovers U11", "is_opponent": True, "color": "#1f4e9c"}),
        *(
            (
                "players",
                pid,
                {
                    "full_name": name,
                    "squad_number": number,
                    "preferred_pos": pos,
                    "dob": f"2014-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    "current_team": home,
                },
            )
            for pid, (name, number, pos) in zip(players, HOME_PLAYERS, strict=True)
        ),
        (
            "matches",
            match,
            {
                "home_team_id": home,
                "away_team_id": away,
                "kickoff_ts": kickoff.isoformat(),
                "competition": "County Junior Cup, round 3",
                "venue": "Riverside Park, pitch 2",
                "period_format": "half",
                "duration_mins": 50,
            },
        ),
        ("clock_actions", str(uuid.uuid4()), {"match_id": match, "action": "start", "at": at(0)}),
        (
            "clock_actions",
            str(uuid.uuid4()),
            {"match_id": match, "action": "end_period", "at": at(25), "period_number": 1},
        ),
        (
            "clock_actions",
            str(uuid.uuid4()),
            {"match_id": match, "action": "start_period", "at": at(30), "period_number": 2},
        ),
    ]
    changes = [
        {
            "seq": seq,
            "hlc": f"{time.time_ns() // 1_000_000:015d}-{seq:05d}",
            "table": table,
            "id": record_id,
            "fields": fields,
        }
        for seq, (table, record_id, fields) in enumerate(records, start=1)
    ]
    ok(client.post("/api/sync/push", json={"device_id": DEVICE, "changes": changes}, headers=coach))

    # The events, in match order: two 25-minute halves, the second one still running.
    plan: list[tuple[str, str]] = [("goal", "home")] * 4 + [("goal", "away")] * 2
    plan += [("own_goal", "away")]
    plan += [("substitution", "home")] * 6
    for kind, count, home_share in KINDS:
        plan += [(kind, "home" if rng.random() < home_share else "away") for _ in range(count)]
    rng.shuffle(plan)
    # Every home goal gets an assist right after it.
    timeline: list[tuple[str, str]] = []
    for kind, side in plan:
        timeline.append((kind, side))
        if kind == "goal" and side == "home":
            timeline.append(("assist", "home"))
    if len(timeline) != EVENTS:
        fail(f"the plan has {len(timeline)} events, not {EVENTS}")
    moments = sorted(rng.uniform(0, 42) for _ in timeline)  # 25 + 17 minutes played
    logged: list[dict[str, Any]] = []
    url = f"/api/matches/{match}/events"
    for (kind, side), minute in zip(timeline, moments, strict=True):
        period, in_period = (1, minute) if minute < 25 else (2, minute - 25)
        body: dict[str, Any] = {
            "kind": kind,
            "team": side,
            "period_number": period,
            "clock_ms": int(in_period * 60_000),
            "created_at": at(minute + (5 if period == 2 else 0)),
        }
        if side == "home":
            body["player_id"] = rng.choice(players[1:] if kind != "save" else players[:1])
            body["sentiment"] = rng.randint(-2, 4)
        if kind not in ("substitution", "yellow_card", "offside"):
            body["x"], body["y"] = round(rng.uniform(2, 98), 1), round(rng.uniform(2, 98), 1)
        if kind == "substitution":
            on, off = rng.sample(range(len(HOME_PLAYERS)), 2)
            body["player_id"] = players[on]
            body["notes"] = f"{HOME_PLAYERS[on][0]} on for {HOME_PLAYERS[off][0]}"
        elif kind == "assist":
            body["related_event_id"] = logged[-1]["id"]
        elif rng.random() < 0.3:
            body["notes"] = rng.choice(NOTES)
        logged.append(ok(client.post(url, json=body, headers=coach), 201))

    # Corrections made on the touchline afterwards.
    goals = [e for e in logged if e["kind"] == "goal" and e["team"] == "home"]
    edits = [
        (goals[0]["id"], {"player_id": players[9]}),
        (goals[1]["id"], {"notes": "deflected in off the defender", "sentiment": 2}),
        (logged[10]["id"], {"kind": "interception"}),
        (logged[40]["id"], {"x": 55.0, "y": 12.5}),
        (logged[70]["id"], {"notes": None}),
    ]
    for event_id, fields in edits:
        ok(client.put(f"/api/events/{event_id}", json=fields, headers=coach))
    return {"email": email, "coach": coach, "match": match, "events": logged}


def match_view_path(client: TestClient[Any]) -> str | None:
    """The documented path of GET /api/matches/{id}, or None when the route does not exist."""
    paths = client.app.openapi_schema.paths or {}
    for path, item in paths.items():
        if re.fullmatch(r"/api/matches/\{[^}/]+\}", str(path)) and item.get is not None:
            return str(path)
    return None


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _out_of_time(signum: int, frame: object) -> None:
    raise TimeoutError(f"mobile_bytes: still running after {DEADLINE_S} s; stopped")


def main() -> int:
    # A hung run ends itself (and the temporary database is removed on the way out).
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(DEADLINE_S)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="touchline-bytes-") as tmp:
        settings = Settings.from_env(
            {
                "ENVIRONMENT": "production",
                "SECRET_KEY": os.urandom(24).hex(),
                "ALLOW_SIGNUP": "true",
                "DATABASE_URL": f"sqlite+aiosqlite:///{Path(tmp) / 'touchline.db'}",
                "RATE_LIMIT_PER_MINUTE": "100000",
                "LOGIN_ATTEMPTS_PER_MINUTE": "1000",
            }
        )
        upgrade_to_head(settings)
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            made = build_match(client)
            coach, match = made["coach"], made["match"]
            share = ok(client.get(f"/api/matches/{match}/share", headers=coach))
            watch_url = f"/api/watch/{share['token']}"
            view_path = match_view_path(client)
            if view_path is not None:
                view_what = "match view  GET /api/matches/{id}"
                view = measure(client, "GET", f"/api/matches/{match}", coach)
            else:
                view_what = "match view  GET /api/watch/{token} (fallback)"
                view = measure(client, "GET", watch_url, {})
            listed = measure(client, "GET", f"/api/matches/{match}/events?limit=1000", coach)
            tablet = ok(
                client.post(
                    "/api/auth/login",
                    json={"email": made["email"], "password": PASSWORD, "device_id": OTHER_DEVICE},
                )
            )
            pull = measure_pull(client, {"Authorization": f"Bearer {tablet['access_token']}"})
            viewer = measure(client, "GET", watch_url, {})

    rows = [
        (view_what, view, view.compressed, 6 * KB, "compressed"),
        (
            "events list GET /api/matches/{id}/events",
            listed,
            listed.compressed,
            12 * KB,
            "compressed",
        ),
        (
            f"coach pull, {pull.requests} page(s), {pull.note}",
            pull,
            pull.wire,
            25 * KB,
            "on the wire",
        ),
        ("viewer GET /api/watch/{token}", viewer, viewer.wire, 15 * KB, "on the wire"),
    ]
    print(
        f"Touchline mobile bytes: one {EVENTS}-event match, SQLite, in-process app, "
        f"commit {commit()}"
    )
    if view_path is None:
        print(
            "NOTE: GET /api/matches/{id} does not exist yet; the match view row measures "
            "GET /api/watch/{token} (the same mobile format, viewer-safe) instead."
        )
    print(f"{'what':<52} {'raw':>8} {'gzip':>8} {'brotli':>8} {'checked':>8}  budget")
    failed = False
    for what, sizes, checked, budget, how in rows:
        passed = checked < budget
        failed |= not passed
        print(
            f"{what:<52} {sizes.body['identity']:>8,} {sizes.body['gzip']:>8,} "
            f"{sizes.body['br']:>8,} {checked:>8,}  {how} < {budget:,}: "
            f"{'PASS' if passed else 'FAIL'}"
        )
    print(
        "bytes are response bodies as sent for Accept-Encoding identity / gzip / br; "
        "'checked' is what the budget applies to (1 KB = 1,000 bytes). "
        f"Took {time.monotonic() - started:.1f} s."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
