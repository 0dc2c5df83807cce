"""REST matches, the match clock and the lineup: thin views over the merged records.

Events are created through sync pushes (a ScriptedDevice), the way a phone logs them; REST
writes are the caller's REST device's changes, so they show up in pulls and derive the same.
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

from protocol import derive
from protocol.replica import Replica
from protocol.wire import Change, LoggedChange
from sync_server import tables
from tests.auth_fixtures import Club, bearer, new_club
from tests.sync_fixtures import FakeClock, ScriptedDevice

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
KICKOFF = "2026-11-21T10:00:00Z"
MOBILE_MATCH_KEYS = {
    "id", "home_team", "away_team", "score", "status", "current_period", "clock_time",
}  # fmt: skip
MOBILE_EVENT_KEYS = {"id", "kind", "player", "team", "timestamp", "period"}


class Pitch:
    """A club with two teams and a squad pushed by the owner's phone, and REST helpers."""

    def __init__(self, club: Club) -> None:
        self.club = club
        self.client = club.client
        self.device = ScriptedDevice("phone-a", FakeClock())
        self.home, self.away = uuid.uuid4(), uuid.uuid4()
        self.jamie, self.sam, self.alex, self.kit = (uuid.uuid4() for _ in range(4))

    @property
    def owner(self) -> dict[str, str]:
        return bearer(self.club.owner)

    async def push(self, *changes: Change, device: ScriptedDevice | None = None) -> None:
        device = device or self.device
        headers = await self.club.headers(device.device_id)
        response = await self.client.post(
            "/api/sync/push", content=msgspec.json.encode(device.push(*changes)), headers=headers
        )
        assert response.status_code == 200, response.text

    async def setup(self) -> None:
        d = self.device
        squad = {
            self.jamie: ("Jamie Alexander Smith", 7),
            self.sam: ("Sam Okafor", 9),
            self.alex: ("Alex Brown", 1),
            self.kit: ("Kit Lee", 12),
        }
        await self.push(
            d.change("teams", self.home, {"name": "Riverside U10"}),
            d.change("teams", self.away, {"name": "Hillview U10", "is_opponent": True}),
            *(
                d.change(
                    "players",
                    player,
                    {
                        "full_name": name,
                        "squad_number": number,
                        "dob": "2015-03-04",
                        "current_team": str(self.home),
                    },
                )
                for player, (name, number) in squad.items()
            ),
        )

    async def create_match(self, **extra: Any) -> dict[str, Any]:
        body = {
            "home_team_id": str(self.home),
            "away_team_id": str(self.away),
            "kickoff_ts": KICKOFF,
            "period_format": "half",
            "duration_mins": 50,
            **extra,
        }
        response = await self.client.post("/api/matches", json=body, headers=self.owner)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def event(self, match: str, kind: str, **fields: Any) -> Change:
        values = {"match_id": match, "kind": kind, "period_number": 1, "clock_ms": 0, **fields}
        return self.device.change("events", uuid.uuid4(), values)

    async def clock(self, match: str, action: str, at: str | None = None) -> dict[str, Any]:
        body = {"action": action} if at is None else {"action": action, "at": at}
        response = await self.client.post(
            f"/api/matches/{match}/clock", json=body, headers=self.owner
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def view(self, match: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self.client.get(f"/api/matches/{match}", headers=headers or self.owner)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
async def pitch(client: AsyncTestClient[Litestar]) -> Pitch:
    ready = Pitch(await new_club(client))
    await ready.setup()
    return ready


async def log_size(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(tables.change_log))).scalar_one()
        )


def assert_problem(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == f"/problems/{code}", body
    if field is not None:
        assert field in [error["field"] for error in body["errors"]], body


# -- matches -----------------------------------------------------------------------------------


async def test_create_read_update_archive_and_restore_a_match(pitch: Pitch) -> None:
    client = pitch.client
    season = uuid.uuid4()
    await pitch.push(pitch.device.change("seasons", season, {"label": "2026/27"}))
    created = await pitch.create_match(
        competition="County Cup", venue="Riverside Park", season_id=str(season), notes="bring cones"
    )
    match = created["id"]
    assert created == {
        "id": match,
        "home_team_id": str(pitch.home),
        "away_team_id": str(pitch.away),
        "home_team": "Riverside U10",
        "away_team": "Hillview U10",
        "kickoff_ts": KICKOFF,
        "period_format": "half",
        "duration_mins": 50,
        "competition": "County Cup",
        "venue": "Riverside Park",
        "season_id": str(season),
        "notes": "bring cones",
        "deleted": False,
    }
    listed = (await client.get("/api/matches", headers=pitch.owner)).json()
    assert listed == {"items": [created], "next_cursor": None}

    # PUT changes only what it carries; null clears an optional field.
    updated = await client.put(
        f"/api/matches/{match}",
        json={"venue": "Hillview Rec", "competition": None, "duration_mins": 60},
        headers=pitch.owner,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json() == {
        **created,
        "venue": "Hillview Rec",
        "competition": None,
        "duration_mins": 60,
    }
    unchanged = await client.put(f"/api/matches/{match}", json={}, headers=pitch.owner)
    assert unchanged.json() == updated.json()

    detail = (await pitch.view(match))["match"]
    assert detail["venue"] == "Hillview Rec" and detail["notes"] == "bring cones"
    assert detail["season_id"] == str(season) and detail["duration_mins"] == 60
    assert detail["kickoff_ts"] == KICKOFF and detail["period_format"] == "half"
    assert detail["deleted"] is False

    deleted = await client.delete(f"/api/matches/{match}", headers=pitch.owner)
    assert deleted.status_code == 204
    again = await client.delete(f"/api/matches/{match}", headers=pitch.owner)
    assert again.status_code == 204  # idempotent
    assert (await client.get("/api/matches", headers=pitch.owner)).json()["items"] == []
    archived = (
        await client.get("/api/matches", params={"include_deleted": "true"}, headers=pitch.owner)
    ).json()["items"]
    assert [(m["id"], m["deleted"]) for m in archived] == [(match, True)]
    assert (await pitch.view(match))["match"]["deleted"] is True
    # The clock and the lineup of an archived match cannot be written.
    clock = await client.post(
        f"/api/matches/{match}/clock", json={"action": "start"}, headers=pitch.owner
    )
    assert_problem(clock, 404, "not-found")

    restored = await client.post(f"/api/matches/{match}/restore", headers=pitch.owner)
    assert restored.status_code == 200 and restored.json()["deleted"] is False
    assert [m["id"] for m in (await client.get("/api/matches", headers=pitch.owner)).json()[
        "items"
    ]] == [match]  # fmt: skip


async def test_a_client_chosen_id_and_club_defaults(pitch: Pitch) -> None:
    chosen = str(uuid.uuid4())
    first = await pitch.create_match(id=chosen)
    again = await pitch.create_match(id=chosen)  # an offline-created match sent twice
    assert first["id"] == again["id"] == chosen
    listed = (await pitch.client.get("/api/matches", headers=pitch.owner)).json()["items"]
    assert [m["id"] for m in listed] == [chosen]

    # Without period_format and duration_mins the club's settings (then the app's) apply.
    body = {"home_team_id": str(pitch.home), "away_team_id": str(pitch.away), "kickoff_ts": KICKOFF}
    plain = await pitch.client.post("/api/matches", json=body, headers=pitch.owner)
    assert plain.status_code == 201, plain.text
    assert (plain.json()["period_format"], plain.json()["duration_mins"]) == ("half", 50)
    club_id = uuid.UUID(pitch.club.id)
    await pitch.push(
        pitch.device.change(
            "club_settings",
            club_id,
            {"default_period_format": "quarter", "default_duration_mins": 60},
        )
    )
    quarters = await pitch.client.post("/api/matches", json=body, headers=pitch.owner)
    assert (quarters.json()["period_format"], quarters.json()["duration_mins"]) == ("quarter", 60)


async def test_the_mobile_format_with_goals_own_goals_and_corrections(pitch: Pitch) -> None:
    match = (await pitch.create_match(notes="tactics: press high"))["id"]
    home, away = str(pitch.home), str(pitch.away)
    goal = pitch.event(match, "goal", team_id=home, player_id=str(pitch.jamie), clock_ms=60_000)
    own_goal = pitch.event(
        match, "own_goal", team_id=away, period_number=2, clock_ms=125_000, notes="deflection"
    )
    theirs = pitch.event(match, "goal", team_id=away, clock_ms=600_000)
    save = pitch.event(match, "save", team_id=home, player_id=str(pitch.alex), clock_ms=30_000)
    await pitch.push(goal, own_goal, theirs, save)

    view = await pitch.view(match)
    assert set(view) >= {"match", "recent_events"}
    m = view["match"]
    assert set(m) >= MOBILE_MATCH_KEYS
    assert m["id"] == match and m["home_team"] == "Riverside U10"
    assert m["away_team"] == "Hillview U10"
    assert m["score"] == {"home": 2, "away": 1}  # a goal and the away side's own goal
    assert (m["status"], m["current_period"], m["clock_time"]) == ("scheduled", 0, "00:00")
    assert m["notes"] == "tactics: press high"
    events = view["recent_events"]
    assert all(set(e) == MOBILE_EVENT_KEYS for e in events)
    # Newest first: by period, then clock; team as home/away; timestamp MM:SS of the clock.
    assert [(e["kind"], e["team"], e["timestamp"], e["period"]) for e in events] == [
        ("own_goal", "away", "02:05", 2),
        ("goal", "away", "10:00", 1),
        ("goal", "home", "01:00", 1),
        ("save", "home", "00:30", 1),
    ]
    assert events[0]["id"] == str(own_goal.id)
    # Coaches see full names.
    assert events[2]["player"] == "Jamie Alexander Smith"
    score = await pitch.client.get(f"/api/matches/{match}/score", headers=pitch.owner)
    assert score.status_code == 200 and score.json() == {"home": 2, "away": 1}

    # Archive the away goal, correct the scorer of the home goal, then restore the away goal.
    d = pitch.device
    await pitch.push(
        d.change("events", theirs.id, op="delete"),
        d.change("events", goal.id, {"player_id": str(pitch.sam)}),
    )
    view = await pitch.view(match)
    assert view["match"]["score"] == {"home": 2, "away": 0}
    assert [e["kind"] for e in view["recent_events"]] == ["own_goal", "goal", "save"]
    assert view["recent_events"][1]["player"] == "Sam Okafor"
    assert (await pitch.client.get(f"/api/matches/{match}/score", headers=pitch.owner)).json() == {
        "home": 2,
        "away": 0,
    }
    await pitch.push(d.change("events", theirs.id, op="restore"))
    assert (await pitch.view(match))["match"]["score"] == {"home": 2, "away": 1}


async def test_viewers_read_the_viewer_safe_form_and_write_nothing(
    pitch: Pitch, clean_engine: AsyncEngine
) -> None:
    match = (await pitch.create_match(notes="tactics: press high"))["id"]
    goal = pitch.event(match, "goal", team_id=str(pitch.home), player_id=str(pitch.jamie))
    await pitch.push(goal)
    viewer = bearer(await pitch.club.member("viewer", "parent-phone"))
    client = pitch.client

    view = await pitch.view(match, headers=viewer)
    assert view["recent_events"][0]["player"] == "Jamie S."
    assert "notes" not in view["match"]
    for secret in ("Smith", "tactics", "2015-03-04"):
        assert secret not in str(view)
    listed = (await client.get("/api/matches", headers=viewer)).json()["items"]
    assert [m["id"] for m in listed] == [match] and "notes" not in listed[0]
    score = await client.get(f"/api/matches/{match}/score", headers=viewer)
    assert score.json() == {"home": 1, "away": 0}

    before = await log_size(clean_engine)
    body = {"home_team_id": str(pitch.home), "away_team_id": str(pitch.away), "kickoff_ts": KICKOFF}
    refused = [
        await client.post("/api/matches", json=body, headers=viewer),
        await client.put(f"/api/matches/{match}", json={"venue": "x"}, headers=viewer),
        await client.delete(f"/api/matches/{match}", headers=viewer),
        await client.post(f"/api/matches/{match}/restore", headers=viewer),
        await client.post(f"/api/matches/{match}/clock", json={"action": "start"}, headers=viewer),
        await client.put(f"/api/matches/{match}/lineup", json={"players": []}, headers=viewer),
        await client.get(f"/api/matches/{match}/lineup", headers=viewer),  # names players
    ]
    for response in refused:
        assert_problem(response, 403, "forbidden")
    assert await log_size(clean_engine) == before


async def test_unknown_ids_and_other_clubs_answer_404(pitch: Pitch) -> None:
    match = (await pitch.create_match())["id"]
    other = await new_club(pitch.client, device_id="phone-z")
    client = pitch.client
    for headers, target in ((pitch.owner, str(uuid.uuid4())), (bearer(other.owner), match)):
        answers = [
            await client.get(f"/api/matches/{target}", headers=headers),
            await client.put(f"/api/matches/{target}", json={"venue": "x"}, headers=headers),
            await client.delete(f"/api/matches/{target}", headers=headers),
            await client.post(f"/api/matches/{target}/restore", headers=headers),
            await client.get(f"/api/matches/{target}/score", headers=headers),
            await client.post(
                f"/api/matches/{target}/clock", json={"action": "start"}, headers=headers
            ),
            await client.get(f"/api/matches/{target}/lineup", headers=headers),
            await client.put(
                f"/api/matches/{target}/lineup", json={"players": []}, headers=headers
            ),
        ]
        for response in answers:
            assert_problem(response, 404, "not-found")
    # The other club's list does not show it either.
    assert (await client.get("/api/matches", headers=bearer(other.owner))).json()["items"] == []
    # Nor can a match be made of another club's teams.
    foreign = await client.post(
        "/api/matches",
        json={
            "home_team_id": str(pitch.home),
            "away_team_id": str(pitch.away),
            "kickoff_ts": KICKOFF,
        },
        headers=bearer(other.owner),
    )
    assert_problem(foreign, 422, "validation-failed", "$.home_team_id")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"home_team_id": None}, "$.home_team_id"),
        ({"kickoff_ts": "2026-11-21 10:00"}, "$.kickoff_ts"),
        ({"kickoff_ts": "2026-13-45T10:00:00Z"}, "$.kickoff_ts"),
        ({"period_format": "thirds"}, "$.period_format"),
        ({"duration_mins": 0}, "$.duration_mins"),
        ({"duration_mins": 601}, "$.duration_mins"),
        ({"venue": "x" * 10_001}, "$.venue"),
        ({"colour": "red"}, "$.colour"),
        ({"away_team_id": "HOME"}, "$.away_team_id"),
        ({"away_team_id": str(uuid.UUID(int=7))}, "$.away_team_id"),
        ({"season_id": str(uuid.UUID(int=8))}, "$.season_id"),
    ],
)
async def test_invalid_matches_are_refused_naming_the_field(
    pitch: Pitch, clean_engine: AsyncEngine, change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {
        "home_team_id": str(pitch.home),
        "away_team_id": str(pitch.away),
        "kickoff_ts": KICKOFF,
        **change,
    }
    if body.get("away_team_id") == "HOME":
        body["away_team_id"] = str(pitch.home)
    before = await log_size(clean_engine)
    response = await pitch.client.post("/api/matches", json=body, headers=pitch.owner)
    assert_problem(response, 422, "validation-failed", field)
    assert await log_size(clean_engine) == before  # nothing partial is ever written


async def test_invalid_updates_are_refused_naming_the_field(
    pitch: Pitch, clean_engine: AsyncEngine
) -> None:
    match = (await pitch.create_match())["id"]
    before = await log_size(clean_engine)
    for body, field in (
        ({"away_team_id": str(pitch.home)}, "$.away_team_id"),
        ({"home_team_id": str(pitch.away)}, "$.home_team_id"),
        ({"home_team_id": None}, "$.home_team_id"),
        ({"duration_mins": 0}, "$.duration_mins"),
        ({"our_score": 3}, "$.our_score"),
        ({"season_id": str(uuid.uuid4())}, "$.season_id"),
    ):
        response = await pitch.client.put(f"/api/matches/{match}", json=body, headers=pitch.owner)
        assert_problem(response, 422, "validation-failed", field)
    assert await log_size(clean_engine) == before
    swapped = await pitch.client.put(
        f"/api/matches/{match}",
        json={"home_team_id": str(pitch.away), "away_team_id": str(pitch.home)},
        headers=pitch.owner,
    )
    assert swapped.status_code == 200 and swapped.json()["home_team"] == "Hillview U10"


async def test_pages_follow_each_other_without_gaps(pitch: Pitch) -> None:
    season = uuid.uuid4()
    await pitch.push(pitch.device.change("seasons", season, {"label": "2026/27"}))
    made = {(await pitch.create_match())["id"] for _ in range(5)}
    in_season = {(await pitch.create_match(season_id=str(season)))["id"] for _ in range(2)}
    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await pitch.client.get("/api/matches", params=params, headers=pitch.owner)).json()
        sizes.append(len(page["items"]))
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    assert len(seen) == len(set(seen)) and set(seen) == made | in_season
    assert seen == sorted(seen, key=uuid.UUID)  # a stable order
    filtered = await pitch.client.get(
        "/api/matches", params={"season_id": str(season)}, headers=pitch.owner
    )
    assert {m["id"] for m in filtered.json()["items"]} == in_season
    for params in ({"limit": 0}, {"limit": 1001}, {"cursor": "!!"}):
        bad = await pitch.client.get("/api/matches", params=params, headers=pitch.owner)
        assert bad.status_code == 400 and bad.headers["content-type"].startswith(PROBLEM)


async def test_etags_answer_304_and_large_answers_are_compressed(pitch: Pitch) -> None:
    match = (await pitch.create_match())["id"]
    client = pitch.client
    for path in (f"/api/matches/{match}", f"/api/matches/{match}/score", "/api/matches"):
        first = await client.get(path, headers=pitch.owner)
        tag = first.headers["etag"]
        again = await client.get(path, headers={**pitch.owner, "If-None-Match": tag})
        assert again.status_code == 304 and again.content == b"", path
        assert again.headers["etag"] == tag
    # A change makes a new tag.
    first = await client.get(f"/api/matches/{match}", headers=pitch.owner)
    await client.put(f"/api/matches/{match}", json={"venue": "Park"}, headers=pitch.owner)
    changed = await client.get(
        f"/api/matches/{match}", headers={**pitch.owner, "If-None-Match": first.headers["etag"]}
    )
    assert changed.status_code == 200 and changed.json()["match"]["venue"] == "Park"

    for _ in range(12):
        await pitch.create_match(competition="County Cup", venue="Riverside Park")
    for encoding in ("br", "gzip"):
        large = await client.get(
            "/api/matches", headers={**pitch.owner, "Accept-Encoding": encoding}
        )
        assert large.status_code == 200
        assert large.headers["content-encoding"] == encoding
        assert len(large.json()["items"]) == 13  # decoded by the client


async def test_a_rest_edit_appears_in_a_sync_pull(pitch: Pitch) -> None:
    match = (await pitch.create_match())["id"]
    await pitch.client.put(f"/api/matches/{match}", json={"venue": "Park"}, headers=pitch.owner)
    pulled = await pitch.client.post(
        "/api/sync/pull",
        json={"device_id": "phone-a", "match_id": match},
        headers=await pitch.club.headers("phone-a"),
    )
    assert pulled.status_code == 200, pulled.text
    changes = pulled.json()["changes"]
    assert [(c["device_id"], c["table"], c["id"]) for c in changes] == [
        ("phone-a:rest", "matches", match),
        ("phone-a:rest", "matches", match),
    ]
    assert changes[-1]["fields"] == {"venue": "Park"}


# -- the clock ---------------------------------------------------------------------------------


async def test_clock_presses_drive_status_period_and_time(pitch: Pitch) -> None:
    match = (await pitch.create_match())["id"]
    started = await pitch.clock(match, "start", "2026-11-21T10:00:00Z")
    assert started["status"] == "live" and started["running"] is True
    assert started["current_period"] == 1 and started["match_id"] == match
    paused = await pitch.clock(match, "pause", "2026-11-21T10:12:30.500Z")
    assert (paused["status"], paused["running"], paused["clock_time"]) == ("live", False, "12:30")
    assert paused["period_elapsed_ms"] == 750_500
    ignored = await pitch.clock(match, "pause", "2026-11-21T10:13:00Z")  # already stopped
    assert ignored["period_elapsed_ms"] == 750_500 and ignored["action_id"] != paused["action_id"]
    await pitch.clock(match, "resume", "2026-11-21T10:20:00Z")
    half = await pitch.clock(match, "end_period", "2026-11-21T10:32:30Z")
    assert (half["status"], half["clock_time"], half["current_period"]) == ("half_time", "25:00", 1)
    view = (await pitch.view(match))["match"]
    assert (view["status"], view["current_period"], view["clock_time"]) == (
        "half_time",
        1,
        "25:00",
    )
    second = await pitch.clock(match, "start_period", "2026-11-21T10:40:00Z")
    assert second["current_period"] == 2 and second["running"] is True
    finished = await pitch.clock(match, "finish", "2026-11-21T11:05:00Z")
    assert (finished["status"], finished["clock_time"], finished["running"]) == (
        "finished",
        "25:00",
        False,
    )
    # Without "at" the server's time is used: a fresh match starts running now.
    fresh = (await pitch.create_match())["id"]
    now = await pitch.clock(fresh, "start")
    assert now["running"] is True and 0 <= now["period_elapsed_ms"] < 60_000
    view = await pitch.view(fresh)
    assert view["match"]["clock_running"] is True and isinstance(view["server_time_ms"], int)
    # Every press is a clock_actions record in the log.
    pulled = await pitch.client.post(
        "/api/sync/pull",
        json={"device_id": "phone-a", "match_id": match},
        headers=await pitch.club.headers("phone-a"),
    )
    actions = [
        c["fields"]["action"] for c in pulled.json()["changes"] if c["table"] == "clock_actions"
    ]
    assert actions == [
        "start", "pause", "pause", "resume", "end_period", "start_period", "finish",
    ]  # fmt: skip


async def test_invalid_clock_presses_are_refused(pitch: Pitch, clean_engine: AsyncEngine) -> None:
    match = (await pitch.create_match())["id"]
    before = await log_size(clean_engine)
    for body, field in (
        ({"action": "stop"}, "$.action"),
        ({}, "$.action"),
        ({"action": "start", "at": "10:00"}, "$.at"),
        ({"action": "start", "at": "2026-02-30T10:00:00Z"}, "$.at"),
        ({"action": "start", "when": KICKOFF}, "$.when"),
    ):
        response = await pitch.client.post(
            f"/api/matches/{match}/clock", json=body, headers=pitch.owner
        )
        assert_problem(response, 422, "validation-failed", field)
    assert await log_size(clean_engine) == before


async def test_two_coaches_pausing_at_once_converge_on_one_paused_clock(pitch: Pitch) -> None:
    """Anna pauses through REST while Ben, who had seen the start, pushes his own pause."""
    match = (await pitch.create_match())["id"]
    await pitch.clock(match, "start", "2026-11-21T10:00:00Z")
    ben = ScriptedDevice("phone-b", FakeClock())
    ben_headers = await pitch.club.headers("phone-b")
    pulled = await pitch.client.post(
        "/api/sync/pull", json={"device_id": "phone-b"}, headers=ben_headers
    )
    for c in pulled.json()["changes"]:
        ben.saw(c["hlc"], c["device_id"], c["seq"])

    anna = await pitch.clock(match, "pause", "2026-11-21T10:10:00.800Z")
    ben_pause = ben.change(
        "clock_actions",
        uuid.uuid4(),
        {"match_id": match, "action": "pause", "at": "2026-11-21T10:10:00Z"},
    )
    await pitch.push(ben_pause, device=ben)  # had not seen Anna's pause: concurrent

    as_anna, as_ben = await pitch.view(match), await pitch.view(match, headers=ben_headers)
    assert as_anna == as_ben
    m = as_anna["match"]
    assert (m["status"], m["clock_running"], m["clock_time"]) == ("live", False, "10:00")
    # One of the two pauses stopped the clock; the other found it stopped.
    assert m["period_elapsed_ms"] in (600_000, 600_800)
    assert anna["running"] is False

    # A replica built from a pull derives the very same clock.
    everything = await pitch.client.post(
        "/api/sync/pull",
        json={"device_id": "phone-b", "match_id": match, "include_own": True},
        headers=ben_headers,
    )
    replica = Replica()
    for c in everything.json()["changes"]:
        replica.apply(msgspec.convert(c, LoggedChange))
    states = [state for _, state in replica.records("clock_actions")]
    assert len(states) == 3
    derived = derive.clock(states, period_format="half", now_ms=0)
    assert (derived.running, derived.period_elapsed_ms) == (False, m["period_elapsed_ms"])

    # And the next press acts on that one paused clock.
    resumed = await pitch.clock(match, "resume", "2026-11-21T10:11:00Z")
    assert resumed["running"] is True


# -- the lineup --------------------------------------------------------------------------------


async def test_lineup_put_and_minutes_played(pitch: Pitch, clean_engine: AsyncEngine) -> None:
    match = (await pitch.create_match())["id"]
    client = pitch.client
    url = f"/api/matches/{match}/lineup"
    starters: list[dict[str, Any]] = [
        {"player_id": str(pitch.alex), "position": "GK", "start_min": 0},
        {"player_id": str(pitch.jamie), "position": "ST", "start_min": 0},
        {"player_id": str(pitch.sam)},  # on the bench
    ]
    put = await client.put(url, json={"players": starters}, headers=pitch.owner)
    assert put.status_code == 200, put.text
    lineup = put.json()
    assert lineup["match_id"] == match
    by_player = {entry["player_id"]: entry for entry in lineup["players"]}
    for player in (pitch.alex, pitch.jamie, pitch.sam):
        assert by_player[str(player)]["id"] == str(uuid.uuid5(uuid.UUID(match), str(player)))
    assert [e["player"] for e in lineup["players"]] == [
        "Alex Brown",
        "Jamie Alexander Smith",
        "Sam Okafor",
    ]
    assert by_player[str(pitch.alex)]["position"] == "GK"
    assert (
        by_player[str(pitch.alex)]["start_min"] == 0
        and by_player[str(pitch.sam)]["start_min"] is None
    )
    # Before the clock is used, minutes are of the planned match.
    assert {e["player"]: e["minutes_played"] for e in lineup["players"]} == {
        "Alex Brown": 50.0,
        "Jamie Alexander Smith": 50.0,
        "Sam Okafor": 0.0,
    }

    # Minute 35 (second half, 10:00): Sam comes on for Jamie. Kit, not on the sheet, comes
    # on at minute 45 too.
    on = pitch.event(
        match, "substitution", player_id=str(pitch.sam), period_number=2, clock_ms=600_000
    )
    off = pitch.event(
        match,
        "substitution",
        player_id=str(pitch.jamie),
        related_event_id=str(on.id),
        period_number=2,
        clock_ms=600_000,
    )
    late = pitch.event(
        match, "substitution", player_id=str(pitch.kit), period_number=2, clock_ms=1_200_000
    )
    await pitch.push(on, off, late)
    minutes = {
        e["player"]: (e["minutes_played"], e["in_lineup"], e["id"])
        for e in (await client.get(url, headers=pitch.owner)).json()["players"]
    }
    assert minutes == {
        "Alex Brown": (50.0, True, by_player[str(pitch.alex)]["id"]),
        "Jamie Alexander Smith": (35.0, True, by_player[str(pitch.jamie)]["id"]),
        "Sam Okafor": (15.0, True, by_player[str(pitch.sam)]["id"]),
        "Kit Lee": (5.0, False, None),
    }

    # With the clock paused at 10:00 of the second half, minutes stop at minute 35.
    await pitch.clock(match, "start", "2026-11-21T10:00:00Z")
    await pitch.clock(match, "end_period", "2026-11-21T10:25:00Z")
    await pitch.clock(match, "start_period", "2026-11-21T10:35:00Z")
    await pitch.clock(match, "pause", "2026-11-21T10:45:00Z")
    live = (await client.get(url, headers=pitch.owner)).json()["players"]
    assert {e["player"]: e["minutes_played"] for e in live} == {
        "Alex Brown": 35.0,
        "Jamie Alexander Smith": 35.0,
        "Sam Okafor": 0.0,
        "Kit Lee": 0.0,
    }

    # The same lineup again records nothing; dropping a player archives their row.
    before = await log_size(clean_engine)
    same = await client.put(url, json={"players": starters}, headers=pitch.owner)
    assert same.status_code == 200 and await log_size(clean_engine) == before
    smaller = await client.put(url, json={"players": starters[:2]}, headers=pitch.owner)
    assert [e["player"] for e in smaller.json()["players"] if e["in_lineup"]] == [
        "Alex Brown",
        "Jamie Alexander Smith",
    ]
    assert await log_size(clean_engine) == before + 1
    pulled = await client.post(
        "/api/sync/pull",
        json={"device_id": "phone-a", "match_id": match},
        headers=await pitch.club.headers("phone-a"),
    )
    last = pulled.json()["changes"][-1]
    assert (last["table"], last["op"], last["id"]) == (
        "lineup",
        "delete",
        by_player[str(pitch.sam)]["id"],
    )
    # Bringing the player back restores the same row; a changed position is written alone.
    back = [{**starters[0], "position": "DEF"}, starters[1], starters[2]]
    restored = (await client.put(url, json={"players": back}, headers=pitch.owner)).json()
    assert {e["player"]: e["position"] for e in restored["players"] if e["in_lineup"]} == {
        "Alex Brown": "DEF",
        "Jamie Alexander Smith": "ST",
        "Sam Okafor": None,
    }
    assert await log_size(clean_engine) == before + 3


async def test_two_coaches_setting_the_lineup_converge_on_one_row_per_player(
    pitch: Pitch,
) -> None:
    match = (await pitch.create_match())["id"]
    url = f"/api/matches/{match}/lineup"
    coach = bearer(await pitch.club.member("coach", "phone-c"))
    await pitch.client.put(
        url,
        json={"players": [{"player_id": str(pitch.jamie), "position": "ST"}]},
        headers=pitch.owner,
    )
    # The other coach's phone created the same player's row offline, with the same id.
    ben = ScriptedDevice("phone-b", FakeClock())
    row = uuid.uuid5(uuid.UUID(match), str(pitch.jamie))
    await pitch.push(
        ben.change(
            "lineup", row, {"match_id": match, "player_id": str(pitch.jamie), "start_min": 0}
        ),
        device=ben,
    )
    second = await pitch.client.put(
        url,
        json={
            "players": [
                {"player_id": str(pitch.jamie), "position": "ST", "start_min": 0},
                {"player_id": str(pitch.sam)},
            ]
        },
        headers=coach,
    )
    assert second.status_code == 200, second.text
    rows = [e for e in second.json()["players"] if e["player_id"] == str(pitch.jamie)]
    assert len(rows) == 1 and rows[0]["id"] == str(row)
    assert (rows[0]["position"], rows[0]["start_min"]) == ("ST", 0)


async def test_invalid_lineups_are_refused_naming_the_entry(
    pitch: Pitch, clean_engine: AsyncEngine
) -> None:
    match = (await pitch.create_match())["id"]
    jamie = str(pitch.jamie)
    before = await log_size(clean_engine)
    for players, field in (
        ([{"player_id": jamie}, {"player_id": jamie}], "$.players[1].player_id"),
        ([{"player_id": jamie}, {"player_id": str(uuid.uuid4())}], "$.players[1].player_id"),
        ([{"player_id": jamie, "start_min": 30, "end_min": 10}], "$.players[0].end_min"),
        ([{"player_id": jamie, "start_min": -1}], "$.players[0].start_min"),
        ([{"player_id": jamie, "shirt": 7}], "$.players[0].shirt"),
        ([{"player_id": "jamie"}], "$.players[0].player_id"),
    ):
        response = await pitch.client.put(
            f"/api/matches/{match}/lineup", json={"players": players}, headers=pitch.owner
        )
        assert_problem(response, 422, "validation-failed", field)
    assert await log_size(clean_engine) == before


async def test_openapi_documents_every_match_endpoint(client: AsyncTestClient[Litestar]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    expected: dict[str, dict[str, str | None]] = {
        "/api/matches": {"get": "MatchList", "post": "MatchOut"},
        "/api/matches/{match_id}": {"get": "MatchDetailView", "put": "MatchOut", "delete": None},
        "/api/matches/{match_id}/restore": {"post": "MatchOut"},
        "/api/matches/{match_id}/score": {"get": "Scoreboard"},
        "/api/matches/{match_id}/clock": {"post": "MatchClock"},
        "/api/matches/{match_id}/lineup": {"get": "Lineup", "put": "Lineup"},
    }
    requests = {
        ("/api/matches", "post"): "MatchCreate",
        ("/api/matches/{match_id}", "put"): "MatchUpdate",
        ("/api/matches/{match_id}/clock", "post"): "ClockRequest",
        ("/api/matches/{match_id}/lineup", "put"): "LineupPut",
    }
    for path, operations in expected.items():
        for method, response_type in operations.items():
            operation = paths[path][method]
            assert operation["operationId"]
            if response_type is not None:
                success = next(code for code in operation["responses"] if code.startswith("2"))
                ref = operation["responses"][success]["content"]["application/json"]["schema"]
                assert ref["$ref"].endswith("/" + response_type), (path, method)
            if (path, method) in requests:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert body["$ref"].endswith("/" + requests[(path, method)])
