"""REST endpoints for teams, players, seasons and club settings, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any, get_args

import msgspec
import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.rest_clubs import PeriodFormat, ViewerNames
from protocol.schema import MAX_TEXT, PERIOD_FORMATS, VIEWER_NAMES
from protocol.wire import Change
from sync_server import tables
from sync_server.records import rest_device_id
from tests.auth_fixtures import Club, bearer, new_club
from tests.sync_fixtures import FakeClock, ScriptedDevice

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]


def owner(club: Club) -> dict[str, str]:
    return bearer(club.owner)


async def push(club: Club, device: ScriptedDevice, *changes: Change) -> None:
    response = await club.client.post(
        "/api/sync/push",
        content=msgspec.json.encode(device.push(*changes)),
        headers=owner(club),
    )
    assert response.status_code == 200, response.text


async def logged(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count: int = (
            await conn.execute(select(func.count()).select_from(tables.change_log))
        ).scalar_one()
    return count


def assert_invalid(response: Response, *fields: str) -> None:
    """A 422 problem whose errors name exactly ``fields``."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "/problems/validation-failed"
    assert sorted({error["field"] for error in problem["errors"]}) == sorted(fields)


def assert_not_found(response: Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["type"] == "/problems/not-found"


async def create_team(client: Client, club: Club, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/teams", json=body, headers=owner(club))
    assert response.status_code == 201, response.text
    team: dict[str, Any] = response.json()
    return team


async def create_player(client: Client, club: Club, team_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/api/teams/{team_id}/players", json=body, headers=owner(club))
    assert response.status_code == 201, response.text
    player: dict[str, Any] = response.json()
    return player


async def all_pages(client: Client, url: str, headers: dict[str, str], limit: int) -> list[str]:
    """Every id a list answers, following next_cursor; checks each page's size."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert len(page["items"]) == limit


def test_wire_choices_match_the_schema() -> None:
    assert get_args(ViewerNames) == VIEWER_NAMES
    assert get_args(PeriodFormat) == PERIOD_FORMATS


# -- teams ---------------------------------------------------------------------------------


async def test_teams_and_opponents_are_created_listed_and_read(client: Client) -> None:
    club = await new_club(client)
    own_team = club.owner["team"]["id"]
    opponent = await create_team(client, club, name="Hillview U11", is_opponent=True)
    assert opponent == {
        "id": opponent["id"],
        "name": "Hillview U11",
        "short_name": None,
        "is_opponent": True,
        "color": None,
        "notes": None,
        "viewer_names": None,
        "deleted": False,
    }
    second = await create_team(
        client, club, name="Riverside U12", short_name="RIV", color="#003366", notes="Saturdays"
    )
    assert second["is_opponent"] is False and second["short_name"] == "RIV"

    listed = await client.get("/api/teams", headers=owner(club))
    assert listed.status_code == 200, listed.text
    items = {item["id"]: item for item in listed.json()["items"]}
    assert set(items) == {own_team, opponent["id"], second["id"]}
    assert items[own_team]["name"] == "Riverside U11" and not items[own_team]["is_opponent"]
    assert items[opponent["id"]] == opponent
    assert listed.json()["next_cursor"] is None

    one = await client.get(f"/api/teams/{second['id']}", headers=owner(club))
    assert one.status_code == 200 and one.json() == second


async def test_a_client_chosen_id_makes_create_idempotent(
    client: Client, clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    team_id = str(uuid.uuid4())
    first = await create_team(client, club, id=team_id, name="Hillview", is_opponent=True)
    again = await create_team(client, club, id=team_id, name="Hillview", is_opponent=True)
    assert first == again and first["id"] == team_id
    # Creating again writes the given fields, and only those: the rest is kept.
    renamed = await create_team(client, club, id=team_id, name="Hillview FC")
    assert renamed["name"] == "Hillview FC" and renamed["is_opponent"] is True
    listed = (await client.get("/api/teams", headers=owner(club))).json()["items"]
    assert [item["id"] for item in listed].count(team_id) == 1
    # An id in another spelling names the same record.
    upper = await create_team(client, club, id=team_id.upper().replace("-", ""), name="HFC")
    assert upper["id"] == team_id
    assert await logged(clean_engine) == 1 + 4  # the signup's team, then four REST writes


async def test_archived_teams_are_hidden_unless_asked_for(client: Client) -> None:
    club = await new_club(client)
    device = ScriptedDevice("phone-a", FakeClock())
    team = await create_team(client, club, name="Old rivals", is_opponent=True)
    await push(club, device, device.change("teams", uuid.UUID(team["id"]), op="delete"))

    live = (await client.get("/api/teams", headers=owner(club))).json()["items"]
    assert team["id"] not in [item["id"] for item in live]
    everything = await client.get(
        "/api/teams", params={"include_deleted": "true"}, headers=owner(club)
    )
    archived = {item["id"]: item for item in everything.json()["items"]}[team["id"]]
    assert archived["deleted"] is True and archived["name"] == "Old rivals"
    one = await client.get(f"/api/teams/{team['id']}", headers=owner(club))
    assert one.status_code == 200 and one.json()["deleted"] is True


# -- players -------------------------------------------------------------------------------


async def test_players_belong_to_their_team_and_put_changes_only_what_it_carries(
    client: Client,
) -> None:
    club = await new_club(client)
    team = club.owner["team"]["id"]
    other = await create_team(client, club, name="Riverside U12")
    jamie = await create_player(
        client,
        club,
        team,
        full_name="Jamie Alexander Smith",
        squad_number=7,
        preferred_pos="FW",
        dob="2015-03-04",
        notes="asthma inhaler in kit bag",
    )
    assert jamie == {
        "id": jamie["id"],
        "full_name": "Jamie Alexander Smith",
        "squad_number": 7,
        "preferred_pos": "FW",
        "dob": "2015-03-04",
        "notes": "asthma inhaler in kit bag",
        "current_team": team,
        "deleted": False,
    }
    sam = await create_player(client, club, team, full_name="Sam Lee")
    await create_player(client, club, other["id"], full_name="Alex Kim")

    roster = await client.get(f"/api/teams/{team}/players", headers=owner(club))
    assert roster.status_code == 200, roster.text
    assert sorted(p["full_name"] for p in roster.json()["items"]) == [
        "Jamie Alexander Smith",
        "Sam Lee",
    ]

    url = f"/api/players/{jamie['id']}"
    edited = await client.put(url, json={"squad_number": 9, "notes": None}, headers=owner(club))
    assert edited.status_code == 200, edited.text
    assert edited.json() == {**jamie, "squad_number": 9, "notes": None}
    unchanged = await client.put(url, json={}, headers=owner(club))
    assert unchanged.status_code == 200 and unchanged.json() == edited.json()
    assert (await client.get(url, headers=owner(club))).json() == edited.json()

    moved = await client.put(
        f"/api/players/{sam['id']}", json={"current_team": other["id"]}, headers=owner(club)
    )
    assert moved.status_code == 200 and moved.json()["current_team"] == other["id"]
    other_roster = await client.get(f"/api/teams/{other['id']}/players", headers=owner(club))
    assert sorted(p["full_name"] for p in other_roster.json()["items"]) == ["Alex Kim", "Sam Lee"]
    roster = await client.get(f"/api/teams/{team}/players", headers=owner(club))
    assert [p["full_name"] for p in roster.json()["items"]] == ["Jamie Alexander Smith"]


async def test_archived_players_are_hidden_unless_asked_for(client: Client) -> None:
    club = await new_club(client)
    device = ScriptedDevice("phone-a", FakeClock())
    team = club.owner["team"]["id"]
    gone = await create_player(client, club, team, full_name="Moved Away")
    await push(club, device, device.change("players", uuid.UUID(gone["id"]), op="delete"))
    url = f"/api/teams/{team}/players"
    assert (await client.get(url, headers=owner(club))).json()["items"] == []
    everything = await client.get(url, params={"include_deleted": True}, headers=owner(club))
    assert [p["deleted"] for p in everything.json()["items"]] == [True]


# -- seasons -------------------------------------------------------------------------------


async def test_seasons_are_created_listed_and_one_is_current(client: Client) -> None:
    club = await new_club(client)
    headers = owner(club)
    last = await client.post(
        "/api/seasons",
        json={
            "label": "2025/26",
            "start_date": "2025-09-01",
            "end_date": "2026-06-30",
            "is_current": True,
        },
        headers=headers,
    )
    assert last.status_code == 201, last.text
    assert last.json() == {
        "id": last.json()["id"],
        "label": "2025/26",
        "start_date": "2025-09-01",
        "end_date": "2026-06-30",
        "is_current": True,
        "deleted": False,
    }
    this = await client.post(
        "/api/seasons", json={"label": "2026/27", "is_current": True}, headers=headers
    )
    assert this.status_code == 201 and this.json()["is_current"] is True
    plain = await client.post("/api/seasons", json={"label": "Summer cup"}, headers=headers)
    assert plain.json()["is_current"] is False and plain.json()["start_date"] is None

    listed = (await client.get("/api/seasons", headers=headers)).json()
    current = {item["label"]: item["is_current"] for item in listed["items"]}
    assert current == {"2025/26": False, "2026/27": True, "Summer cup": False}
    one = await client.get(f"/api/seasons/{last.json()['id']}", headers=headers)
    assert one.status_code == 200 and one.json()["is_current"] is False


# -- club settings -------------------------------------------------------------------------


async def test_settings_have_defaults_and_put_changes_only_what_it_carries(
    client: Client, clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    url = f"/api/clubs/{club.id}/settings"
    defaults = {
        "club_id": club.id,
        "viewer_names": "first_name_initial",
        "default_period_format": "half",
        "default_duration_mins": 50,
    }
    fresh = await client.get(url, headers=owner(club))
    assert fresh.status_code == 200 and fresh.json() == defaults
    before = await logged(clean_engine)
    assert (await client.put(url, json={}, headers=owner(club))).json() == defaults
    assert await logged(clean_engine) == before  # nothing to write, nothing written

    changed = await client.put(
        url, json={"viewer_names": "squad_number", "default_duration_mins": 60}, headers=owner(club)
    )
    assert changed.status_code == 200, changed.text
    expected = {**defaults, "viewer_names": "squad_number", "default_duration_mins": 60}
    assert changed.json() == expected
    quarters = await client.put(url, json={"default_period_format": "quarter"}, headers=owner(club))
    expected["default_period_format"] = "quarter"
    assert quarters.json() == expected
    assert (await client.get(url, headers=owner(club))).json() == expected
    # null puts a setting back to its default.
    reset = await client.put(url, json={"default_duration_mins": None}, headers=owner(club))
    assert reset.json() == {**expected, "default_duration_mins": 50}


async def test_settings_are_a_synced_record_keyed_by_the_club(client: Client) -> None:
    club = await new_club(client)
    url = f"/api/clubs/{club.id}/settings"
    device = ScriptedDevice("phone-a", FakeClock())
    settings_id = uuid.UUID(club.id)
    # A sync client writes the record directly; REST reads it.
    await push(
        club, device, device.change("club_settings", settings_id, {"viewer_names": "squad_number"})
    )
    assert (await client.get(url, headers=owner(club))).json()["viewer_names"] == "squad_number"
    # Archived by a sync client: the defaults show, and the next PUT brings the record back.
    await push(club, device, device.change("club_settings", settings_id, op="delete"))
    assert (await client.get(url, headers=owner(club))).json()[
        "viewer_names"
    ] == "first_name_initial"
    put = await client.put(url, json={"default_duration_mins": 70}, headers=owner(club))
    assert (
        put.json()["viewer_names"] == "squad_number" and put.json()["default_duration_mins"] == 70
    )
    # The PUT reached the sync device as a restore and an upsert of the same record.
    pulled = await client.post("/api/sync/pull", json={"device_id": "phone-a"}, headers=owner(club))
    changes = [
        (c["op"], c["fields"]) for c in pulled.json()["changes"] if c["table"] == "club_settings"
    ]
    assert changes == [("restore", {}), ("upsert", {"default_duration_mins": 70})]


async def test_coaches_change_settings_and_viewers_only_read_them(client: Client) -> None:
    club = await new_club(client)
    url = f"/api/clubs/{club.id}/settings"
    coach = await club.member("coach", "phone-b")
    viewer = await club.member("viewer", "parent-phone")
    by_coach = await client.put(url, json={"default_duration_mins": 40}, headers=bearer(coach))
    assert by_coach.status_code == 200 and by_coach.json()["default_duration_mins"] == 40
    by_viewer = await client.put(url, json={"default_duration_mins": 30}, headers=bearer(viewer))
    assert by_viewer.status_code == 403
    read = await client.get(url, headers=bearer(viewer))
    assert read.status_code == 200 and read.json()["default_duration_mins"] == 40


# -- errors --------------------------------------------------------------------------------


async def test_invalid_bodies_name_each_bad_field_and_write_nothing(
    client: Client, clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    headers = owner(club)
    team = club.owner["team"]["id"]
    player = await create_player(client, club, team, full_name="Jamie Smith")
    before = await logged(clean_engine)

    assert_invalid(await client.post("/api/teams", json={}, headers=headers), "$.name")
    assert_invalid(await client.post("/api/teams", json={"name": ""}, headers=headers), "$.name")
    assert_invalid(
        await client.post("/api/teams", json={"name": "A", "colour": "red"}, headers=headers),
        "$.colour",
    )
    assert_invalid(
        await client.post("/api/teams", json={"name": "A", "is_opponent": "yes"}, headers=headers),
        "$.is_opponent",
    )
    assert_invalid(
        await client.post(
            "/api/teams", json={"name": "A", "viewer_names": "surname"}, headers=headers
        ),
        "$.viewer_names",
    )
    assert_invalid(
        await client.post("/api/teams", json={"name": "x" * (MAX_TEXT + 1)}, headers=headers),
        "$.name",
    )
    players = f"/api/teams/{team}/players"
    assert_invalid(
        await client.post(players, json={"full_name": "A", "squad_number": 1000}, headers=headers),
        "$.squad_number",
    )
    assert_invalid(
        await client.post(players, json={"full_name": "A", "dob": "2015-13-01"}, headers=headers),
        "$.dob",
    )
    assert_invalid(
        await client.post(players, json={"full_name": "A", "current_team": team}, headers=headers),
        "$.current_team",  # the path names the team
    )
    url = f"/api/players/{player['id']}"
    assert_invalid(await client.put(url, json={"nickname": "J"}, headers=headers), "$.nickname")
    assert_invalid(await client.put(url, json={"full_name": None}, headers=headers), "$.full_name")
    assert_invalid(
        await client.put(url, json={"squad_number": -1}, headers=headers), "$.squad_number"
    )
    assert_invalid(
        await client.put(url, json={"current_team": str(uuid.uuid4())}, headers=headers),
        "$.current_team",
    )
    assert_invalid(
        await client.post(
            "/api/seasons",
            json={"label": "2026", "start_date": "2026-09-01", "end_date": "2026-06-30"},
            headers=headers,
        ),
        "$.end_date",
    )
    assert_invalid(
        await client.post("/api/seasons", json={"lable": "x"}, headers=headers),
        "$.lable",
        "$.label",  # the typo, and the label it left out
    )
    settings = f"/api/clubs/{club.id}/settings"
    assert_invalid(
        await client.put(settings, json={"default_duration_mins": 0}, headers=headers),
        "$.default_duration_mins",
    )
    assert_invalid(
        await client.put(settings, json={"default_period_format": "thirds"}, headers=headers),
        "$.default_period_format",
    )
    assert_invalid(await client.put(settings, json={"theme": "dark"}, headers=headers), "$.theme")
    # PostgreSQL's text cannot hold NUL: refused as invalid rather than failing there.
    assert_invalid(
        await client.post("/api/teams", json={"name": "a\u0000b"}, headers=headers), "$.name"
    )
    malformed = await client.post(
        "/api/teams", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert await logged(clean_engine) == before


async def test_unknown_ids_are_not_found(client: Client, clean_engine: AsyncEngine) -> None:
    club = await new_club(client)
    headers = owner(club)
    missing = uuid.uuid4()
    before = await logged(clean_engine)
    assert_not_found(await client.get(f"/api/teams/{missing}", headers=headers))
    assert_not_found(await client.get(f"/api/teams/{missing}/players", headers=headers))
    assert_not_found(
        await client.post(f"/api/teams/{missing}/players", json={"full_name": "A"}, headers=headers)
    )
    assert_not_found(await client.get(f"/api/players/{missing}", headers=headers))
    assert_not_found(
        await client.put(f"/api/players/{missing}", json={"notes": "x"}, headers=headers)
    )
    assert_not_found(await client.get(f"/api/seasons/{missing}", headers=headers))
    assert_not_found(await client.get(f"/api/clubs/{missing}/settings", headers=headers))
    assert_not_found(await client.put(f"/api/clubs/{missing}/settings", json={}, headers=headers))
    assert await logged(clean_engine) == before


async def test_another_clubs_records_are_not_found(
    client: Client, clean_engine: AsyncEngine
) -> None:
    ours = await new_club(client)
    theirs = await new_club(client, device_id="phone-z")
    their_team = theirs.owner["team"]["id"]
    their_player = await create_player(client, theirs, their_team, full_name="Not Ours")
    season = await client.post("/api/seasons", json={"label": "X"}, headers=owner(theirs))
    their_season = season.json()["id"]
    headers = owner(ours)
    before = await logged(clean_engine)

    assert_not_found(await client.get(f"/api/teams/{their_team}", headers=headers))
    assert_not_found(await client.get(f"/api/teams/{their_team}/players", headers=headers))
    assert_not_found(
        await client.post(
            f"/api/teams/{their_team}/players", json={"full_name": "Spy"}, headers=headers
        )
    )
    assert_not_found(await client.get(f"/api/players/{their_player['id']}", headers=headers))
    assert_not_found(
        await client.put(f"/api/players/{their_player['id']}", json={"notes": "x"}, headers=headers)
    )
    assert_not_found(await client.get(f"/api/seasons/{their_season}", headers=headers))
    assert_not_found(await client.get(f"/api/clubs/{theirs.id}/settings", headers=headers))
    assert_not_found(
        await client.put(
            f"/api/clubs/{theirs.id}/settings",
            json={"viewer_names": "squad_number"},
            headers=headers,
        )
    )
    # Moving our player into their team is refused too.
    ours_player = await create_player(client, ours, ours.owner["team"]["id"], full_name="Ours")
    assert_invalid(
        await client.put(
            f"/api/players/{ours_player['id']}", json={"current_team": their_team}, headers=headers
        ),
        "$.current_team",
    )
    assert await logged(clean_engine) == before + 1  # our player, nothing else
    # Lists show only the club's own records.
    teams = (await client.get("/api/teams", headers=headers)).json()["items"]
    assert [t["id"] for t in teams] == [ours.owner["team"]["id"]]
    assert (await client.get("/api/seasons", headers=headers)).json()["items"] == []


async def test_viewers_write_nothing_and_read_no_private_records(
    client: Client, clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    team = club.owner["team"]["id"]
    player = await create_player(client, club, team, full_name="Jamie Smith", dob="2015-03-04")
    viewer = bearer(await club.member("viewer", "parent-phone"))
    before = await logged(clean_engine)
    refused = [
        await client.post("/api/teams", json={"name": "A"}, headers=viewer),
        await client.post(f"/api/teams/{team}/players", json={"full_name": "A"}, headers=viewer),
        await client.put(f"/api/players/{player['id']}", json={"notes": "x"}, headers=viewer),
        await client.post("/api/seasons", json={"label": "A"}, headers=viewer),
        await client.put(
            f"/api/clubs/{club.id}/settings", json={"viewer_names": "squad_number"}, headers=viewer
        ),
        # Teams and players carry notes, dates of birth and surnames.
        await client.get("/api/teams", headers=viewer),
        await client.get(f"/api/teams/{team}", headers=viewer),
        await client.get(f"/api/teams/{team}/players", headers=viewer),
        await client.get(f"/api/players/{player['id']}", headers=viewer),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert all(r.json()["type"] == "/problems/forbidden" for r in refused)
    assert await logged(clean_engine) == before
    assert (await client.get("/api/seasons", headers=viewer)).status_code == 200
    assert (await client.get(f"/api/clubs/{club.id}/settings", headers=viewer)).status_code == 200
    assert (await client.get("/api/teams")).status_code == 401


# -- REST and sync: one truth ---------------------------------------------------------------


async def test_rest_writes_appear_in_a_sync_pull(client: Client) -> None:
    club = await new_club(client)
    team = await create_team(client, club, name="Hillview", is_opponent=True)
    player = await create_player(client, club, team["id"], full_name="Sam Lee", squad_number=4)
    await client.put(f"/api/players/{player['id']}", json={"squad_number": 5}, headers=owner(club))
    season = (await client.post("/api/seasons", json={"label": "2026"}, headers=owner(club))).json()
    await client.put(
        f"/api/clubs/{club.id}/settings", json={"viewer_names": "squad_number"}, headers=owner(club)
    )

    # The owner's sync device pulls: the REST writes were made by its REST device.
    pulled = await client.post("/api/sync/pull", json={"device_id": "phone-a"}, headers=owner(club))
    assert pulled.status_code == 200, pulled.text
    rest = [c for c in pulled.json()["changes"] if c["device_id"] == rest_device_id("phone-a")]
    assert [(c["table"], c["id"], c["fields"]) for c in rest] == [
        ("teams", team["id"], {"name": "Hillview", "is_opponent": True}),
        (
            "players",
            player["id"],
            {"full_name": "Sam Lee", "squad_number": 4, "current_team": team["id"]},
        ),
        ("players", player["id"], {"squad_number": 5}),
        ("seasons", season["id"], {"label": "2026"}),
        ("club_settings", club.id, {"viewer_names": "squad_number"}),
    ]
    assert [c["seq"] for c in rest] == [1, 2, 3, 4, 5]


async def test_a_sync_edit_after_a_rest_create_shows_in_rest(client: Client) -> None:
    club = await new_club(client)
    player = await create_player(client, club, club.owner["team"]["id"], full_name="Sam Lee")
    device = ScriptedDevice("phone-a", FakeClock())
    device.seen[rest_device_id("phone-a")] = 1
    await push(
        club, device, device.change("players", uuid.UUID(player["id"]), {"squad_number": 11})
    )
    read = await client.get(f"/api/players/{player['id']}", headers=owner(club))
    assert read.json()["squad_number"] == 11 and read.json()["full_name"] == "Sam Lee"


# -- lists and caching ---------------------------------------------------------------------


async def test_pages_visit_every_record_once(client: Client) -> None:
    club = await new_club(client)
    headers = owner(club)
    created = [(await create_team(client, club, name=f"Team {n}"))["id"] for n in range(7)]
    expected = {club.owner["team"]["id"], *created}
    teams = await all_pages(client, "/api/teams", headers, limit=3)
    assert len(teams) == len(expected) == 8 and set(teams) == expected
    assert teams == sorted(teams, key=uuid.UUID)  # one stable order

    team = club.owner["team"]["id"]
    players = {(await create_player(client, club, team, full_name=f"P{n}"))["id"] for n in range(7)}
    listed = await all_pages(client, f"/api/teams/{team}/players", headers, limit=3)
    assert len(listed) == 7 and set(listed) == players

    seasons = {
        (await client.post("/api/seasons", json={"label": f"S{n}"}, headers=headers)).json()["id"]
        for n in range(7)
    }
    listed = await all_pages(client, "/api/seasons", headers, limit=3)
    assert len(listed) == 7 and set(listed) == seasons


async def test_records_created_between_pages_are_not_skipped_before_the_cursor(
    client: Client,
) -> None:
    club = await new_club(client)
    headers = owner(club)
    for n in range(6):
        await create_team(client, club, name=f"Team {n}")
    first = (await client.get("/api/teams", params={"limit": 3}, headers=headers)).json()
    # A record created after the cursor's position appears on a later page.
    late = await create_team(client, club, id="ffffffff-ffff-4fff-bfff-ffffffffffff", name="Late")
    rest: list[str] = []
    cursor = first["next_cursor"]
    while cursor is not None:
        page = await client.get(
            "/api/teams", params={"limit": 3, "cursor": cursor}, headers=headers
        )
        rest += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
    seen = [item["id"] for item in first["items"]] + rest
    assert len(seen) == len(set(seen)) == 8 and late["id"] == seen[-1]


async def test_bad_list_queries_are_refused(client: Client) -> None:
    club = await new_club(client)
    headers = owner(club)
    for params in ({"limit": 0}, {"limit": 1001}, {"cursor": "not a cursor!"}):
        response = await client.get("/api/teams", params=params, headers=headers)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["type"] == "/problems/invalid-query"
    wrong_type = await client.get("/api/seasons", params={"limit": "many"}, headers=headers)
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["field"] == "limit"
    largest = await client.get("/api/seasons", params={"limit": 1000}, headers=headers)
    assert largest.status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/teams", "/api/seasons", "/api/clubs/{club}/settings", "/api/teams/{team}"]
)
async def test_gets_carry_an_etag_and_answer_304_while_it_holds(client: Client, path: str) -> None:
    club = await new_club(client)
    headers = owner(club)
    url = path.format(club=club.id, team=club.owner["team"]["id"])
    first = await client.get(url, headers=headers)
    assert first.status_code == 200
    etag = first.headers["etag"]
    cached = await client.get(url, headers={**headers, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag

    # Any change to what the GET shows changes the tag.
    await create_team(client, club, id=club.owner["team"]["id"], name="Renamed")
    await client.post("/api/seasons", json={"label": "New"}, headers=headers)
    await client.put(
        f"/api/clubs/{club.id}/settings", json={"default_duration_mins": 60}, headers=headers
    )
    changed = await client.get(url, headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
