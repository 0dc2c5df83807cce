"""The sync endpoints over HTTP: shapes, status codes and problem+json errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server import tables
from sync_server.app import create_app
from sync_server.settings import Settings
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


@pytest.fixture
async def client(
    settings: Settings, clean_engine: AsyncEngine
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings, engine=clean_engine)) as test_client:
        yield test_client


@pytest.fixture
def club() -> dict[str, str]:
    return {"Touchline-Club": str(uuid.uuid4())}


def body(request: Any) -> bytes:
    return msgspec.json.encode(request)


async def log_size(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(tables.change_log)
        return int((await conn.execute(query)).scalar_one())


async def test_push_and_pull_round_trip(
    client: AsyncTestClient[Litestar], club: dict[str, str]
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    request = a.push(*new_match_changes(a, match, home, away), goal(a, match, home))
    pushed = await client.post("/api/sync/push", content=body(request), headers=club)
    assert pushed.status_code == 200, pushed.text
    ack = pushed.json()
    assert ack["acked_seq"] == 4 and ack["applied"] == 4 and ack["cursor"] == 4
    assert ack["conflicts"] == [] and isinstance(ack["server_time_ms"], int)

    pulled = await client.post(
        "/api/sync/pull", json={"device_id": "phone-b", "match_id": str(match)}, headers=club
    )
    assert pulled.status_code == 200
    page = pulled.json()
    assert [c["table"] for c in page["changes"]] == ["matches", "events"]
    assert page["cursor"] == 4 and page["has_more"] is False


async def test_retried_push_is_a_no_op(
    client: AsyncTestClient[Litestar], club: dict[str, str], clean_engine: AsyncEngine
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    request = body(a.push(*new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())))
    first = await client.post("/api/sync/push", content=request, headers=club)
    again = await client.post("/api/sync/push", content=request, headers=club)
    assert again.status_code == 200
    assert again.json()["applied"] == 0 and again.json()["duplicates"] == 3
    assert again.json()["cursor"] == first.json()["cursor"]
    assert await log_size(clean_engine) == 3


async def test_sequence_gap_names_the_expected_seq(
    client: AsyncTestClient[Litestar], club: dict[str, str]
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    made = new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    await client.post("/api/sync/push", content=body(a.push(made[0])), headers=club)
    gap = await client.post("/api/sync/push", content=body(a.push(made[2])), headers=club)
    assert gap.status_code == 409
    assert gap.headers["content-type"].startswith(PROBLEM)
    problem = gap.json()
    assert problem["status"] == 409 and problem["expected_seq"] == 2
    assert problem["type"].endswith("sequence-gap")
    assert "seq 2" in problem["detail"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["changes"][1].update(seq="two"), "$.changes[1].seq"),
        (lambda r: r["changes"][0].update(table="fixtures"), "$.changes[0].table"),
        (lambda r: r["changes"][0].update(id="not-a-uuid"), "$.changes[0].id"),
        (lambda r: r["changes"][0].update(hlc="yesterday"), "$.changes[0].hlc"),
        (lambda r: r["changes"][0].update(colour="red"), "$.changes[0]"),
        (lambda r: r.pop("device_id"), "device_id"),
        (
            lambda r: r["changes"][2]["fields"].update(kickoff_ts="soon"),
            "$.changes[2].fields.kickoff_ts",
        ),
        (lambda r: r["changes"][0]["fields"].update(name=None), "$.changes[0].fields.name"),
        (lambda r: r["changes"][1]["fields"].update(shoe_size=9), "shoe_size"),
        (lambda r: r["changes"][2].update(seq=9), "$.changes[2].seq"),
    ],
)
async def test_malformed_change_set_is_a_problem_naming_the_field(
    client: AsyncTestClient[Litestar],
    club: dict[str, str],
    clean_engine: AsyncEngine,
    mutate: Any,
    field: str,
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    request = msgspec.to_builtins(
        a.push(*new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
    )
    mutate(request)
    response = await client.post("/api/sync/push", json=request, headers=club)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert field in response.text
    assert await log_size(clean_engine) == 0  # nothing of that push applied


async def test_bad_json_and_missing_club_are_problems(
    client: AsyncTestClient[Litestar], club: dict[str, str]
) -> None:
    broken = await client.post(
        "/api/sync/push",
        content=b'{"device_id": "x", "changes": [',
        headers={**club, "content-type": "application/json"},
    )
    assert broken.status_code == 400 and broken.headers["content-type"].startswith(PROBLEM)

    no_club = await client.post("/api/sync/pull", json={"device_id": "x"})
    assert no_club.status_code == 400 and "Touchline-Club" in no_club.text

    bad_club = await client.post(
        "/api/sync/pull", json={"device_id": "x"}, headers={"Touchline-Club": "club-1"}
    )
    assert bad_club.status_code == 400 and bad_club.headers["content-type"].startswith(PROBLEM)


async def test_too_large_change_set_is_refused(
    client: AsyncTestClient[Litestar], club: dict[str, str], settings: Settings
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    match = uuid.uuid4()
    changes = [goal(a, match, uuid.uuid4()) for _ in range(settings.push_max_changes + 1)]
    response = await client.post("/api/sync/push", content=body(a.push(*changes)), headers=club)
    assert response.status_code == 413
    assert response.json()["max_changes"] == settings.push_max_changes


async def test_conflicts_listed_and_reinstated(
    client: AsyncTestClient[Litestar], club: dict[str, str]
) -> None:
    clock = FakeClock()
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(a, match, home, away)
    event = goal(a, match, home)
    await client.post(
        "/api/sync/push",
        content=body(a.push(*setup, event)),
        headers=club,
    )
    pulled = await client.post("/api/sync/pull", json={"device_id": "phone-b"}, headers=club)
    for c in pulled.json()["changes"]:
        b.saw(c["hlc"], c["device_id"], c["seq"])
    clock.now += 100
    edit_b = b.change("events", event.id, {"notes": "B"})
    edit_a = a.change("events", event.id, {"notes": "A"})
    await client.post("/api/sync/push", content=body(b.push(edit_b)), headers=club)
    ack = (await client.post("/api/sync/push", content=body(a.push(edit_a)), headers=club)).json()
    assert len(ack["conflicts"]) == 1

    listed = await client.get("/api/sync/conflicts", params={"match_id": str(match)}, headers=club)
    assert listed.status_code == 200
    (conflict,) = listed.json()["conflicts"]
    loser = conflict["loser"]["value"]
    done = await client.post(f"/api/sync/conflicts/{conflict['id']}/reinstate", headers=club)
    assert done.status_code == 200, done.text
    assert done.json()["change"]["fields"] == {"notes": loser}

    unknown = await client.post(f"/api/sync/conflicts/{uuid.uuid4()}/reinstate", headers=club)
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(PROBLEM)


async def test_openapi_lists_the_sync_endpoints(client: AsyncTestClient[Litestar]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    for path in ("/api/sync/push", "/api/sync/pull", "/api/sync/conflicts"):
        assert path in schema["paths"]


async def test_large_pull_pages_are_gzipped_for_clients_that_accept_it(
    client: AsyncTestClient[Litestar], club: dict[str, str]
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    changes = new_match_changes(a, match, home, away) + [goal(a, match, home) for _ in range(40)]
    await client.post("/api/sync/push", content=body(a.push(*changes)), headers=club)
    pulled = await client.post(
        "/api/sync/pull",
        json={"device_id": "phone-b"},
        headers={**club, "accept-encoding": "gzip"},
    )
    assert pulled.status_code == 200
    assert pulled.headers["content-encoding"] == "gzip"
    assert len(pulled.json()["changes"]) == 43  # httpx decodes it transparently
