"""The Python implementation of the sync rules against the golden vectors in tests/vectors/.

The TypeScript client's suite reads the same files (clients/typescript/test/vectors.test.ts),
so both implementations agree exactly: clock, version vectors, merge, the server's stamping
and conflict detection, field rules and derived ids. tests/vectors/generate.py wrote the
expected outputs; a failure here means a rule changed, and both suites must be brought back
into line (regenerate only for a deliberate change of the rule).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import pytest

from protocol import merge
from protocol.hlc import Hlc, HybridClock, stamp
from protocol.ingest import RecordKey
from protocol.schema import TABLES, check_value
from protocol.vector_clock import advance, compare, covers
from protocol.vector_clock import merge as merge_vectors
from protocol.wire import Change, PushRequest
from tests.vectors.reference import Json, Server, records_json

VECTORS: Final = Path(__file__).resolve().parent / "vectors"


def load(name: str) -> Json:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def named(cases: Iterable[Json]) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in cases]


# -- HLC -------------------------------------------------------------------------------------

HLC: Final = load("hlc.json")


def test_hlc_wire_form() -> None:
    for case in HLC["encode"]:
        value = Hlc(case["wall_ms"], case["logical"])
        assert value.encode() == case["wire"]
        assert Hlc.parse(case["wire"]) == value


@pytest.mark.parametrize("text", HLC["invalid_wire"])
def test_hlc_invalid_wire_form(text: str) -> None:
    with pytest.raises(ValueError):
        Hlc.parse(text)


@pytest.mark.parametrize(("wall_ms", "logical"), HLC["invalid_pairs"])
def test_hlc_out_of_range(wall_ms: int, logical: int) -> None:
    with pytest.raises(ValueError):
        Hlc(wall_ms, logical)


def test_hlc_successor() -> None:
    for case in HLC["successor"]:
        assert Hlc.parse(case["hlc"]).successor().encode() == case["successor"]


@pytest.mark.parametrize("case", named(HLC["clocks"]))
def test_hlc_clock(case: Json) -> None:
    physical = [0]
    clock = HybridClock(lambda: physical[0], Hlc.parse(case["start"]))
    for step in case["steps"]:
        physical[0] = step["physical_ms"]
        remote = step.get("remote")
        result = clock.now() if remote is None else clock.receive(Hlc.parse(remote))
        assert result.encode() == step["result"]
        assert clock.last == result


def test_hlc_stamp() -> None:
    def parsed(text: str | None) -> Hlc | None:
        return Hlc.parse(text) if text is not None else None

    for case in HLC["stamp"]:
        effective = stamp(
            Hlc.parse(case["sent"]),
            now_ms=case["now_ms"],
            max_skew_ms=case["max_skew_ms"],
            previous=parsed(case["previous"]),
            floor=parsed(case["floor"]),
        )
        assert effective.encode() == case["effective"], case


# -- version vectors -------------------------------------------------------------------------

VECTOR: Final = load("version_vectors.json")


def test_version_vectors() -> None:
    for case in VECTOR["covers"]:
        assert covers(case["vector"], case["device_id"], case["seq"]) is case["result"]
    for case in VECTOR["advance"]:
        assert advance(case["vector"], case["device_id"], case["seq"]) == case["result"]
    for case in VECTOR["merge"]:
        assert merge_vectors(case["vectors"]) == case["result"]
    for case in VECTOR["compare"]:
        assert compare(case["left"], case["right"]).value == case["result"]


# -- merge -----------------------------------------------------------------------------------


def write_of(entry: Mapping[str, Json]) -> merge.Write:
    return merge.Write(entry["device_id"], entry["seq"], entry["hlc"], entry["op"], entry["fields"])


def replay(batches: Iterable[Iterable[Mapping[str, Json]]]) -> list[Json]:
    replica: dict[RecordKey, merge.RecordState] = {}
    for batch in batches:
        for entry in batch:
            key = (entry["table"], uuid.UUID(entry["id"]))
            replica[key] = merge.apply(replica.get(key), write_of(entry))
    return records_json(replica)


@pytest.mark.parametrize("case", named(load("merge.json")["cases"]))
def test_merge(case: Json) -> None:
    changes = case["changes"]
    assert replay([changes]) == case["records"]
    # Order, batching and repetition do not matter (§7.6).
    rng = random.Random(case["name"])
    for _ in range(5):
        shuffled = rng.sample(changes, len(changes))
        doubled = shuffled + rng.sample(changes, len(changes) // 2)
        assert replay([doubled]) == case["records"]
    assert replay([list(reversed(changes))]) == case["records"]
    assert replay(changes[i : i + 2] for i in range(0, len(changes), 2)) == case["records"]


# -- ingest ----------------------------------------------------------------------------------


def request_of(body: Json) -> PushRequest:
    return PushRequest(
        device_id=body["device_id"],
        seen=body["seen"],
        changes=[
            Change(
                seq=c["seq"],
                hlc=c["hlc"],
                table=c["table"],
                id=uuid.UUID(c["id"]),
                op=c["op"],
                fields=c["fields"],
            )
            for c in body["changes"]
        ],
    )


@pytest.mark.parametrize("case", named(load("ingest.json")["cases"]))
def test_ingest(case: Json) -> None:
    server = Server(max_skew_ms=case["max_skew_ms"])
    for push in case["pushes"]:
        assert server.push(request_of(push["request"]), push["now_ms"]) == push["result"]
    assert server.log == case["log"]
    assert records_json(server.records) == case["records"]
    # Every replica that merges the log holds the server's records, in any order (§7.6).
    assert replay([reversed(case["log"])]) == case["records"]


# -- field values and ids --------------------------------------------------------------------


def test_field_values() -> None:
    for case in load("values.json")["cases"]:
        spec = TABLES[case["table"]].fields[case["field"]]
        assert (check_value(spec, case["value"]) is None) is case["valid"], case


def test_uuid5_ids() -> None:
    for case in load("ids.json")["uuid5"]:
        assert str(uuid.uuid5(uuid.UUID(case["namespace"]), case["name"])) == case["uuid"]
