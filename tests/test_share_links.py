"""Share links for family: minting, revoking, and the viewer-safe match view they open."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.viewer import mm_ss
from protocol.wire import Change
from sync_server import tables
from sync_server.auth import token_digest
from sync_server.problems import ProblemError
from sync_server.settings import Settings
from sync_server.share_links import ResolvedLinks, ShareLinks
from tests.auth_fixtures import Club, bearer, new_club
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio


class Fixture:
    def __init__(self, club: Club) -> None:
        self.club = club
        self.device = ScriptedDevice("phone-a", FakeClock())
        self.match, self.home, self.away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.player = uuid.uuid4()
        self.events: list[uuid.UUID] = []

    async def push(self, *changes: Change) -> None:
        response = await self.club.client.post(
            "/api/sync/push",
            content=msgspec.json.encode(self.device.push(*changes)),
            headers=bearer(self.club.owner),
        )
        assert response.status_code == 200, response.text


async def match_with_secrets(client: AsyncTestClient[Litestar]) -> Fixture:
    """A match whose records hold everything a viewer must never see."""
    f = Fixture(await new_club(client))
    d = f.device
    setup = new_match_changes(d, f.match, f.home, f.away)
    player = d.change(
        "players",
        f.player,
        {
            "full_name": "Jamie Alexander Smith",
            "squad_number": 7,
            "dob": "2015-03-04",
            "notes": "asthma inhaler in kit bag",
            "current_team": str(f.home),
        },
    )
    scored = goal(d, f.match, f.home, player_id=str(f.player), notes="top corner", sentiment=4)
    own_goal = d.change(
        "events",
        uuid.uuid4(),
        {
            "match_id": str(f.match),
            "kind": "own_goal",
            "team_id": str(f.away),
            "period_number": 2,
            "clock_ms": 125_000,
        },
    )
    start = d.change(
        "clock_actions",
        uuid.uuid4(),
        {"match_id": str(f.match), "action": "start", "at": "2026-11-21T10:00:00+00:00"},
    )
    await f.push(*setup, player, scored, own_goal, start)
    f.events = [scored.id, own_goal.id]
    return f


async def test_share_link_opens_a_viewer_safe_view(client: AsyncTestClient[Litestar]) -> None:
    f = await match_with_secrets(client)
    link = await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))
    assert link.status_code == 200, link.text
    share = link.json()
    assert set(share) == {"id", "token", "url", "expires_at"}
    assert share["url"].endswith(f"/watch/{share['token']}")
    assert len(share["token"]) >= 22  # at least 128 bits of base64url
    assert str(f.match) not in share["token"] and f.club.id not in share["token"]

    watched = await client.get(f"/api/watch/{share['token']}")
    assert watched.status_code == 200, watched.text
    view = watched.json()
    match = view["match"]
    assert match["id"] == str(f.match)
    assert match["home_team"] == "Riverside U10" and match["away_team"] == "Hillview U10"
    assert match["score"] == {"home": 2, "away": 0}  # a goal, and the away side's own goal
    assert match["status"] == "live" and match["current_period"] == 1
    # The clock has run since kickoff: MM:SS of the period's elapsed time, minutes unbounded.
    assert match["clock_running"] is True
    assert match["clock_time"] == mm_ss(match["period_elapsed_ms"])
    newest, oldest = view["recent_events"]
    assert newest["kind"] == "own_goal" and newest["team"] == "away"
    assert newest["timestamp"] == "02:05" and newest["period"] == 2
    assert oldest["player"] == "Jamie S." and oldest["team"] == "home"

    text = watched.text
    for secret in ("Smith", "2015-03-04", "asthma", "top corner", "sentiment", "@"):
        assert secret not in text, secret


async def test_squad_numbers_only_when_the_team_asks(client: AsyncTestClient[Litestar]) -> None:
    f = await match_with_secrets(client)
    await f.push(f.device.change("teams", f.home, {"viewer_names": "squad_number"}))
    share = (await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))).json()
    view = (await client.get(f"/api/watch/{share['token']}")).json()
    assert [e["player"] for e in view["recent_events"]] == [None, "#7"]
    assert "Jamie" not in str(view)


async def test_get_returns_the_active_link_and_post_mints_a_fresh_one(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    f = await match_with_secrets(client)
    url = f"/api/matches/{f.match}/share"
    first = (await client.get(url, headers=bearer(f.club.owner))).json()
    again = (await client.get(url, headers=bearer(f.club.owner))).json()
    assert again == first
    minted = await client.post(url, headers=bearer(f.club.owner))
    assert minted.status_code == 201 and minted.json()["token"] != first["token"]
    # The token is not in the database; only its hash is.
    async with clean_engine.connect() as conn:
        stored = (await conn.execute(select(tables.share_links))).all()
    assert len(stored) == 2
    assert all(first["token"] not in str(tuple(row)) for row in stored)
    # Kickoff was 2026-11-21T10:00Z: links last a few days after it.
    assert first["expires_at"] >= "2026-11-24T10:00:00"


async def test_revoked_links_and_unknown_tokens_are_refused(
    client: AsyncTestClient[Litestar],
) -> None:
    f = await match_with_secrets(client)
    share = (await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))).json()
    # Opened once before it is revoked: the server has resolved the token lately.
    assert (await client.get(f"/api/watch/{share['token']}")).status_code == 200
    revoked = await client.delete(
        f"/api/matches/{f.match}/share/{share['id']}", headers=bearer(f.club.owner)
    )
    assert revoked.status_code == 204
    gone = await client.get(f"/api/watch/{share['token']}")
    assert gone.status_code == 410 and gone.json()["type"] == "/problems/share-link-expired"
    unknown = await client.get(f"/api/watch/{'A' * 43}")
    assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/share-link-unknown"
    # A fresh GET after revoking mints a new link rather than showing the dead one.
    fresh = (await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))).json()
    assert fresh["id"] != share["id"]
    assert (await client.get(f"/api/watch/{fresh['token']}")).status_code == 200


async def test_a_share_token_cannot_write_or_read_anything_else(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    f = await match_with_secrets(client)
    share = (await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))).json()
    as_bearer = {"Authorization": f"Bearer {share['token']}"}
    device = ScriptedDevice("phone-a", FakeClock())
    push = device.push(goal(device, f.match, f.home))
    attempts: list[Any] = [
        await client.post("/api/sync/push", content=msgspec.json.encode(push), headers=as_bearer),
        await client.post("/api/sync/pull", json={"device_id": "phone-a"}, headers=as_bearer),
        await client.get("/api/auth/me", headers=as_bearer),
        await client.get(f"/api/matches/{f.match}/share", headers=as_bearer),
        await client.post(f"/api/matches/{f.match}/share", headers=as_bearer),
    ]
    assert [a.status_code for a in attempts] == [401] * len(attempts)
    # A token opens its own match only: the path carries no match id to swap.
    other = await match_with_secrets(client)
    other_share = (
        await client.get(f"/api/matches/{other.match}/share", headers=bearer(other.club.owner))
    ).json()
    mine = (await client.get(f"/api/watch/{share['token']}")).json()
    theirs = (await client.get(f"/api/watch/{other_share['token']}")).json()
    assert mine["match"]["id"] == str(f.match) and theirs["match"]["id"] == str(other.match)
    async with clean_engine.connect() as conn:
        logged = (await conn.execute(select(tables.change_log.c.device_id))).scalars().all()
    assert "phone-a" in logged and len(logged) == 2 * 8  # two clubs' signup + setup, no more


async def test_viewers_and_other_clubs_cannot_manage_links(
    client: AsyncTestClient[Litestar],
) -> None:
    f = await match_with_secrets(client)
    viewer = await f.club.member("viewer", "parent-phone")
    url = f"/api/matches/{f.match}/share"
    assert (await client.get(url, headers=bearer(viewer))).status_code == 403
    assert (await client.post(url, headers=bearer(viewer))).status_code == 403
    missing = await client.get(f"/api/matches/{uuid.uuid4()}/share", headers=bearer(f.club.owner))
    assert missing.status_code == 404


async def test_a_token_resolved_lately_is_not_read_again_until_its_time_is_up(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine, settings: Settings
) -> None:
    """A match's viewers open together; the link is read once for them. Its expiry still
    counts at every use."""
    f = await match_with_secrets(client)
    share = (await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))).json()
    clock = FakeMonotonic()
    links = ShareLinks(clean_engine, settings, ResolvedLinks(ttl_s=5.0, clock=clock))
    now = datetime.now(UTC)
    shared = await links.resolve(share["token"], now)
    assert shared.match_id == f.match
    async with clean_engine.begin() as conn:
        await conn.execute(tables.share_links.delete())
    assert await links.resolve(share["token"], now) == shared  # not read again
    with pytest.raises(ProblemError) as ended:
        await links.resolve(share["token"], shared.expires_at)
    assert ended.value.status == 410
    clock.now += 5.0
    with pytest.raises(ProblemError) as unknown:
        await links.resolve(share["token"], now)
    assert unknown.value.status == 404


async def test_a_token_read_while_a_link_was_revoked_is_not_kept(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine, settings: Settings
) -> None:
    f = await match_with_secrets(client)
    share = (await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))).json()
    resolved = ResolvedLinks()
    links = ShareLinks(clean_engine, settings, resolved)
    shared = await links.resolve(share["token"], datetime.now(UTC))
    digest = token_digest(share["token"])
    read_in = resolved.generation
    resolved.forget()
    assert resolved.get(digest) is None
    resolved.keep(digest, shared, read_in)
    assert resolved.get(digest) is None


@dataclass
class FakeMonotonic:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now
