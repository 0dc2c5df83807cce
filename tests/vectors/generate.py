"""Writes the golden vectors of the sync rules, computed by the Python implementation.

The same JSON files are read by the Python suite (tests/test_golden_vectors.py) and by the
TypeScript client's suite (clients/typescript/test/vectors.test.ts), so both implementations
of the clock, the version vectors, the merge, the server's stamping and conflict detection,
the field rules and the derived ids agree exactly. Run it after a deliberate change to one of
those rules, then make the other implementation agree:

    .venv/bin/python tests/vectors/generate.py

Inputs are listed here or drawn from a seeded generator, so the output is the same on every
run. Integral floats (``50.0``) are avoided on purpose: JSON readers in JavaScript cannot tell
them from integers (PROTOCOL.md §2.4).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from protocol import merge
from protocol.hlc import Hlc, HybridClock, stamp
from protocol.ingest import RecordKey
from protocol.schema import TABLES, Scalar, TableName, check_value
from protocol.vector_clock import advance, compare, covers
from protocol.vector_clock import merge as merge_vectors
from protocol.wire import Change, Op, PushRequest
from tests.vectors.reference import SKEW, Json, Server, records_json

HERE: Final = Path(__file__).resolve().parent
NOW: Final = 1_772_359_200_000  # 2026-03-01T10:00:00Z


def write(name: str, content: Mapping[str, Json]) -> None:
    text = json.dumps(content, indent=1, ensure_ascii=False) + "\n"
    (HERE / name).write_text(text, encoding="utf-8")


# -- HLC -------------------------------------------------------------------------------------


def hlc_vectors() -> dict[str, Json]:
    pairs = [
        (0, 0),
        (1_772_359_200_000, 0),
        (1_772_359_954_250, 2),
        (1_772_359_954_250, 99_999),
        (999_999_999_999_999, 99_999),
        (1, 1),
    ]
    invalid_wire = [
        "",
        "1772359200000-0",
        "001772359200000-000000",
        "001772359200000_00000",
        "0017723592000000-00000",
        "001772359200000-00000\n",
        " 001772359200000-00000",
        "00177235920000a-00000",
        "-01772359200000-00000",
    ]
    rng = random.Random(7)
    clocks = [
        _clock("worked example, Ben (§11 step 2, 3)", "000000000000000-00000", [
            ("now", 1_772_359_950_000 - 60_000, None),
            ("receive", 1_772_359_950_000, "001772359954250-00000"),
            ("now", 1_772_359_952_000, None),
            ("receive", 1_772_360_430_000, "001772360400000-00000"),
        ]),
        _clock("wall clock set back", "001772359200000-00000", [
            ("now", 1_772_359_100_000, None),
            ("now", 1_772_359_100_000, None),
            ("now", 1_772_359_300_000, None),
        ]),
        _clock("counter overflow borrows a millisecond", "001772359200000-99998", [
            ("now", 1_772_359_200_000, None),
            ("now", 1_772_359_200_000, None),
            ("receive", 1_772_359_200_000, "001772359200001-99999"),
        ]),
        _clock("receive an older timestamp", "001772359200000-00005", [
            ("receive", 1_772_359_100_000, "001772359000000-00000"),
            ("receive", 1_772_359_300_000, "001772359000000-00000"),
        ]),
    ]  # fmt: skip
    for index in range(6):
        steps: list[tuple[str, int, str | None]] = []
        physical = NOW
        for _ in range(40):
            physical += rng.choice([0, 0, 1, 5, -3, 250, -2000, 60_000])
            if rng.random() < 0.4:
                remote = Hlc(physical + rng.randint(-90_000, 90_000), rng.choice([0, 1, 99_999]))
                steps.append(("receive", physical, remote.encode()))
            else:
                steps.append(("now", physical, None))
        clocks.append(_clock(f"seeded walk {index}", Hlc(NOW, 0).encode(), steps))
    stamps = [
        _stamp(Hlc(NOW), NOW, SKEW, None, None),
        _stamp(Hlc(NOW + 1_000_000), NOW, SKEW, None, None),
        _stamp(Hlc(NOW + 1_000_000), NOW, SKEW, Hlc(NOW + SKEW), None),
        _stamp(Hlc(NOW - 5), NOW, SKEW, Hlc(NOW), None),
        _stamp(Hlc(NOW + 1_000_000), NOW - 10_000, SKEW, None, Hlc(NOW + SKEW, 3)),
        _stamp(Hlc(NOW + 1_000_000), NOW, SKEW, None, Hlc(NOW, 99_999)),
        _stamp(Hlc(NOW, 4), NOW, 0, Hlc(NOW, 4), Hlc(NOW, 4)),
    ]
    for _ in range(40):
        sent = Hlc(NOW + rng.randint(-120_000, 240_000), rng.randint(0, 3))
        previous = rng.choice([None, Hlc(NOW + rng.randint(-60_000, 120_000), rng.randint(0, 3))])
        floor = rng.choice([None, Hlc(NOW + rng.randint(-60_000, 180_000), rng.randint(0, 3))])
        stamps.append(_stamp(sent, NOW + rng.randint(-5_000, 5_000), SKEW, previous, floor))
    return {
        "description": "PROTOCOL.md §2.5 and §4: wire form, successor, now/receive, stamp.",
        "encode": [{"wall_ms": w, "logical": n, "wire": Hlc(w, n).encode()} for w, n in pairs],
        "invalid_wire": invalid_wire,
        "invalid_pairs": [[-1, 0], [10**15, 0], [0, -1], [0, 100_000]],
        "successor": [
            {"hlc": Hlc(w, n).encode(), "successor": Hlc(w, n).successor().encode()}
            for w, n in pairs[:-2]
        ],
        "clocks": clocks,
        "stamp": stamps,
    }


def _clock(name: str, start: str, steps: Sequence[tuple[str, int, str | None]]) -> Json:
    physical = [0]
    clock = HybridClock(lambda: physical[0], Hlc.parse(start))
    out = []
    for op, now_ms, remote in steps:
        physical[0] = now_ms
        if op == "now":
            out.append({"op": op, "physical_ms": now_ms, "result": clock.now().encode()})
        else:
            assert remote is not None
            result = clock.receive(Hlc.parse(remote)).encode()
            out.append({"op": op, "physical_ms": now_ms, "remote": remote, "result": result})
    return {"name": name, "start": start, "steps": out}


def _stamp(sent: Hlc, now_ms: int, skew: int, previous: Hlc | None, floor: Hlc | None) -> Json:
    effective = stamp(sent, now_ms=now_ms, max_skew_ms=skew, previous=previous, floor=floor)
    return {
        "sent": sent.encode(),
        "now_ms": now_ms,
        "max_skew_ms": skew,
        "previous": previous.encode() if previous else None,
        "floor": floor.encode() if floor else None,
        "effective": effective.encode(),
    }


# -- version vectors -------------------------------------------------------------------------


def vector_vectors() -> dict[str, Json]:
    rng = random.Random(11)
    devices = ["phone-anna", "phone-ben", "server", "Tab.1", "tab:2"]

    def vector() -> dict[str, int]:
        return {d: rng.randint(0, 4) for d in devices if rng.random() < 0.5}

    covers_cases, advance_cases, merge_cases, compare_cases = [], [], [], []
    for _ in range(30):
        v, d, n = vector(), rng.choice(devices), rng.randint(0, 5)
        covers_cases.append({"vector": v, "device_id": d, "seq": n, "result": covers(v, d, n)})
        advance_cases.append({"vector": v, "device_id": d, "seq": n, "result": advance(v, d, n)})
        vs = [vector() for _ in range(rng.randint(0, 3))]
        merge_cases.append({"vectors": vs, "result": merge_vectors(vs)})
        left, right = vector(), vector()
        if rng.random() < 0.3:
            right = dict(left)
        compare_cases.append({"left": left, "right": right, "result": compare(left, right).value})
    compare_cases.append({"left": {"a": 0}, "right": {}, "result": compare({"a": 0}, {}).value})
    return {
        "description": "PROTOCOL.md §2.6, §5.4: covers, advance, merge (entry-wise max), compare.",
        "covers": covers_cases,
        "advance": advance_cases,
        "merge": merge_cases,
        "compare": compare_cases,
    }


# -- merge -----------------------------------------------------------------------------------

RECORD_A: Final = "765609e3-054c-4f07-89fc-153d47f8208f"
RECORD_B: Final = "0aafa390-3606-4d06-9fcf-20035673b9a4"
RECORD_C: Final = "c8d72da2-e65f-4aae-b177-2f5392c682a6"


def logged(
    device: str, seq: int, hlc: str, op: Op = "upsert", record: str = RECORD_A, **fields: Scalar
) -> Json:
    return {
        "device_id": device,
        "seq": seq,
        "hlc": hlc,
        "table": "events",
        "id": record,
        "op": op,
        "fields": fields,
    }


def merge_vectors_file() -> dict[str, Json]:
    t = Hlc(NOW).encode()
    t1 = Hlc(NOW, 1).encode()
    t2 = Hlc(NOW + 1).encode()
    cases = [
        ("greater hlc wins", [
            logged("phone-anna", 1, t, player_id="p1"),
            logged("phone-ben", 1, t1, player_id="p2"),
        ]),
        ("equal hlc: greater device id wins, ordinal", [
            logged("phone-anna", 1, t, notes="a"),
            logged("phone-Anna", 1, t, notes="b"),
            logged("phone_anna", 1, t, notes="c"),
            logged("phone.anna", 1, t, notes="d"),
            logged("phone-ann", 1, t, notes="e"),
        ]),
        ("device id order is ASCII: - . digits : upper _ lower", [
            logged("d-", 1, t, kind="goal"),
            logged("d.", 1, t, kind="save"),
            logged("d9", 1, t, kind="foul"),
            logged("d:", 1, t, kind="corner"),
            logged("dZ", 1, t, kind="tackle"),
            logged("d_", 1, t, kind="assist"),
        ]),
        ("the same write twice changes nothing", [
            logged("phone-anna", 1, t, notes="x"),
            logged("phone-anna", 1, t, notes="x"),
        ]),
        ("null is a write", [
            logged("phone-anna", 1, t, notes="x"),
            logged("phone-ben", 1, t2, notes=None),
        ]),
        ("delete wins the flag, a concurrent edit keeps its field", [
            logged("phone-anna", 1, t, kind="goal", player_id="p1"),
            logged("phone-ben", 1, t2, "delete"),
            logged("phone-anna", 2, t1, player_id="p2"),
        ]),
        ("an edit never un-archives", [
            logged("phone-anna", 1, t, kind="goal"),
            logged("phone-ben", 1, t1, "delete"),
            logged("phone-anna", 2, Hlc(NOW + 99).encode(), kind="save"),
        ]),
        ("delete against a later restore", [
            logged("phone-anna", 1, t, kind="goal"),
            logged("phone-ben", 1, t1, "delete"),
            logged("phone-anna", 2, t2, "restore"),
        ]),
        ("restore loses to a later delete", [
            logged("phone-anna", 1, t, kind="goal"),
            logged("phone-ben", 1, t2, "delete"),
            logged("phone-anna", 2, t1, "restore"),
        ]),
        ("a replica accepts a delete before the create", [
            logged("phone-ben", 1, t2, "delete", RECORD_B),
            logged("phone-anna", 1, t, record=RECORD_B, kind="goal"),
        ]),
        ("values of different JSON types", [
            logged("phone-anna", 1, t, record=RECORD_C, notes="1"),
            logged("phone-ben", 1, t1, record=RECORD_C, notes=1),
            logged("phone-cara", 1, t1, record=RECORD_C, sentiment=True),
            logged("phone-anna", 2, t2, record=RECORD_C, x=12.5),
        ]),
    ]  # fmt: skip
    rng = random.Random(3)
    for index in range(8):
        cases.append((f"seeded {index}", _random_logged(rng)))
    out = []
    for name, changes in cases:
        replica: dict[RecordKey, merge.RecordState] = {}
        for entry in changes:
            key = (entry["table"], uuid.UUID(entry["id"]))
            write = merge.Write(
                entry["device_id"], entry["seq"], entry["hlc"], entry["op"], entry["fields"]
            )
            replica[key] = merge.apply(replica.get(key), write)
        out.append({"name": name, "changes": changes, "records": records_json(replica)})
    return {
        "description": "PROTOCOL.md §7.5: logged changes in, registers out. Any order, batching "
        "or repetition of the changes must give the same records.",
        "cases": out,
    }


def _random_logged(rng: random.Random) -> list[Json]:
    devices = ["phone-anna", "phone-ben", "tablet-cara", "server"]
    seqs = dict.fromkeys(devices, 0)
    names = ["kind", "player_id", "notes", "sentiment", "x"]
    last: dict[str, Hlc] = {}
    changes = []
    for _ in range(rng.randint(5, 25)):
        device = rng.choice(devices)
        seqs[device] += 1
        # One device's HLCs strictly increase (§7.2), so no two writes share (hlc, device).
        drawn = Hlc(NOW + rng.randint(0, 6), rng.randint(0, 2))
        previous = last.get(device)
        if previous is not None and drawn <= previous:
            drawn = previous.successor()
        last[device] = drawn
        hlc = drawn.encode()
        record = rng.choice([RECORD_A, RECORD_B, RECORD_C])
        roll = rng.random()
        if roll < 0.15:
            changes.append(logged(device, seqs[device], hlc, "delete", record))
        elif roll < 0.25:
            changes.append(logged(device, seqs[device], hlc, "restore", record))
        else:
            fields: dict[str, Scalar] = {}
            for name in rng.sample(names, rng.randint(1, 3)):
                fields[name] = rng.choice(["a", "b", None, 3, -1, 12.5, True])
            changes.append(logged(device, seqs[device], hlc, "upsert", record, **fields))
    return changes


def change_json(change: Change) -> Json:
    return {
        "seq": change.seq,
        "hlc": change.hlc,
        "table": change.table,
        "id": str(change.id),
        "op": change.op,
        "fields": dict(change.fields),
    }


def request_json(request: PushRequest) -> Json:
    return {
        "device_id": request.device_id,
        "seen": dict(request.seen),
        "changes": [change_json(c) for c in request.changes],
    }


def ingest_case(name: str, pushes: Sequence[tuple[int, PushRequest]], skew: int = SKEW) -> Json:
    server = Server(max_skew_ms=skew)
    steps = []
    for now_ms, request in pushes:
        result = server.push(request, now_ms)
        steps.append({"now_ms": now_ms, "request": request_json(request), "result": result})
    return {
        "name": name,
        "max_skew_ms": skew,
        "pushes": steps,
        "log": server.log,
        "records": records_json(server.records),
    }


MATCH: Final = "4c077bde-e851-49dd-9956-e6c32bede9ac"


def ch(
    seq: int, hlc: Hlc, fields: Mapping[str, Scalar] | None = None, *, op: Op = "upsert"
) -> Change:
    """A change of the one event these cases share."""
    return Change(
        seq=seq, hlc=hlc.encode(), table="events", id=uuid.UUID(RECORD_A), op=op,
        fields=dict(fields or {}),
    )  # fmt: skip


def req(device: str, *changes: Change, seen: dict[str, int] | None = None) -> PushRequest:
    return PushRequest(device_id=device, changes=list(changes), seen=seen or {})


def ingest_vectors() -> dict[str, Json]:
    goal = {"match_id": MATCH, "kind": "goal"}
    anna, ben, cara = "phone-anna", "phone-ben", "tablet-cara"
    create = ch(1, Hlc(NOW - 60_000), {**goal, "player_id": RECORD_C})
    cases = [
        ingest_case("the worked example (§11): causal overwrite, then a conflict", [
            (NOW, req(anna, create)),
            (NOW + 10_000, req(ben, ch(1, Hlc(NOW, 2), {"player_id": RECORD_B}), seen={anna: 1})),
            (NOW + 20_000, req(anna, ch(2, Hlc(NOW + 15_000), {"player_id": RECORD_A}))),
            (NOW + 30_000, req(anna, ch(2, Hlc(NOW + 15_000), {"player_id": RECORD_A}))),
        ]),
        ingest_case("a fast clock is capped, duplicates report the restamp again (§5.8)", [
            (NOW, req(cara, ch(1, Hlc(NOW + 1_000_000), goal),
                      ch(2, Hlc(NOW + 1_001_000), {"notes": "wind"}))),
            (NOW + 5_000, req(cara, ch(2, Hlc(NOW + 1_001_000), {"notes": "wind"}))),
            (NOW + 6_000, req(anna, ch(1, Hlc(NOW + 6_000), {"notes": "rain"}), seen={})),
        ]),
        ingest_case("the cap never goes below the club's greatest HLC", [
            (NOW, req(cara, ch(1, Hlc(NOW + 1_000_000), goal))),
            (NOW - 30_000,
             req(anna, ch(1, Hlc(NOW + 900_000), {"notes": "later"}), seen={cara: 1})),
        ]),
        ingest_case("delete against a concurrent restore: a _deleted conflict", [
            (NOW, req(anna, create)),
            (NOW + 1_000, req(ben, ch(1, Hlc(NOW + 1_000), op="delete"), seen={anna: 1})),
            (NOW + 2_000, req(cara, ch(1, Hlc(NOW + 500), op="restore"), seen={anna: 1})),
            (NOW + 3_000, req(anna, ch(2, Hlc(NOW + 2_500), op="restore"), seen={})),
        ]),
        ingest_case("same value twice is not a conflict; own overwrite neither", [
            (NOW, req(anna, create)),
            (NOW + 1_000, req(ben, ch(1, Hlc(NOW + 900), {"notes": "same"}), seen={anna: 1})),
            (NOW + 2_000, req(cara, ch(1, Hlc(NOW + 800), {"notes": "same"}), seen={anna: 1})),
            (NOW + 3_000, req(ben, ch(2, Hlc(NOW + 3_000), {"notes": "mine"}), seen={anna: 1})),
        ]),
        ingest_case("a sequence gap and a reused sequence are refused", [
            (NOW, req(anna, create)),
            (NOW + 1_000, req(anna, ch(3, Hlc(NOW + 1_000), {"notes": "skipped"}))),
            (NOW + 2_000, req(anna, ch(1, Hlc(NOW + 2_000), {"notes": "other"}))),
            (NOW + 3_000, req(anna, ch(1, create_hlc(create), {**goal, "player_id": RECORD_C}),
                              ch(2, Hlc(NOW + 3_000), {"notes": "fine"}))),
        ]),
    ]  # fmt: skip
    rng = random.Random(5)
    for index in range(6):
        cases.append(ingest_case(f"seeded {index}", _random_pushes(rng)))
    return {
        "description": "PROTOCOL.md §4.2, §5.3, §7, §8.1: change sets pushed in order (with the "
        "server's clock), the log with effective HLCs, the merged records, the restamps and "
        "the conflicts each push revealed.",
        "cases": cases,
    }


def create_hlc(change: Change) -> Hlc:
    return Hlc.parse(change.hlc)


def _random_pushes(rng: random.Random) -> list[tuple[int, PushRequest]]:
    """Three devices, three players, random edits, seen vectors, clocks and retries."""
    devices = {"phone-anna": 0, "phone-ben": 5_000, "tablet-cara": 400_000}  # clock offsets
    records = [RECORD_A, RECORD_B, RECORD_C]
    server = Server()
    next_seq = dict.fromkeys(devices, 1)
    pushes: list[tuple[int, PushRequest]] = []
    last_sent: dict[str, PushRequest] = {}
    now = NOW
    for _ in range(14):
        now += rng.randint(0, 20_000)
        device = rng.choice(list(devices))
        if device in last_sent and rng.random() < 0.15:
            pushes.append((now, last_sent[device]))  # a retry after a lost answer
            server.push(last_sent[device], now)
            continue
        seen = {d: rng.randint(0, next_seq[d] - 1) for d in devices if d != device}
        changes = []
        hlc = Hlc(now + devices[device] + rng.randint(-1_000, 1_000), 0)
        for _ in range(rng.randint(1, 3)):
            record = rng.choice(records)
            exists = ("players", uuid.UUID(record)) in server.records
            seq = next_seq[device]
            next_seq[device] += 1
            hlc = hlc.successor()
            roll = rng.random()
            if exists and roll < 0.15:
                op: Op = "delete"
                fields: dict[str, Scalar] = {}
            elif exists and roll < 0.25:
                op, fields = "restore", {}
            else:
                op = "upsert"
                fields = {"full_name": rng.choice(["Ella", "Maya", "Zoe"])}
                if rng.random() < 0.5:
                    fields["squad_number"] = rng.choice([7, 9, 10])
                if rng.random() < 0.3:
                    fields["notes"] = rng.choice(["fast", "left foot", None])
            changes.append(
                Change(seq=seq, hlc=hlc.encode(), table="players", id=uuid.UUID(record), op=op,
                       fields=fields)
            )  # fmt: skip
            if op != "upsert":
                break  # later changes in the set cannot know whether the record exists
        request = PushRequest(device_id=device, changes=changes, seen=seen)
        result = server.push(request, now)
        if "error" in result:
            raise AssertionError(f"the generator made a refused push: {result}")
        last_sent[device] = request
        pushes.append((now, request))
    return pushes


# -- field values and ids ---------------------------------------------------------------------


def value_vectors() -> dict[str, Json]:
    samples: dict[str, list[Scalar]] = {
        "text": ["", "Riverside Park", "a\u0000b", "x" * 10_000, "x" * 10_001, "é" * 10_000,
                 "\U0001f600" * 10_000, "\U0001f600" * 10_001, 5, True, None],
        "int": [0, 3, -4, 4, 5, -5, 999, 1000, 12.5, "3", True, None, 86_400_000, 86_400_001],
        "float": [0, 100, 37.5, 100.5, -0.5, "1", False, None, 1000, 1000.25],
        "bool": [True, False, 0, 1, "true", None],
        "uuid": ["765609e3-054c-4f07-89fc-153d47f8208f", "765609E3-054C-4F07-89FC-153D47F8208F",
                 "765609e3054c4f0789fc153d47f8208f", "765609e3-054c-4f07-89fc-153d47f8208", 3,
                 "{765609e3-054c-4f07-89fc-153d47f8208f}", None],
        "date": ["2014-09-23", "2024-02-29", "2026-02-29", "2026-13-01", "2026-04-31",
                 "0000-01-01", "0001-01-01", "2026-1-01", "20260301", "2026-03-01T10:00:00Z", 7],
        "timestamp": ["2026-03-01T10:12:34.250Z", "2026-03-01T10:00:00Z",
                      "2026-03-01T10:00:00+01:00",
                      "2026-03-01T10:00:00-00:00", "2026-03-01T10:00:00.123456Z",
                      "2026-03-01T10:00:00.1234567Z", "2026-03-01T10:00:00", "2026-03-01 10:00:00Z",
                      "2026-03-01T10:00Z", "20260301T100000Z", "2026-03-01T24:00:00Z",
                      "2026-03-01T23:59:60Z", "2026-02-29T10:00:00Z", "2024-02-29T23:59:59Z",
                      "2026-03-01T10:00:00+23:59", "2026-03-01T10:00:00+24:00",
                      "2026-03-01T10:00:00+05:60", "2026-03-01T10:00:00-23:99",
                      "2026-03-01T10:00:00z", "0000-03-01T10:00:00Z", 1772359200000],
        "choice": ["goal", "own_goal", "substitution", "Goal", "shot", "", None],
    }  # fmt: skip
    where: dict[str, tuple[TableName, str]] = {
        "text": ("events", "notes"),
        "int": ("events", "sentiment"),
        "float": ("events", "x"),
        "bool": ("teams", "is_opponent"),
        "uuid": ("events", "player_id"),
        "date": ("players", "dob"),
        "timestamp": ("events", "created_at"),
        "choice": ("events", "kind"),
    }
    cases: list[Json] = []
    for kind, values in samples.items():
        table, name = where[kind]
        for value in values:
            cases.append(_value_case(table, name, value))
    extra: list[tuple[TableName, str, Scalar]] = [
        ("events", "clock_ms", 86_400_000),
        ("events", "clock_ms", 86_400_001),
        ("events", "match_id", None),
        ("events", "kind", None),
        ("lineup", "start_min", 1000),
        ("lineup", "start_min", 1000.5),
        ("matches", "duration_mins", 0),
        ("matches", "period_format", "quarter"),
        ("clock_actions", "action", "end_period"),
        ("clock_actions", "at", None),
        ("club_settings", "viewer_names", "squad_number"),
        ("player_teams", "is_active", True),
        ("default_lineups", "formation", '[{"player_id": "x", "position": "GK"}]'),
        ("app_settings", "key", "theme"),
        ("app_settings", "key", None),
    ]
    for table, name, value in extra:
        cases.append(_value_case(table, name, value))
    return {
        "description": "PROTOCOL.md §2.4, §3: whether the server accepts a value for a field.",
        "cases": cases,
    }


def _value_case(table: TableName, name: str, value: Scalar) -> Json:
    problem = check_value(TABLES[table].fields[name], value)
    return {"table": table, "field": name, "value": value, "valid": problem is None}


def id_vectors() -> dict[str, Json]:
    club = "3dfd91dc-2feb-4e6c-b91f-f7b02c331e2f"
    pairs = [
        ("4c077bde-e851-49dd-9956-e6c32bede9ac", "c8d72da2-e65f-4aae-b177-2f5392c682a6"),
        ("4c077bde-e851-49dd-9956-e6c32bede9ac", "707e0474-5dbf-4d13-a1ee-6bb473403cc8"),
        (club, "app_settings:theme"),
        (club, "app_settings:current_match_id"),
        (club, "teams:1"),
        (club, "events:event-1720001234567-k3j9x0abc"),
        (club, "players:é ü \U0001f600"),
        (club, ""),
    ]
    return {
        "description": "PROTOCOL.md §2.1, §3.12: uuid5 ids (lineup rows, app settings, legacy "
        "ids). namespace and name in, the lowercase canonical UUID out.",
        "uuid5": [
            {"namespace": ns, "name": name, "uuid": str(uuid.uuid5(uuid.UUID(ns), name))}
            for ns, name in pairs
        ],
    }


def main() -> None:
    write("hlc.json", hlc_vectors())
    write("version_vectors.json", vector_vectors())
    write("merge.json", merge_vectors_file())
    write("ingest.json", ingest_vectors())
    write("values.json", value_vectors())
    write("ids.json", id_vectors())


if __name__ == "__main__":
    main()
