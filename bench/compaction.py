"""Log size of a realistic match before and after compaction (PROTOCOL.md §6.6).

    .venv/bin/python bench/compaction.py [--events 120] [--rework 1] [--databases sqlite,postgres]

Two coaches' devices log one match through the change store (in process, on a fresh SQLite
file or PostgreSQL schema on loopback): phone-a sets the match up (lineup of 14, the clock)
and logs every event in sets of three as it goes; phone-b, on the bench, pulls every few
events and corrects some (scorer, notes, sentiment), phone-a corrects some of those notes
again, a few events are deleted by mistake and some restored, both coaches edit the same
scorer offline now and then (real conflicts), substitutions move lineup minutes, and at the
final whistle phone-a writes the score. Then the match is compacted as
``sync-server compact --match <id>`` does, and the match's log is measured before and after:
entries and bytes as a pull sends them, and what trimming each kept entry to the fields it
still wins would have saved besides. ``--rework N`` has phone-b go over the events it corrects
N times (more edits that overwrite edits). The match is deterministic (seeded).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from bench.common import DEFAULT_POSTGRES, Database, loopback_only
from protocol.compaction import CompactionReport, compact, fold, log_size
from protocol.hlc import Hlc, HybridClock
from protocol.schema import Scalar, TableName
from protocol.wire import Change, LoggedChange, Op, PullRequest, PushRequest
from sync_server.db import create_engine
from sync_server.migrate import upgrade_to_head_async
from sync_server.settings import Settings
from sync_server.store_pg import open_store
from sync_server.store_sql import SqlChangeStore

KICKOFF_MS = 1_772_359_200_000  # 2026-03-01T10:00:00Z
KINDS = (
    ["tackle"] * 14 + ["interception"] * 10 + ["key_pass"] * 10 + ["foul"] * 8 + ["save"] * 6
    + ["ball_out"] * 10 + ["shot_on_target"] * 6 + ["shot_off_target"] * 6 + ["corner"] * 5
    + ["free_kick"] * 5 + ["goal"] * 3 + ["yellow_card"] * 1
)  # fmt: skip


class Wall:
    def __init__(self) -> None:
        self.now_ms = KICKOFF_MS - 15 * 60_000

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Device:
    device_id: str
    wall: Wall
    store: SqlChangeStore
    club: uuid.UUID
    seq: int = 0
    cursor: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    outbox: list[Change] = field(default_factory=list)
    clock: HybridClock = field(init=False)

    def __post_init__(self) -> None:
        self.clock = HybridClock(self.wall)

    def make(
        self,
        table: TableName,
        record_id: uuid.UUID,
        fields: dict[str, Scalar] | None = None,
        op: Op = "upsert",
    ) -> uuid.UUID:
        self.seq += 1
        self.outbox.append(
            Change(seq=self.seq, hlc=self.clock.now().encode(), table=table, id=record_id,
                   op=op, fields=fields or {})
        )  # fmt: skip
        return record_id

    async def push(self) -> None:
        if self.outbox:
            request = PushRequest(device_id=self.device_id, changes=self.outbox, seen=self.seen)
            await self.store.push(self.club, request)
            self.outbox = []

    async def sync(self) -> None:
        await self.push()
        while True:
            page = await self.store.pull(
                self.club, PullRequest(device_id=self.device_id, cursor=self.cursor, limit=500)
            )
            for change in page.changes:
                self.clock.receive(Hlc.parse(change.hlc))
                self.seen[change.device_id] = max(self.seen.get(change.device_id, 0), change.seq)
            self.cursor = page.cursor
            if not page.has_more:
                return


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


async def play(
    store: SqlChangeStore, club: uuid.UUID, events: int, seed: int, rework: int
) -> uuid.UUID:
    """One match, as described in the module's docstring; returns its id."""
    rng = random.Random(seed)
    wall = Wall()
    a, b = Device("phone-a", wall, store, club), Device("phone-b", wall, store, club)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    squad = [str(uuid.uuid4()) for _ in range(14)]
    a.make("teams", home, {"name": "Riverside U11"})
    a.make("teams", away, {"name": "Hillview U11", "is_opponent": True})
    a.make("matches", match, {"home_team_id": str(home), "away_team_id": str(away),
                              "kickoff_ts": iso(KICKOFF_MS), "period_format": "half",
                              "duration_mins": 50, "competition": "U11 League"})  # fmt: skip
    lineup = {
        player: a.make(
            "lineup",
            uuid.uuid4(),
            {
                "match_id": str(match),
                "player_id": player,
                "start_min": 0.0 if n < 11 else None,
                "position": "outfield",
            },
        )
        for n, player in enumerate(squad)
    }
    await a.sync()
    await b.sync()

    def clock_action(device: Device, action: str, period: int) -> None:
        fields: dict[str, Scalar] = {"match_id": str(match), "action": action,
                                     "at": iso(wall.now_ms), "period_number": period}  # fmt: skip
        device.make("clock_actions", uuid.uuid4(), fields)

    wall.now_ms = KICKOFF_MS
    clock_action(a, "start", 1)
    logged: list[uuid.UUID] = []
    step_ms = 50 * 60_000 // events
    half = events // 2
    subs = {half + events // 8: 11, half + events // 4: 12, half + events * 3 // 8: 13}
    goals = [0, 0]
    for index in range(events):
        wall.now_ms += step_ms
        period = 1 if index < half else 2
        if index == half:
            clock_action(a, "end_period", 1)
            wall.now_ms += 10 * 60_000
            clock_action(a, "start_period", 2)
        ours = rng.random() < 0.65
        kind = rng.choice(KINDS)
        fields: dict[str, Scalar] = {
            "match_id": str(match), "period_number": period, "kind": kind,
            "clock_ms": (index % half) * step_ms, "team_id": str(home if ours else away),
            "player_id": rng.choice(squad) if ours else None, "created_at": iso(wall.now_ms),
        }  # fmt: skip
        if index in subs:
            off, on = rng.choice(squad[:11]), squad[subs[index]]
            fields.update(kind="substitution", player_id=on, team_id=str(home))
            minute = 25 + (index - half) * 25 / half
            b.make("lineup", lineup[off], {"end_min": minute})
            b.make("lineup", lineup[on], {"start_min": minute})
        if kind == "goal":
            goals[0 if ours else 1] += 1
        logged.append(a.make("events", uuid.uuid4(), fields))
        if index % 3 == 2:
            await a.push()
        if index % 7 == 6:
            # phone-b catches up and corrects some of what it sees.
            await a.push()
            await b.sync()
            for event in logged[-7:] * rework:
                roll = rng.random()
                if roll < 0.12:
                    b.make("events", event, {"player_id": rng.choice(squad)})
                elif roll < 0.24:
                    b.make("events", event, {"notes": rng.choice(["great run", "check video"])})
                elif roll < 0.30:
                    b.make("events", event, {"sentiment": rng.choice([-2, 1, 2])})
            await b.sync()
            await a.sync()
        if index % 15 == 14:
            # phone-a rewrites a note phone-b made, having seen it.
            a.make("events", rng.choice(logged[-15:]), {"notes": "corrected at the break"})
        if index % 20 == 10:
            mistaken = logged[-1]
            a.make("events", mistaken, op="delete")
            if index % 40 == 10:
                await a.sync()
                await b.sync()
                b.make("events", mistaken, op="restore")
        if index % 30 == 29:
            # Both coaches fix the same scorer without seeing each other: a real conflict.
            target = logged[-2]
            a.make("events", target, {"player_id": rng.choice(squad)})
            b.make("events", target, {"player_id": rng.choice(squad)})
            await a.push()
            await b.push()
        if index == half // 2:
            fields = {"match_id": str(match), "period_number": 1, "note_text": "Windy"}
            note = b.make("match_notes", uuid.uuid4(), fields)
            b.make("match_notes", note, {"note_text": "Strong wind against us"})
    wall.now_ms += 60_000
    clock_action(a, "finish", 2)
    a.make("matches", match, {"our_score": goals[0], "opponent_score": goals[1]})
    await a.sync()
    await b.sync()
    return match


async def measure(
    db: Database, events: int, seed: int, rework: int
) -> tuple[CompactionReport, float, int, str]:
    env = {"ENVIRONMENT": "test", "SECRET_KEY": "bench-secret-key-that-is-long-enough-for-hs256"}
    name = db.fresh_name("compaction")
    if db.kind == "postgres":
        url = db.postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        env.update(DATABASE_URL=url, DATABASE_SCHEMA=name)
    else:
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{db.workdir / name}.db"
    settings = Settings.from_env(env)
    await upgrade_to_head_async(settings)
    engine = create_engine(settings)
    store = open_store(engine, max_skew_ms=settings.max_clock_skew_ms)
    try:
        club = uuid.uuid4()
        match = await play(store, club, events, seed, rework)
        before = await match_log(store, club, match)
        started = time.perf_counter()
        report = await store.compact(club, match)
        elapsed_ms = (time.perf_counter() - started) * 1000
        after = await match_log(store, club, match)
        kept = {(c.device_id, c.seq) for c in after}
        assert after == compact(before)  # nothing was restamped: the clocks agree
        dropped = Counter(f"{c.table} {c.op}" for c in before if (c.device_id, c.seq) not in kept)
        detail = ", ".join(f"{what}: {count}" for what, count in sorted(dropped.items()))
    finally:
        await store.close()
        await engine.dispose()
    return report, elapsed_ms, trimmed_bytes(after), detail


def trimmed_bytes(kept: list[LoggedChange]) -> int:
    """What the kept entries would weigh if each were cut down to the fields it still wins
    (the design keeps them whole, so that a re-sent change compares with them exactly)."""
    holders = {
        (key, name): (version.device_id, version.seq)
        for key, state in fold(kept).items()
        for name, version in state.fields.items()
    }
    trimmed = [
        msgspec.structs.replace(
            entry,
            fields={
                name: value
                for name, value in entry.fields.items()
                if holders.get(((entry.table, entry.id), name)) == (entry.device_id, entry.seq)
            },
        )
        for entry in kept
    ]
    return log_size(trimmed).bytes


async def match_log(store: SqlChangeStore, club: uuid.UUID, match: uuid.UUID) -> list[LoggedChange]:
    """The match's log as a new device pulls it from cursor 0."""
    changes: list[LoggedChange] = []
    cursor = 0
    while True:
        page = await store.pull(
            club, PullRequest(device_id="new-phone", cursor=cursor, match_id=match, limit=1000)
        )
        changes += page.changes
        cursor = page.cursor
        if not page.has_more:
            return changes


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=120)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--rework", type=int, default=1, help="phone-b's passes over the events it corrects"
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    loopback_only(args.postgres_url, "PostgreSQL", "bench/compaction.py")
    print("| database | events | rework | entries before | entries after | bytes before "
          "| bytes after | bytes if trimmed | compaction (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    details = []
    with tempfile.TemporaryDirectory(prefix="touchline-bench-") as workdir:
        for kind in args.databases.split(","):
            db = Database("postgres" if kind == "postgres" else "sqlite", args.postgres_url,
                          Path(workdir))  # fmt: skip
            try:
                report, elapsed_ms, trimmed, detail = await measure(
                    db, args.events, args.seed, args.rework
                )
            finally:
                await db.drop_schemas()
            b, a = report.before, report.after
            print(f"| {db.label} | {args.events} | {args.rework} | {b.entries:,} | {a.entries:,} "
                  f"| {b.bytes:,} | {a.bytes:,} | {trimmed:,} | {elapsed_ms:.0f} |")  # fmt: skip
            details.append(f"{db.label}: dropped {detail}")
    print()
    for line in details:
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
