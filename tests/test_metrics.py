"""/metrics counts sync traffic, conflicts, the change log and the database pool."""

from __future__ import annotations

import re
import uuid

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

from sync_server.db import create_engine
from sync_server.metrics import SyncMetrics
from sync_server.settings import Settings
from tests.auth_fixtures import new_club
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio


async def scrape(client: AsyncTestClient[Litestar]) -> dict[str, float]:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    values: dict[str, float] = {}
    for line in answer.text.splitlines():
        found = re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)", line)
        if found:
            values[found.group(1)] = float(found.group(2))
    return values


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_pushes_pulls_conflicts_and_the_log_are_counted(
    client: AsyncTestClient[Litestar],
) -> None:
    club = await new_club(client)
    anna = ScriptedDevice("phone-a", FakeClock())
    ben = ScriptedDevice("phone-b", FakeClock())
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    headers_a, headers_b = await club.headers("phone-a"), await club.headers("phone-b")
    before = await scrape(client)

    async def push(device: ScriptedDevice, headers: dict[str, str], body: object) -> int:
        answer = await client.post(
            "/api/sync/push", content=msgspec.json.encode(body), headers=headers
        )
        return answer.status_code

    first = anna.push(*new_match_changes(anna, match, home, away), goal(anna, match, home))
    assert await push(anna, headers_a, first) == 200
    assert await push(anna, headers_a, first) == 200  # a retry: all duplicates
    gap = anna.push(anna.change("teams", home, {"name": "x"}))
    gap = msgspec.structs.replace(gap, changes=[msgspec.structs.replace(gap.changes[0], seq=99)])
    assert await push(anna, headers_a, gap) == 409  # refused
    # Two devices write one field without seeing each other: one conflict.
    anna.seq -= 1
    assert (
        await push(anna, headers_a, anna.push(anna.change("teams", home, {"name": "Riverside"})))
        == 200
    )
    assert (
        await push(ben, headers_b, ben.push(ben.change("teams", home, {"name": "Rovers"}))) == 200
    )
    pulled = await client.post(
        "/api/sync/pull", json={"device_id": "phone-b", "cursor": 0}, headers=headers_b
    )
    assert pulled.status_code == 200

    after = await scrape(client)
    assert (
        delta(after, before, 'touchline_sync_pushes_total{outcome="applied",transport="http"}') == 3
    )
    assert (
        delta(after, before, 'touchline_sync_pushes_total{outcome="duplicate",transport="http"}')
        == 1
    )
    assert (
        delta(after, before, 'touchline_sync_pushes_total{outcome="refused",transport="http"}') == 1
    )
    assert delta(after, before, "touchline_sync_pulls_total") == 1
    assert delta(after, before, "touchline_sync_changes_pulled_total") == len(
        pulled.json()["changes"]
    )
    assert delta(after, before, "touchline_changes_committed_total") == 6
    assert delta(after, before, "touchline_conflicts_total") == 1
    # Every club's log together: at least what this test wrote.
    assert after["touchline_change_log_entries"] >= 6
    # Relay drops are counted by kind of connection (none happened here).
    assert "touchline_relay_queue_drops" in (await client.get("/metrics")).text


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_push_writes_are_counted_by_path(client: AsyncTestClient[Litestar]) -> None:
    """The PostgreSQL store's first push to a club reads under the lock; the next, from the
    same instance, is written from what it knows."""
    club = await new_club(client)
    anna = ScriptedDevice("phone-a", FakeClock())
    match, home, away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    headers = await club.headers("phone-a")
    before = await scrape(client)
    for body in (
        anna.push(*new_match_changes(anna, match, home, away)),
        anna.push(goal(anna, match, home)),
    ):
        answer = await client.post(
            "/api/sync/push", content=msgspec.json.encode(body), headers=headers
        )
        assert answer.status_code == 200
    after = await scrape(client)
    written = {
        path: delta(after, before, f'touchline_sync_push_writes_total{{path="{path}"}}')
        for path in ("head", "locked", "stale")
    }
    assert written == {"head": 1, "locked": 1, "stale": 0}


async def test_the_pool_gauges_read_the_engines_pool(settings: Settings) -> None:
    engine = create_engine(settings)  # pooled, as `sync-server serve` runs
    registry = CollectorRegistry()
    metrics = SyncMetrics(registry)
    try:
        async with engine.connect():
            await metrics.sample(engine)
    finally:
        await engine.dispose()
    # Read while this test held a connection: at least that one is in use.
    assert (
        registry.get_sample_value("touchline_db_pool_connections", {"state": "in_use"}) or 0
    ) >= 1
    assert (registry.get_sample_value("touchline_db_pool_connections", {"state": "size"}) or 0) >= 1
