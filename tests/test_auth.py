"""Accounts, tokens and roles over HTTP, with hostile input: nothing is written on refusal."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import msgspec
import pytest
from litestar import Litestar, WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient, create_test_client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server import tables
from sync_server.app import create_app
from sync_server.auth import ALGORITHM, AUDIENCE, Principal, SessionCache, build_jwt_auth
from sync_server.settings import Settings
from tests.auth_fixtures import (
    FORGERIES,
    PASSWORD,
    bearer,
    forge_token,
    log_in,
    new_club,
    new_email,
    sign_up,
)
from tests.sync_fixtures import FakeClock, ScriptedDevice, new_match_changes

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem: dict[str, Any] = response.json()
    if code is not None:
        assert problem["type"] == f"/problems/{code}", problem
    return problem


# -- signup, login, me ------------------------------------------------------------------------


async def test_signup_creates_user_club_and_team_synced_to_devices(
    client: AsyncTestClient[Litestar],
) -> None:
    tokens = await sign_up(client, team_name="Riverside U11")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0
    assert tokens["role"] == "owner" and tokens["device_id"] == "phone-a"
    assert {"id", "email"} <= tokens["user"].keys() and tokens["team"]["name"] == "Riverside U11"

    me = await client.get("/api/auth/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["club"]["id"] == tokens["club"]["id"]
    assert me.json()["teams"] == [tokens["team"]] and me.json()["role"] == "owner"
    assert me.json()["device"] == {"id": "phone-a", "last_seq": 0}

    # The team is an ordinary synced record: the coach's next device pulls it.
    pulled = await client.post(
        "/api/sync/pull", json={"device_id": "phone-a"}, headers=bearer(tokens)
    )
    [team] = pulled.json()["changes"]
    assert team["table"] == "teams" and team["id"] == tokens["team"]["id"]
    assert team["fields"] == {"name": "Riverside U11", "is_opponent": False}


async def test_signup_refuses_taken_email_and_bad_bodies(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    first = await sign_up(client)
    again = await client.post(
        "/api/auth/signup",
        json={"email": first["email"].upper(), "password": PASSWORD, "team_name": "Copy"},
    )
    assert_problem(again, 409, "email-taken")
    for body in (
        {"email": "not-an-email", "password": PASSWORD, "team_name": "X"},
        {"email": new_email(), "password": "short", "team_name": "X"},
        {"email": new_email(), "password": PASSWORD},  # neither team nor invite
        {"email": new_email(), "password": PASSWORD, "team_name": "X", "invite_code": "ABCD"},
        {"email": new_email(), "password": PASSWORD, "team_name": "", "role": "owner"},
        {"email": new_email(), "password": PASSWORD, "team_name": "X", "device_id": "server"},
    ):
        response = await client.post("/api/auth/signup", json=body)
        assert_problem(response, 422)
    assert await count(clean_engine, tables.users) == 1
    assert await count(clean_engine, tables.clubs) == 1


async def test_signup_can_be_disabled(settings: Settings, clean_engine: AsyncEngine) -> None:
    app = create_app(dataclasses.replace(settings, allow_signup=False), engine=clean_engine)
    async with AsyncTestClient(app) as client:
        response = await client.post(
            "/api/auth/signup",
            json={"email": new_email(), "password": PASSWORD, "team_name": "X"},
        )
    assert_problem(response, 403, "signup-disabled")
    assert await count(clean_engine, tables.users) == 0


async def test_login_with_a_wrong_password_does_not_say_which_part_was_wrong(
    client: AsyncTestClient[Litestar],
) -> None:
    tokens = await sign_up(client)
    wrong_password = await client.post(
        "/api/auth/login", json={"email": tokens["email"], "password": "not the password"}
    )
    unknown_email = await client.post(
        "/api/auth/login", json={"email": new_email(), "password": PASSWORD}
    )
    first = assert_problem(wrong_password, 401, "invalid-credentials")
    second = assert_problem(unknown_email, 401, "invalid-credentials")
    assert first == second

    good = await log_in(client, tokens["email"].upper(), "tablet")
    assert good["device_id"] == "tablet" and good["user"] == tokens["user"]
    assert good["team"] == tokens["team"]


async def test_login_without_device_id_gets_one(client: AsyncTestClient[Litestar]) -> None:
    tokens = await sign_up(client)
    response = await client.post(
        "/api/auth/login", json={"email": tokens["email"], "password": PASSWORD}
    )
    assert response.status_code == 200
    assert uuid.UUID(response.json()["device_id"])


# -- refresh, logout ---------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: AsyncTestClient[Litestar],
) -> None:
    tokens = await sign_up(client)
    rotated = await client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert (await client.get("/api/auth/me", headers=bearer(fresh))).status_code == 200

    # A copy of the old token turns up: the whole login is revoked, the new pair included.
    reused = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(reused, 401, "refresh-token-reused")
    assert_problem(await client.get("/api/auth/me", headers=bearer(fresh)), 401)
    dead = await client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert_problem(dead, 401, "invalid-refresh-token")


async def test_refresh_refuses_unknown_and_malformed_tokens(
    client: AsyncTestClient[Litestar],
) -> None:
    unknown = await client.post("/api/auth/refresh", json={"refresh_token": "x" * 43})
    assert_problem(unknown, 401, "invalid-refresh-token")
    assert_problem(await client.post("/api/auth/refresh", json={"refresh_token": 5}), 422)
    assert_problem(await client.post("/api/auth/refresh", content=b"{"), 400)


async def test_logout_ends_the_devices_tokens_at_once(client: AsyncTestClient[Litestar]) -> None:
    tokens = await sign_up(client)
    other_device = await log_in(client, tokens["email"], "tablet")
    response = await client.post("/api/auth/logout", headers=bearer(tokens))
    assert response.status_code == 204
    assert_problem(await client.get("/api/auth/me", headers=bearer(tokens)), 401)
    refresh = await client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert_problem(refresh, 401)
    # The same user's other device is not logged out.
    assert (await client.get("/api/auth/me", headers=bearer(other_device))).status_code == 200


# -- forged and broken access tokens ---------------------------------------------------------


def _claims(tokens: dict[str, Any]) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return claims


@pytest.mark.parametrize("forge", FORGERIES)
async def test_forged_access_tokens_are_refused_and_write_nothing(
    client: AsyncTestClient[Litestar],
    clean_engine: AsyncEngine,
    settings: Settings,
    forge: str,
) -> None:
    tokens = await sign_up(client)
    token = forge_token(tokens, settings.secret_key, forge)
    headers = {"Authorization": f"Bearer {token}"}
    device = ScriptedDevice("phone-a", FakeClock())
    push = device.push(*new_match_changes(device, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
    response = await client.post(
        "/api/sync/push", content=msgspec.json.encode(push), headers=headers
    )
    problem = assert_problem(response, 401)
    assert "WWW-Authenticate" in response.headers
    assert "Traceback" not in problem["detail"]
    assert await count(clean_engine, tables.change_log) == 1  # only the signup's team


async def test_missing_or_odd_authorization_headers_are_401(
    client: AsyncTestClient[Litestar],
) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        assert_problem(await client.get("/api/auth/me", headers=headers), 401)


# -- invites, members and roles --------------------------------------------------------------


async def test_invite_lets_a_second_coach_join_from_their_phone(
    client: AsyncTestClient[Litestar],
) -> None:
    club = await new_club(client)
    code = await club.invite("coach")
    assert len(code.replace("-", "")) == 16
    second = await sign_up(client, invite_code=code.lower(), device_id="phone-b")
    assert second["club"] == club.owner["club"] and second["role"] == "coach"
    assert second["team"] == club.owner["team"]
    # One-time: the code does not work twice.
    again = await client.post(
        "/api/auth/signup",
        json={"email": new_email(), "password": PASSWORD, "invite_code": code},
    )
    assert_problem(again, 400, "invalid-invite")

    members = await client.get(f"/api/clubs/{club.id}/members", headers=bearer(second))
    assert sorted(m["role"] for m in members.json()["members"]) == ["coach", "owner"]


async def test_expired_and_unknown_invites_are_refused(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    code = await club.invite("viewer")
    async with clean_engine.begin() as conn:
        await conn.execute(
            tables.invites.update().values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    for attempt in (code, "ZZZZ-ZZZZ-ZZZZ-ZZZZ"):
        response = await client.post(
            "/api/auth/signup",
            json={"email": new_email(), "password": PASSWORD, "invite_code": attempt},
        )
        assert_problem(response, 400, "invalid-invite")
    assert await count(clean_engine, tables.users) == 1


async def test_viewer_reads_nothing_raw_and_writes_nothing(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    viewer = await club.member("viewer", "parent-phone")
    headers = bearer(viewer)
    device = ScriptedDevice("parent-phone", FakeClock())
    push = device.push(*new_match_changes(device, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
    refused = [
        await client.post("/api/sync/push", content=msgspec.json.encode(push), headers=headers),
        await client.post("/api/sync/pull", json={"device_id": "parent-phone"}, headers=headers),
        await client.get("/api/sync/conflicts", headers=headers),
        await client.post(f"/api/clubs/{club.id}/invites", json={"role": "coach"}, headers=headers),
        await client.get(f"/api/clubs/{club.id}/members", headers=headers),
    ]
    for response in refused:
        assert_problem(response, 403, "forbidden")
    assert await count(clean_engine, tables.change_log) == 1
    assert await count(clean_engine, tables.invites) == 1  # the owner's invite for the viewer
    assert (await client.get("/api/auth/me", headers=headers)).json()["role"] == "viewer"


async def test_only_the_owner_changes_roles_and_nobody_removes_the_owner(
    client: AsyncTestClient[Litestar],
) -> None:
    club = await new_club(client)
    coach = await club.member("coach", "phone-b")
    viewer = await club.member("viewer", "parent-phone")
    owner_id, viewer_id = club.owner["user"]["id"], viewer["user"]["id"]
    members = f"/api/clubs/{club.id}/members"

    by_coach = await client.patch(
        f"{members}/{viewer_id}", json={"role": "coach"}, headers=bearer(coach)
    )
    assert_problem(by_coach, 403, "forbidden")
    remove_owner = await client.delete(f"{members}/{owner_id}", headers=bearer(coach))
    assert_problem(remove_owner, 403, "forbidden")
    demote_owner = await client.patch(
        f"{members}/{owner_id}", json={"role": "viewer"}, headers=bearer(club.owner)
    )
    assert_problem(demote_owner, 409, "owner-required")
    promote = await client.patch(
        f"{members}/{viewer_id}", json={"role": "coach"}, headers=bearer(club.owner)
    )
    assert promote.status_code == 200 and promote.json()["role"] == "coach"
    # The role change applies to the token already in the viewer's hand.
    assert (await client.get("/api/auth/me", headers=bearer(viewer))).json()["role"] == "coach"
    assert_problem(
        await client.patch(
            f"{members}/{viewer_id}", json={"role": "owner"}, headers=bearer(club.owner)
        ),
        422,
    )


async def test_removing_a_member_revokes_their_devices_at_once(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    coach = await club.member("coach", "phone-b")
    coach_tablet = await log_in(client, coach["email"], "tablet-b")
    removed = await client.delete(
        f"/api/clubs/{club.id}/members/{coach['user']['id']}", headers=bearer(club.owner)
    )
    assert removed.status_code == 204
    for tokens in (coach, coach_tablet):
        assert_problem(await client.get("/api/auth/me", headers=bearer(tokens)), 401)
        refresh = await client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert_problem(refresh, 401)
    login = await client.post(
        "/api/auth/login", json={"email": coach["email"], "password": PASSWORD}
    )
    assert_problem(login, 403, "not-a-member")


# -- tenancy -------------------------------------------------------------------------------------


async def test_another_clubs_ids_answer_404_on_every_route_family(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    ours, theirs = await new_club(client), await new_club(client, device_id="their-phone")
    mine = bearer(ours.owner)
    their_match = uuid.uuid4()
    device = ScriptedDevice("their-phone", FakeClock())
    setup = device.push(*new_match_changes(device, their_match, uuid.uuid4(), uuid.uuid4()))
    pushed = await client.post(
        "/api/sync/push",
        content=msgspec.json.encode(setup),
        headers=await theirs.headers("their-phone"),
    )
    assert pushed.status_code == 200
    their_member = theirs.owner["user"]["id"]
    before = await count(clean_engine, tables.change_log)
    attempts = [
        client.post(f"/api/clubs/{theirs.id}/invites", json={"role": "coach"}, headers=mine),
        client.get(f"/api/clubs/{theirs.id}/members", headers=mine),
        client.delete(f"/api/clubs/{theirs.id}/members/{their_member}", headers=mine),
        client.patch(
            f"/api/clubs/{theirs.id}/members/{their_member}", json={"role": "viewer"}, headers=mine
        ),
        client.get(f"/api/matches/{their_match}/share", headers=mine),
        client.post(f"/api/matches/{their_match}/share", headers=mine),
        client.delete(f"/api/matches/{their_match}/share/{uuid.uuid4()}", headers=mine),
        client.post(f"/api/sync/conflicts/{uuid.uuid4()}/reinstate", headers=mine),
    ]
    for attempt in attempts:
        assert_problem(await attempt, 404)
    # Their records do not show in our pulls, whatever cursor we ask from.
    pulled = await client.post(
        "/api/sync/pull",
        json={"device_id": "phone-a", "match_id": str(their_match)},
        headers=mine,
    )
    assert pulled.json()["changes"] == []
    assert await count(clean_engine, tables.change_log) == before
    assert await count(clean_engine, tables.invites) == 0


async def test_a_token_pushes_only_as_its_own_device(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    club = await new_club(client)
    device = ScriptedDevice("phone-b", FakeClock())
    push = device.push(*new_match_changes(device, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
    response = await client.post(
        "/api/sync/push", content=msgspec.json.encode(push), headers=bearer(club.owner)
    )
    problem = assert_problem(response, 403, "wrong-device")
    assert problem["token_device_id"] == "phone-a"
    assert await count(clean_engine, tables.change_log) == 1


async def test_access_tokens_carry_audience_expiry_and_session(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    tokens = await sign_up(client)
    claims = jwt.decode(
        tokens["access_token"], settings.secret_key, algorithms=[ALGORITHM], audience=AUDIENCE
    )
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_s
    assert claims["sub"] == tokens["user"]["id"] and uuid.UUID(claims["sid"])
    assert "email" not in claims and "password" not in str(claims)


# -- limits --------------------------------------------------------------------------------------


async def test_a_login_flood_meets_429_with_retry_after(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    tokens = await sign_up(client)
    statuses = []
    for _ in range(60):
        response = await client.post(
            "/api/auth/login", json={"email": tokens["email"], "password": "wrong password!"}
        )
        statuses.append(response.status_code)
    assert set(statuses) == {401, 429}
    # Counted in sliding windows: a window boundary passing mid-test weighs the earlier
    # attempts a hair under 1, which can let one more through.
    limit = settings.login_attempts_per_minute
    assert limit <= statuses.index(429) <= limit + 1
    problem = assert_problem(response, 429, "rate-limited")
    assert int(response.headers["Retry-After"]) >= 1 and problem["retry_after"] >= 1
    # The right password is refused too while the account is locked out.
    locked = await client.post(
        "/api/auth/login", json={"email": tokens["email"], "password": PASSWORD}
    )
    assert_problem(locked, 429, "rate-limited")


async def test_every_endpoint_is_rate_limited_per_token(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    app = create_app(dataclasses.replace(settings, rate_limit_per_minute=5), engine=clean_engine)
    async with AsyncTestClient(app) as client:
        tokens = await sign_up(client)  # counted against the client's address
        statuses = [
            (await client.get("/api/auth/me", headers=bearer(tokens))).status_code for _ in range(7)
        ]
        # Five allowed; one more may pass if a sliding-window boundary falls mid-test.
        assert statuses[:5] == [200] * 5 and statuses[-1] == 429
        # Health probes are never limited.
        assert (await client.get("/health")).status_code == 200


async def test_security_headers_and_cors(settings: Settings, clean_engine: AsyncEngine) -> None:
    allowed = "https://app.touchline.example"
    app = create_app(dataclasses.replace(settings, cors_origins=(allowed,)), engine=clean_engine)
    async with AsyncTestClient(app) as client:
        for response in (
            await client.get("/health"),
            await client.get("/api/auth/me"),
            await client.post("/api/auth/refresh", content=b"{"),
        ):
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert "X-Request-ID" in response.headers
            assert "Strict-Transport-Security" not in response.headers
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        good = await client.options("/api/sync/push", headers={"Origin": allowed, **preflight})
        assert good.status_code in (200, 204)
        assert good.headers["Access-Control-Allow-Origin"] == allowed
        assert "Access-Control-Allow-Credentials" not in good.headers
        evil = await client.options(
            "/api/sync/push", headers={"Origin": "https://evil.example", **preflight}
        )
        assert evil.headers.get("Access-Control-Allow-Origin") not in ("*", "https://evil.example")
        simple = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in simple.headers


async def test_oversized_bodies_are_413_and_write_nothing(
    client: AsyncTestClient[Litestar], settings: Settings, clean_engine: AsyncEngine
) -> None:
    tokens = await sign_up(client)
    huge = b'{"device_id": "phone-a", "changes": [' + b" " * settings.max_body_bytes + b"]}"
    response = await client.post(
        "/api/sync/push",
        content=huge,
        headers={**bearer(tokens), "Content-Type": "application/json"},
    )
    assert_problem(response, 413, "request-entity-too-large")
    assert await count(clean_engine, tables.change_log) == 1


@websocket("/ws/echo")
async def echo(socket: WebSocket[Principal, Any, Any]) -> None:
    await socket.accept()
    await socket.send_json({"club": str(socket.user.club_id), "role": socket.user.role})
    await socket.close()


async def test_websockets_take_the_access_token_from_the_query(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    async with AsyncTestClient(create_app(settings, engine=clean_engine)) as client:
        tokens = await sign_up(client)

    async def engine() -> AsyncEngine:
        return clean_engine

    auth = build_jwt_auth(settings, engine)
    with create_test_client([echo], on_app_init=[auth.on_app_init]) as ws_client:
        with ws_client.websocket_connect(f"/ws/echo?token={tokens['access_token']}") as socket:
            assert socket.receive_json() == {"club": tokens["club"]["id"], "role": "owner"}
        for query in ("", "?token=not-a-token"):
            with (
                pytest.raises(WebSocketDisconnect),
                ws_client.websocket_connect(f"/ws/echo{query}") as socket,
            ):
                socket.receive_json()


async def test_production_adds_hsts(settings: Settings, clean_engine: AsyncEngine) -> None:
    production = dataclasses.replace(settings, environment="production")
    async with AsyncTestClient(create_app(production, engine=clean_engine)) as client:
        response = await client.get("/health")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_inventing_tokens_does_not_escape_the_limit(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    app = create_app(dataclasses.replace(settings, rate_limit_per_minute=2), engine=clean_engine)
    async with AsyncTestClient(app) as client:
        statuses = [
            (
                await client.get("/api/auth/me", headers={"Authorization": f"Bearer forged-{n}"})
            ).status_code
            for n in range(22)
        ]
    # Each invented token is new, but the address behind them all is limited at 10x (one more
    # may pass if a sliding-window boundary falls mid-test).
    assert statuses[:20] == [401] * 20 and statuses[-1] == 429


async def test_every_get_carries_an_etag(client: AsyncTestClient[Litestar]) -> None:
    tokens = await sign_up(client)
    for path in ("/api/auth/me", f"/api/clubs/{tokens['club']['id']}/members", "/health"):
        first = await client.get(path, headers=bearer(tokens))
        assert first.status_code == 200 and first.headers["ETag"].startswith('"')
        again = await client.get(
            path, headers={**bearer(tokens), "If-None-Match": first.headers["ETag"]}
        )
        assert again.status_code == 304 and again.content == b""


async def test_a_bad_body_is_answered_with_every_bad_field(
    client: AsyncTestClient[Litestar], clean_engine: AsyncEngine
) -> None:
    response = await client.post(
        "/api/auth/signup",
        json={"email": "not-an-email", "password": "short", "team_name": 7, "colour": "red"},
    )
    problem = assert_problem(response, 422, "validation-failed")
    assert sorted(error["field"] for error in problem["errors"]) == [
        "$.colour",
        "$.email",
        "$.password",
        "$.team_name",
    ]
    assert await count(clean_engine, tables.users) == 0


# -- the session cache ---------------------------------------------------------------------------


def _principal() -> Principal:
    return Principal(
        user_id=uuid.uuid4(),
        club_id=uuid.uuid4(),
        role="coach",
        device_id="phone-a",
        session_id=uuid.uuid4(),
    )


def test_cached_sessions_expire_and_invalidation_drops_them() -> None:
    now = [100.0]
    cache = SessionCache(ttl_s=1.0, clock=lambda: now[0])
    principal = _principal()
    cache.put(principal, cache.generation)
    assert cache.get(principal.session_id) == principal
    now[0] += 1.0
    assert cache.get(principal.session_id) is None  # expired
    cache.put(principal, cache.generation)
    cache.invalidate()
    assert cache.get(principal.session_id) is None


def test_a_lookup_that_raced_an_invalidation_is_not_cached() -> None:
    cache = SessionCache(ttl_s=60.0)
    principal = _principal()
    read_in = cache.generation  # the lookup starts
    cache.invalidate()  # a logout commits meanwhile
    cache.put(principal, read_in)  # the lookup's (possibly stale) answer arrives
    assert cache.get(principal.session_id) is None


def test_the_cache_is_bounded() -> None:
    cache = SessionCache(ttl_s=60.0, max_entries=3)
    principals = [_principal() for _ in range(4)]
    for principal in principals:
        cache.put(principal, cache.generation)
    assert cache.get(principals[-1].session_id) == principals[-1]
    assert sum(cache.get(p.session_id) is not None for p in principals) <= 3


async def test_cached_sessions_still_see_logout_and_removal_at_once(
    client: AsyncTestClient[Litestar],
) -> None:
    club = await new_club(client)
    coach = await club.member("coach", "phone-b")
    for _ in range(3):  # warm the cache
        assert (await client.get("/api/auth/me", headers=bearer(coach))).status_code == 200
    removed = await client.delete(
        f"/api/clubs/{club.id}/members/{coach['user']['id']}", headers=bearer(club.owner)
    )
    assert removed.status_code == 204
    assert_problem(await client.get("/api/auth/me", headers=bearer(coach)), 401)
    assert (await client.get("/api/auth/me", headers=bearer(club.owner))).status_code == 200
    await client.post("/api/auth/logout", headers=bearer(club.owner))
    assert_problem(await client.get("/api/auth/me", headers=bearer(club.owner)), 401)
