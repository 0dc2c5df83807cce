"""The sync endpoints over HTTP: shapes, status codes and problem+json errors.

Each test signs up one club; each device pushes and pulls with its own login's token. The
signup records the club's team, so a fresh club's log starts at server sequence 1.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server import tables
from sync_server.settings import Settings
from tests.auth_fixtures import Club, new_club
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


@pytest.fixture
async def club(client: AsyncTestClient[Litestar]) -> Club:
    return await new_club(client, device_id="phone-a")


SIGNUP_CHANGES = 1
"""The club's team, which the signup wrote to the log."""


def body(request: Any) -> bytes:
    return msgspec.json.encode(request)


async def log_size(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(tables.change_log)
        return int((await conn.execute(query)).scalar_one())


async def test_push_and_pull_round_trip(client: AsyncTestClient[Litestar], club: Club) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    request = a.push(*new_match_changes(a, match, home, away), goal(a, match, home))
    pushed = await client.post(
        "/api/sync/push", content=body(request), headers=await club.headers("phone-a")
    )
    assert pushed.status_code == 200, pushed.text
    ack = pushed.json()
    assert ack["acked_seq"] == 4 and ack["applied"] == 4
    assert ack["cursor"] == SIGNUP_CHANGES + 4
    assert ack["conflicts"] == [] and isinstance(ack["server_time_ms"], int)

    pulled = await client.post(
        "/api/sync/pull",
        json={"device_id": "phone-b", "match_id": str(match)},
        headers=await club.headers("phone-b"),
    )
    assert pulled.status_code == 200
    page = pulled.json()
    assert [c["table"] for c in page["changes"]] == ["matches", "events"]
    assert page["cursor"] == SIGNUP_CHANGES + 4 and page["has_more"] is False


async def test_retried_push_is_a_no_op(
    client: AsyncTestClient[Litestar], club: Club, clean_engine: AsyncEngine
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    headers = await club.headers("phone-a")
    request = body(a.push(*new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())))
    first = await client.post("/api/sync/push", content=request, headers=headers)
    again = await client.post("/api/sync/push", content=request, headers=headers)
    assert again.status_code == 200
    assert again.json()["applied"] == 0 and again.json()["duplicates"] == 3
    assert again.json()["cursor"] == first.json()["cursor"]
    assert await log_size(clean_engine) == SIGNUP_CHANGES + 3


async def test_sequence_gap_names_the_expected_seq(
    client: AsyncTestClient[Litestar], club: Club
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    headers = await club.headers("phone-a")
    made = new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    await client.post("/api/sync/push", content=body(a.push(made[0])), headers=headers)
    gap = await client.post("/api/sync/push", content=body(a.push(made[2])), headers=headers)
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
    club: Club,
    clean_engine: AsyncEngine,
    mutate: Any,
    field: str,
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    request = msgspec.to_builtins(
        a.push(*new_match_changes(a, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
    )
    mutate(request)
    response = await client.post(
        "/api/sync/push", json=request, headers=await club.headers("phone-a")
    )
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert field in response.text
    assert await log_size(clean_engine) == SIGNUP_CHANGES  # nothing of that push applied


async def test_bad_json_and_missing_token_are_problems(
    client: AsyncTestClient[Litestar], club: Club
) -> None:
    broken = await client.post(
        "/api/sync/push",
        content=b'{"device_id": "phone-a", "changes": [',
        headers={**await club.headers("phone-a"), "content-type": "application/json"},
    )
    assert broken.status_code == 400 and broken.headers["content-type"].startswith(PROBLEM)

    no_token = await client.post("/api/sync/pull", json={"device_id": "phone-a"})
    assert no_token.status_code == 401 and no_token.headers["content-type"].startswith(PROBLEM)
    assert "Authorization: Bearer" in no_token.text and "WWW-Authenticate" in no_token.headers

    bad_token = await client.post(
        "/api/sync/pull", json={"device_id": "phone-a"}, headers={"Authorization": "Bearer club-1"}
    )
    assert bad_token.status_code == 401 and bad_token.headers["content-type"].startswith(PROBLEM)

    # The old club header names no club any more: without a token it is refused all the same.
    old_header = await client.post(
        "/api/sync/pull", json={"device_id": "phone-a"}, headers={"Touchline-Club": club.id}
    )
    assert old_header.status_code == 401


async def test_too_large_change_set_is_refused(
    client: AsyncTestClient[Litestar], club: Club, settings: Settings
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    match = uuid.uuid4()
    changes = [goal(a, match, uuid.uuid4()) for _ in range(settings.push_max_changes + 1)]
    response = await client.post(
        "/api/sync/push", content=body(a.push(*changes)), headers=await club.headers("phone-a")
    )
    assert response.status_code == 413
    assert response.json()["max_changes"] == settings.push_max_changes


async def test_conflicts_listed_and_reinstated(
    client: AsyncTestClient[Litestar], club: Club
) -> None:
    clock = FakeClock()
    a, b = ScriptedDevice("phone-a", clock), ScriptedDevice("phone-b", clock)
    as_a, as_b = await club.headers("phone-a"), await club.headers("phone-b")
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    setup = new_match_changes(a, match, home, away)
    event = goal(a, match, home)
    await client.post(
        "/api/sync/push",
        content=body(a.push(*setup, event)),
        headers=as_a,
    )
    pulled = await client.post("/api/sync/pull", json={"device_id": "phone-b"}, headers=as_b)
    for c in pulled.json()["changes"]:
        b.saw(c["hlc"], c["device_id"], c["seq"])
    clock.now += 100
    edit_b = b.change("events", event.id, {"notes": "B"})
    edit_a = a.change("events", event.id, {"notes": "A"})
    await client.post("/api/sync/push", content=body(b.push(edit_b)), headers=as_b)
    ack = (await client.post("/api/sync/push", content=body(a.push(edit_a)), headers=as_a)).json()
    assert len(ack["conflicts"]) == 1

    listed = await client.get("/api/sync/conflicts", params={"match_id": str(match)}, headers=as_a)
    assert listed.status_code == 200
    (conflict,) = listed.json()["conflicts"]
    loser = conflict["loser"]["value"]
    done = await client.post(f"/api/sync/conflicts/{conflict['id']}/reinstate", headers=as_b)
    assert done.status_code == 200, done.text
    assert done.json()["change"]["fields"] == {"notes": loser}

    unknown = await client.post(f"/api/sync/conflicts/{uuid.uuid4()}/reinstate", headers=as_b)
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(PROBLEM)


async def test_openapi_lists_the_sync_endpoints(client: AsyncTestClient[Litestar]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    for path in ("/api/sync/push", "/api/sync/pull", "/api/sync/conflicts"):
        assert path in schema["paths"]


async def test_large_pull_pages_are_gzipped_for_clients_that_accept_it(
    client: AsyncTestClient[Litestar], club: Club
) -> None:
    a = ScriptedDevice("phone-a", FakeClock())
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    changes = new_match_changes(a, match, home, away) + [goal(a, match, home) for _ in range(40)]
    await client.post(
        "/api/sync/push", content=body(a.push(*changes)), headers=await club.headers("phone-a")
    )
    pulled = await client.post(
        "/api/sync/pull",
        json={"device_id": "phone-b"},
        headers={**await club.headers("phone-b"), "accept-encoding": "gzip"},
    )
    assert pulled.status_code == 200
    assert pulled.headers["content-encoding"] == "gzip"
    # httpx decodes it transparently.
    assert len(pulled.json()["changes"]) == SIGNUP_CHANGES + 43
