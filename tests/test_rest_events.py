"""REST match events: every endpoint, the derived score and feed, sync interplay, refusals."""

from __future__ import annotations

import uuid
from typing import Any, get_args

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.rest_events import EventKind
from protocol.schema import EVENT_KINDS
from protocol.wire import Change
from sync_server import tables
from tests.auth_fixtures import Club, bearer, new_club
from tests.sync_fixtures import FakeClock, ScriptedDevice, goal, new_match_changes

pytestmark = pytest.mark.anyio


class Pitch:
    """A club with a match (Riverside at home to Hillview) and a player on each side, all
    pushed through sync by the owner's phone: the matches REST routes are not needed."""

    def __init__(self, club: Club) -> None:
        self.club = club
        self.client = club.client
        self.device = ScriptedDevice("phone-a", FakeClock())
        self.match, self.home, self.away = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.maya, self.leo, self.sam = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    @property
    def owner(self) -> dict[str, str]:
        return bearer(self.club.owner)

    async def push(self, *changes: Change) -> dict[str, Any]:
        response = await self.client.post(
            "/api/sync/push",
            content=msgspec.json.encode(self.device.push(*changes)),
            headers=self.owner,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def post_event(self, match: uuid.UUID | None = None, **body: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/matches/{match or self.match}/events", json=body, headers=self.owner
        )
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def put_event(self, event_id: str, **body: Any) -> dict[str, Any]:
        response = await self.client.put(f"/api/events/{event_id}", json=body, headers=self.owner)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def watch(self) -> dict[str, Any]:
        share = await self.client.get(f"/api/matches/{self.match}/share", headers=self.owner)
        assert share.status_code == 200, share.text
        view = await self.client.get(f"/api/watch/{share.json()['token']}")
        assert view.status_code == 200, view.text
        answer: dict[str, Any] = view.json()
        return answer


async def new_pitch(client: AsyncTestClient[Litestar]) -> Pitch:
    p = Pitch(await new_club(client))
    d = p.device
    setup = new_match_changes(d, p.match, p.home, p.away)
    players = [
        d.change("players", p.maya, {"full_name": "Maya Okafor", "current_team": str(p.home)}),
        d.change("players", p.leo, {"full_name": "Leo Brandt", "current_team": str(p.home)}),
        d.change("players", p.sam, {"full_name": "Sam Ortiz", "current_team": str(p.away)}),
    ]
    await p.push(*setup, *players)
    return p


async def logged(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.execute(select(func.count()).select_from(tables.change_log))
        return int(count.scalar_one())


def test_every_kind_of_the_schema_is_accepted_by_the_wire_type() -> None:
    assert get_args(EventKind) == EVENT_KINDS


async def test_log_read_and_list_an_event(client: AsyncTestClient[Litestar]) -> None:
    p = await new_pitch(client)
    made = await p.post_event(
        kind="goal",
        team="home",
        player_id=str(p.maya),
        period_number=1,
        clock_ms=754_000,
        notes="curled in from the edge",
        sentiment=3,
        x=71.5,
        y=40,
    )
    assert made["kind"] == "goal" and made["team"] == "home" and made["team_id"] == str(p.home)
    assert made["player_id"] == str(p.maya) and made["match_id"] == str(p.match)
    assert (made["period_number"], made["clock_ms"], made["sentiment"]) == (1, 754_000, 3)
    assert (made["x"], made["y"], made["notes"]) == (71.5, 40.0, "curled in from the edge")
    assert made["deleted"] is False and made["related_event_id"] is None
    assert made["created_at"].endswith("+00:00")  # set by the server: none was sent
    uuid.UUID(made["id"])

    read = await client.get(f"/api/events/{made['id']}", headers=p.owner)
    assert read.status_code == 200 and read.json() == made
    listed = await client.get(f"/api/matches/{p.match}/events", headers=p.owner)
    assert listed.status_code == 200
    assert listed.json() == {"items": [made], "next_cursor": None}

    # By team_id, with a related event and the client's own id and time.
    mine = str(uuid.uuid4())
    assist = await p.post_event(
        id=mine,
        kind="assist",
        team_id=str(p.home),
        player_id=str(p.leo),
        related_event_id=made["id"],
        created_at="2026-11-21T10:12:30Z",
    )
    assert assist["id"] == mine and assist["team"] == "home"
    assert assist["related_event_id"] == made["id"]
    assert assist["created_at"] == "2026-11-21T10:12:30+00:00"
    # The away side, and an event of neither side.
    saved = await p.post_event(kind="save", team="away", player_id=str(p.sam))
    assert saved["team"] == "away" and saved["team_id"] == str(p.away)
    loose = await p.post_event(kind="ball_out")
    assert loose["team"] is None and loose["team_id"] is None


async def test_every_event_kind_can_be_logged(client: AsyncTestClient[Litestar]) -> None:
    p = await new_pitch(client)
    for kind in EVENT_KINDS:
        assert (await p.post_event(kind=kind, team="home"))["kind"] == kind
    listed = await client.get(f"/api/matches/{p.match}/events?limit=1000", headers=p.owner)
    assert sorted(e["kind"] for e in listed.json()["items"]) == sorted(EVENT_KINDS)


async def test_an_event_takes_its_matchs_season_unless_it_names_one(
    client: AsyncTestClient[Litestar],
) -> None:
    p = await new_pitch(client)
    this, last = uuid.uuid4(), uuid.uuid4()
    await p.push(
        p.device.change("seasons", this, {"label": "2026/27"}),
        p.device.change("seasons", last, {"label": "2025/26"}),
        p.device.change("matches", p.match, {"season_id": str(this)}),
    )
    assert (await p.post_event(kind="goal"))["season_id"] == str(this)
    named = await p.post_event(kind="goal", season_id=str(last))
    assert named["season_id"] == str(last)


async def test_goals_own_goals_deletes_restores_and_edits_drive_the_score_and_feed(
    client: AsyncTestClient[Litestar],
) -> None:
    p = await new_pitch(client)
    first = await p.post_event(
        kind="goal", team="home", player_id=str(p.maya), period_number=1, clock_ms=300_000
    )
    # Hillview's Sam puts it in his own net: the own goal's team is "away", it counts for home.
    own = await p.post_event(
        kind="own_goal", team="away", player_id=str(p.sam), period_number=1, clock_ms=600_000
    )
    assert own["team"] == "away"
    reply = await p.post_event(kind="goal", team="away", period_number=1, clock_ms=900_000)
    view = await p.watch()
    assert view["match"]["score"] == {"home": 2, "away": 1}
    feed = view["recent_events"]
    assert [(e["kind"], e["team"]) for e in feed] == [
        ("goal", "away"),
        ("own_goal", "away"),
        ("goal", "home"),
    ]
    assert feed[1]["player"] == "Sam O." and feed[2]["player"] == "Maya O."

    # An own goal of the home side counts for the away side.
    home_own = await p.post_event(kind="own_goal", team="home", period_number=2, clock_ms=1000)
    assert (await p.watch())["match"]["score"] == {"home": 2, "away": 2}

    deleted = await client.delete(f"/api/events/{first['id']}", headers=p.owner)
    assert deleted.status_code == 204
    view = await p.watch()
    assert view["match"]["score"] == {"home": 1, "away": 2}
    assert first["id"] not in {e["id"] for e in view["recent_events"]}

    restored = await client.post(f"/api/events/{first['id']}/restore", headers=p.owner)
    assert restored.status_code == 200 and restored.json()["deleted"] is False
    view = await p.watch()
    assert view["match"]["score"] == {"home": 2, "away": 2}

    # A coach corrects the scorer: Leo, not Maya.
    edited = await p.put_event(first["id"], player_id=str(p.leo))
    assert edited["player_id"] == str(p.leo) and edited["clock_ms"] == 300_000
    view = await p.watch()
    scorer = next(e for e in view["recent_events"] if e["id"] == first["id"])
    assert scorer["player"] == "Leo B." and scorer["team"] == "home"
    # Moving the away goal to the home side changes the score too.
    await p.put_event(reply["id"], team="home")
    assert (await p.watch())["match"]["score"] == {"home": 3, "away": 1}
    # Clearing the team of the home own goal takes it off the scoreboard.
    cleared = await p.put_event(home_own["id"], team=None)
    assert cleared["team"] is None and cleared["team_id"] is None
    assert (await p.watch())["match"]["score"] == {"home": 3, "away": 0}


async def test_put_changes_only_the_members_it_carries(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    p = await new_pitch(client)
    made = await p.post_event(
        kind="tackle", team="home", player_id=str(p.maya), notes="strong", sentiment=2, x=10
    )
    edited = await p.put_event(made["id"], notes="won it cleanly", sentiment=None)
    assert edited == {**made, "notes": "won it cleanly", "sentiment": None}
    before = await logged(clean_engine)
    unchanged = await p.put_event(made["id"])
    assert unchanged == edited and await logged(clean_engine) == before
    kind = await p.put_event(made["id"], kind="interception", team="away", player_id=None)
    assert (kind["kind"], kind["team"], kind["player_id"]) == ("interception", "away", None)
    assert kind["x"] == 10.0 and kind["created_at"] == made["created_at"]


async def test_a_rest_edit_appears_in_a_sync_pull(client: AsyncTestClient[Litestar]) -> None:
    p = await new_pitch(client)
    scored = goal(p.device, p.match, p.home, player_id=str(p.maya))
    await p.push(scored)
    await p.put_event(str(scored.id), player_id=str(p.leo))
    pulled = await client.post(
        "/api/sync/pull", json={"device_id": "phone-a", "match_id": str(p.match)}, headers=p.owner
    )
    assert pulled.status_code == 200, pulled.text
    [change] = pulled.json()["changes"]  # the phone's own changes are not sent back
    assert change["device_id"] == "phone-a:rest" and change["id"] == str(scored.id)
    assert change["table"] == "events" and change["fields"] == {"player_id": str(p.leo)}


async def test_a_rest_edit_and_an_offline_push_to_one_field_are_a_conflict(
    client: AsyncTestClient[Litestar],
) -> None:
    p = await new_pitch(client)
    scored = goal(p.device, p.match, p.home, player_id=str(p.maya))
    await p.push(scored)
    # A coach corrects the scorer over REST while the phone, offline, corrects it differently.
    await p.put_event(str(scored.id), player_id=str(p.leo))
    offline = p.device.change("events", scored.id, {"player_id": str(p.sam)})
    ack = await p.push(offline)
    assert [c["field"] for c in ack["conflicts"]] == ["player_id"]
    ledger = await client.get(
        "/api/sync/conflicts", params={"match_id": str(p.match)}, headers=p.owner
    )
    assert ledger.status_code == 200
    [conflict] = ledger.json()["conflicts"]
    assert conflict["table"] == "events" and conflict["record_id"] == str(scored.id)
    sides = {conflict["winner"]["device_id"]: conflict["winner"]["value"]}
    sides[conflict["loser"]["device_id"]] = conflict["loser"]["value"]
    assert sides == {"phone-a:rest": str(p.leo), "phone-a": str(p.sam)}
    # Both replicas agree on the winner: the REST answer shows the merged state.
    read = await client.get(f"/api/events/{scored.id}", headers=p.owner)
    assert read.json()["player_id"] == conflict["winner"]["value"]


async def test_etag_then_if_none_match_is_304_until_something_changes(
    client: AsyncTestClient[Litestar],
) -> None:
    p = await new_pitch(client)
    made = await p.post_event(kind="corner", team="home")
    for url in (f"/api/matches/{p.match}/events", f"/api/events/{made['id']}"):
        first = await client.get(url, headers=p.owner)
        etag = first.headers["etag"]
        again = await client.get(url, headers={**p.owner, "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
    await p.put_event(made["id"], clock_ms=61_000)
    for url in (f"/api/matches/{p.match}/events", f"/api/events/{made['id']}"):
        changed = await client.get(url, headers={**p.owner, "If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag


async def test_pages_visit_every_event_once_and_hide_archived_ones(
    client: AsyncTestClient[Litestar],
) -> None:
    p = await new_pitch(client)
    made = [
        (await p.post_event(kind="key_pass", team="home", clock_ms=i * 1000, notes="x" * 40))["id"]
        for i in range(23)
    ]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = await client.get(f"/api/matches/{p.match}/events", params=params, headers=p.owner)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 5 and len(seen) == len(set(seen)) and sorted(seen) == sorted(made)
    assert seen == sorted(seen, key=uuid.UUID)  # by id, not by time

    for event_id in made[:2]:
        await client.delete(f"/api/events/{event_id}", headers=p.owner)
    live = await client.get(f"/api/matches/{p.match}/events?limit=1000", headers=p.owner)
    assert {e["id"] for e in live.json()["items"]} == set(made[2:])
    everything = await client.get(
        f"/api/matches/{p.match}/events",
        params={"limit": 1000, "include_deleted": "true"},
        headers=p.owner,
    )
    archived = {e["id"] for e in everything.json()["items"] if e["deleted"]}
    assert archived == set(made[:2]) and len(everything.json()["items"]) == 23
    gone = await client.get(f"/api/events/{made[0]}", headers=p.owner)
    assert gone.status_code == 200 and gone.json()["deleted"] is True

    # A big list is compressed for clients that accept it (httpx decodes it).
    for encoding in ("br", "gzip"):
        packed = await client.get(
            f"/api/matches/{p.match}/events?limit=1000",
            headers={**p.owner, "Accept-Encoding": encoding},
        )
        assert packed.headers["content-encoding"] == encoding
        assert len(packed.json()["items"]) == 21

    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "not a cursor!"}):
        refused = await client.get(f"/api/matches/{p.match}/events", params=bad, headers=p.owner)
        assert refused.status_code == 400, bad
        assert refused.json()["type"] == "/problems/invalid-query"


async def test_delete_and_restore_are_idempotent(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    p = await new_pitch(client)
    made = await p.post_event(kind="foul", team="away")
    url = f"/api/events/{made['id']}"
    assert (await client.delete(url, headers=p.owner)).status_code == 204
    after_delete = await logged(clean_engine)
    assert (await client.delete(url, headers=p.owner)).status_code == 204
    assert await logged(clean_engine) == after_delete
    # An archived event can still be edited; it stays archived until restored.
    edited = await p.put_event(made["id"], notes="should have been a card")
    assert edited["deleted"] is True
    back = await client.post(f"{url}/restore", headers=p.owner)
    assert back.status_code == 200
    assert back.json() == {**edited, "deleted": False}
    after_restore = await logged(clean_engine)
    assert (await client.post(f"{url}/restore", headers=p.owner)).json() == back.json()
    assert await logged(clean_engine) == after_restore


async def test_resending_a_client_id_updates_that_event(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    p = await new_pitch(client)
    mine = str(uuid.uuid4())
    first = await p.post_event(id=mine, kind="shot_on_target", team="home")
    again = await p.post_event(id=mine, kind="shot_on_target", team="home", sentiment=1)
    assert again == {**first, "sentiment": 1}  # created_at kept
    listed = await client.get(f"/api/matches/{p.match}/events", headers=p.owner)
    assert [e["id"] for e in listed.json()["items"]] == [mine]
    # The id cannot move to another match.
    other = uuid.uuid4()
    await p.push(p.device.change("matches", other, {"home_team_id": str(p.home)}))
    before = await logged(clean_engine)
    moved = await client.post(
        f"/api/matches/{other}/events", json={"id": mine, "kind": "goal"}, headers=p.owner
    )
    assert moved.status_code == 409 and moved.json()["type"] == "/problems/id-in-use"
    assert await logged(clean_engine) == before


def _fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "/problems/validation-failed"
    return [error["field"] for error in problem["errors"]]


async def test_validation_errors_name_the_fields_and_write_nothing(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    p = await new_pitch(client)
    made = await p.post_event(kind="goal", team="home", player_id=str(p.maya), sentiment=2)
    other = await new_pitch(client)  # another club's records are unknown ids here
    foreign_goal = await other.post_event(kind="goal")
    before = await logged(clean_engine)
    events = f"/api/matches/{p.match}/events"
    edit = f"/api/events/{made['id']}"
    refusals = {
        "$.sentiment": [
            await client.post(events, json={"kind": "goal", "sentiment": 5}, headers=p.owner),
            await client.put(edit, json={"sentiment": -5}, headers=p.owner),
        ],
        "$.kind": [
            await client.post(events, json={"kind": "dribble"}, headers=p.owner),
            await client.post(events, json={"team": "home"}, headers=p.owner),
            await client.put(edit, json={"kind": None}, headers=p.owner),
        ],
        "$.x": [await client.post(events, json={"kind": "save", "x": 100.5}, headers=p.owner)],
        "$.clock_ms": [await client.put(edit, json={"clock_ms": -1}, headers=p.owner)],
        "$.team": [await client.post(events, json={"kind": "goal", "team": "x"}, headers=p.owner)],
        "$.match_id": [
            await client.put(edit, json={"match_id": str(other.match)}, headers=p.owner)
        ],
        "$.created_at": [
            await client.post(
                events, json={"kind": "goal", "created_at": "2026-11-21T10:00:00"}, headers=p.owner
            )
        ],
        "$.team_id": [
            await client.post(
                events,
                json={"kind": "goal", "team": "home", "team_id": str(p.away)},
                headers=p.owner,
            ),
            await client.put(edit, json={"team_id": str(other.home)}, headers=p.owner),
        ],
        "$.player_id": [
            await client.put(edit, json={"player_id": str(other.maya)}, headers=p.owner)
        ],
        "$.related_event_id": [
            await client.put(edit, json={"related_event_id": made["id"]}, headers=p.owner),
            await client.put(edit, json={"related_event_id": foreign_goal["id"]}, headers=p.owner),
        ],
        "$.season_id": [
            await client.post(
                events, json={"kind": "goal", "season_id": str(uuid.uuid4())}, headers=p.owner
            )
        ],
    }
    for field, responses in refusals.items():
        for response in responses:
            assert field in _fields(response), (field, response.text)
    # Every bad reference of one body is named at once.
    several = await client.put(
        edit,
        json={"player_id": str(uuid.uuid4()), "team_id": str(uuid.uuid4()), "season_id": None},
        headers=p.owner,
    )
    assert sorted(_fields(several)) == ["$.player_id", "$.team_id"]
    assert await logged(clean_engine) == before
    read = await client.get(edit, headers=p.owner)
    assert read.json() == made
    # A body that is not JSON at all.
    garbled = await client.post(events, content=b"{kind", headers=p.owner)
    assert garbled.status_code == 400 and garbled.json()["type"] == "/problems/malformed-body"


async def test_unknown_ids_and_archived_matches_are_404(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    p = await new_pitch(client)
    made = await p.post_event(kind="goal", team="home")
    before = await logged(clean_engine)
    nowhere, nothing = uuid.uuid4(), uuid.uuid4()
    answers = [
        await client.post(f"/api/matches/{nowhere}/events", json={"kind": "goal"}, headers=p.owner),
        await client.get(f"/api/matches/{nowhere}/events", headers=p.owner),
        await client.get(f"/api/events/{nothing}", headers=p.owner),
        await client.put(f"/api/events/{nothing}", json={"notes": "x"}, headers=p.owner),
        await client.delete(f"/api/events/{nothing}", headers=p.owner),
        await client.post(f"/api/events/{nothing}/restore", headers=p.owner),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(a.json()["type"] == "/problems/not-found" for a in answers)
    assert await logged(clean_engine) == before

    # An archived match hides its events until it is restored.
    await p.push(p.device.change("matches", p.match, op="delete"))
    before = await logged(clean_engine)
    hidden = [
        await client.post(f"/api/matches/{p.match}/events", json={"kind": "goal"}, headers=p.owner),
        await client.get(f"/api/matches/{p.match}/events", headers=p.owner),
        await client.get(f"/api/events/{made['id']}", headers=p.owner),
        await client.put(f"/api/events/{made['id']}", json={"notes": "x"}, headers=p.owner),
        await client.delete(f"/api/events/{made['id']}", headers=p.owner),
    ]
    assert [a.status_code for a in hidden] == [404] * len(hidden)
    assert await logged(clean_engine) == before
    await p.push(p.device.change("matches", p.match, op="restore"))
    assert (await client.get(f"/api/events/{made['id']}", headers=p.owner)).status_code == 200


async def test_another_clubs_ids_are_404_and_untouched(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    p = await new_pitch(client)
    made = await p.post_event(kind="goal", team="home")
    intruder = bearer((await new_club(client, device_id="phone-z")).owner)
    before = await logged(clean_engine)
    answers = [
        await client.post(
            f"/api/matches/{p.match}/events", json={"kind": "goal"}, headers=intruder
        ),
        await client.get(f"/api/matches/{p.match}/events", headers=intruder),
        await client.get(f"/api/events/{made['id']}", headers=intruder),
        await client.put(f"/api/events/{made['id']}", json={"notes": "x"}, headers=intruder),
        await client.delete(f"/api/events/{made['id']}", headers=intruder),
        await client.post(f"/api/events/{made['id']}/restore", headers=intruder),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert await logged(clean_engine) == before
    assert (await client.get(f"/api/events/{made['id']}", headers=p.owner)).json() == made


async def test_viewers_can_neither_write_nor_read_raw_events(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    p = await new_pitch(client)
    made = await p.post_event(kind="goal", team="home", notes="private", sentiment=4)
    viewer = bearer(await p.club.member("viewer", "parent-phone"))
    before = await logged(clean_engine)
    answers = [
        await client.post(f"/api/matches/{p.match}/events", json={"kind": "goal"}, headers=viewer),
        await client.put(f"/api/events/{made['id']}", json={"notes": "x"}, headers=viewer),
        await client.delete(f"/api/events/{made['id']}", headers=viewer),
        await client.post(f"/api/events/{made['id']}/restore", headers=viewer),
        # Raw events carry notes and sentiment ratings: viewers read the share link's view.
        await client.get(f"/api/matches/{p.match}/events", headers=viewer),
        await client.get(f"/api/events/{made['id']}", headers=viewer),
    ]
    assert [a.status_code for a in answers] == [403] * len(answers)
    assert all("private" not in a.text for a in answers)
    assert await logged(clean_engine) == before
    coach = bearer(await p.club.member("coach", "coach-phone"))
    assert (await client.get(f"/api/events/{made['id']}", headers=coach)).json() == made


async def test_the_openapi_schema_documents_every_event_operation(
    client: AsyncTestClient[Litestar],
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    operations = {
        op["operationId"]: op
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and op.get("operationId", "").startswith("event")
    }
    expected = {
        "eventCreate": ("EventCreate", "201", "EventOut"),
        "eventList": (None, "200", "EventPage"),
        "eventGet": (None, "200", "EventOut"),
        "eventUpdate": ("EventUpdate", "200", "EventOut"),
        "eventDelete": (None, "204", None),
        "eventRestore": (None, "200", "EventOut"),
    }
    assert set(operations) == set(expected)
    for operation_id, (request, status, answer) in expected.items():
        op = operations[operation_id]
        text = str(op)
        if request is not None:
            assert f"#/components/schemas/{request}" in str(op["requestBody"]), operation_id
        assert status in op["responses"], operation_id
        if answer is not None:
            assert f"#/components/schemas/{answer}" in str(op["responses"][status]), operation_id
        for error in ("401", "403", "404"):
            assert error in op["responses"] and "Problem" in text, (operation_id, error)
