"""The HTTP transport against the real server app: answers, refusals, outages and logins."""

from __future__ import annotations

import ast
import dataclasses
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.hlc import Hlc
from protocol.wire import Change, PullRequest, PushRequest
from sync_server.app import create_app
from sync_server.auth import ALGORITHM, AUDIENCE
from sync_server.db import create_engine
from sync_server.settings import Settings
from tests.auth_fixtures import PASSWORD, bearer
from tests.client_fixtures import AccountClub, sign_up_club, tokens_of
from touchline_client import (
    Credentials,
    HttpTransport,
    SyncRejected,
    SyncUnavailable,
    Tokens,
)
from touchline_client.transport import checked

pytestmark = pytest.mark.anyio

MATCH = uuid.uuid4()
EMPTY_APP_KEY = "a-secret-key-for-the-app-whose-database-is-empty"


@pytest.fixture
async def http(
    settings: Settings, clean_engine: AsyncEngine
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings, engine=clean_engine)) as client:
        yield client


def goal(seq: int, **fields: str | int) -> Change:
    return Change(
        seq=seq,
        hlc=Hlc(1_780_000_000_000 + seq).encode(),
        table="events",
        id=uuid.uuid4(),
        fields={"match_id": str(MATCH), "kind": "goal", **fields},
    )


@pytest.fixture
async def club(http: AsyncTestClient[Litestar]) -> AccountClub:
    return await sign_up_club(http, device_id="coach-a")


async def test_push_pull_and_ledger_round_trip(
    http: AsyncTestClient[Litestar], club: AccountClub
) -> None:
    a = HttpTransport(http, club.credentials("coach-a"), base_url=str(http.base_url))
    b = HttpTransport(http, club.credentials("coach-b"), base_url=str(http.base_url))
    ack = await a.push(PushRequest(device_id="coach-a", changes=[goal(1), goal(2)]))
    # Server sequence 1 is the team the signup recorded.
    assert (ack.acked_seq, ack.applied, ack.duplicates, ack.cursor) == (2, 2, 0, 3)
    page = await b.pull(PullRequest(device_id="coach-b", cursor=1, limit=1))
    assert [c.seq for c in page.changes] == [1] and page.has_more
    assert page.changes[0].device_id == "coach-a"
    assert await a.conflicts() == []
    assert await a.conflicts(MATCH, since=2) == []


async def test_clubs_are_kept_apart_by_the_token(http: AsyncTestClient[Litestar]) -> None:
    ours = (await sign_up_club(http, device_id="coach-a")).transport("coach-a")
    theirs_club = await sign_up_club(http, device_id="coach-b")
    theirs = theirs_club.transport("coach-b")
    await ours.push(PushRequest(device_id="coach-a", changes=[goal(1)]))
    page = await theirs.pull(PullRequest(device_id="coach-b"))
    # Only their own club's signup team, none of our events.
    assert [(c.table, c.device_id) for c in page.changes] == [("teams", "server")]
    assert page.cursor == 1


async def test_a_token_syncs_only_as_its_own_device(club: AccountClub) -> None:
    transport = club.transport("coach-a")
    with pytest.raises(SyncRejected) as refused:
        await transport.pull(PullRequest(device_id="coach-b"))
    assert (refused.value.status, refused.value.code) == (403, "wrong-device")
    assert refused.value.problem["token_device_id"] == "coach-a"


async def test_a_gap_is_refused_naming_the_expected_seq(club: AccountClub) -> None:
    transport = club.transport("coach-a")
    with pytest.raises(SyncRejected) as refused:
        await transport.push(PushRequest(device_id="coach-a", changes=[goal(3)]))
    assert (refused.value.status, refused.value.code, refused.value.expected_seq) == (
        409, "sequence-gap", 1,
    )  # fmt: skip
    assert refused.value.max_changes is None and refused.value.errors == []


async def test_an_invalid_set_is_refused_with_its_errors(club: AccountClub) -> None:
    transport = club.transport("coach-a")
    request = PushRequest(device_id="coach-a", changes=[goal(1, sentiment=9)])
    with pytest.raises(SyncRejected) as refused:
        await transport.push(request)
    assert (refused.value.status, refused.value.code) == (422, "invalid-change-set")
    assert [e["field"] for e in refused.value.errors] == ["$.changes[0].fields.sentiment"]
    assert "invalid-change-set" in str(refused.value)


async def test_an_unknown_conflict_cannot_be_reinstated(club: AccountClub) -> None:
    transport = club.transport("coach-a")
    with pytest.raises(SyncRejected) as refused:
        await transport.reinstate(uuid.uuid4())
    assert refused.value.status == 404


async def test_a_server_error_is_unavailable_not_a_refusal(tmp_path: Path) -> None:
    # A real app whose database was never migrated: every database call fails inside the
    # server, from the access token's session lookup and the login on.
    empty = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
            "ENVIRONMENT": "test",
            "SECRET_KEY": EMPTY_APP_KEY,
        }
    )
    token = jwt.encode(
        {
            "sub": str(uuid.uuid4()), "aud": AUDIENCE, "sid": str(uuid.uuid4()),
            "iat": datetime.now(UTC), "exp": datetime.now(UTC) + timedelta(minutes=5),
        },
        EMPTY_APP_KEY,
        ALGORITHM,
    )  # fmt: skip
    engine = create_engine(empty)
    try:
        async with AsyncTestClient(create_app(empty, engine=engine)) as http:
            with pytest.raises(SyncUnavailable) as unavailable:
                await HttpTransport(http, token).pull(PullRequest(device_id="coach-a"))
            logging_in = HttpTransport(http, Credentials("a@example.org", PASSWORD, "coach-a"))
            with pytest.raises(SyncUnavailable) as login_unavailable:
                await logging_in.pull(PullRequest(device_id="coach-a"))
    finally:
        await engine.dispose()
    for error in (unavailable.value, login_unavailable.value):
        status = error.status
        assert status is not None and status >= 500
        assert error.problem["status"] == status
    assert "/api/auth/login" in str(login_unavailable.value)


async def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for auth in ("an-access-token", Credentials("a@example.org", PASSWORD, "coach-a")):
            transport = HttpTransport(client, auth)
            with pytest.raises(SyncUnavailable) as unavailable:
                await transport.pull(PullRequest(device_id="coach-a"))
            assert unavailable.value.status is None
            assert isinstance(unavailable.value.__cause__, httpx.ConnectError)


# -- logging in and renewing tokens -------------------------------------------------------------


@dataclass
class Recorder:
    """Every request the client sends: its path and the token it carried."""

    sent: list[tuple[str, str | None]] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> None:
        self.sent.append((request.url.path, request.headers.get("authorization")))

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.sent]


@pytest.fixture
def recorder(http: AsyncTestClient[Litestar]) -> Recorder:
    recorder = Recorder()
    http.event_hooks = {"request": [recorder], "response": []}
    return recorder


def expired(tokens: Tokens, key: str) -> Tokens:
    """The same pair, with an access token that expired an hour ago (validly signed)."""
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    now = datetime.now(UTC)
    claims |= {"iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}
    return dataclasses.replace(tokens, access_token=jwt.encode(claims, key, ALGORITHM))


async def test_credentials_log_in_at_first_use_and_send_a_bearer_token(
    http: AsyncTestClient[Litestar], club: AccountClub, recorder: Recorder
) -> None:
    credentials = Credentials(club.email, PASSWORD, "coach-b")
    assert (credentials.tokens, credentials.club_id) == (None, None)  # not logged in yet
    transport = HttpTransport(http, credentials)
    page = await transport.pull(PullRequest(device_id="coach-b"))
    assert [c.table for c in page.changes] == ["teams"]  # the club's team, from the signup
    tokens = credentials.tokens
    assert tokens is not None and tokens.device_id == "coach-b" and tokens.role == "owner"
    assert credentials.club_id == club.id and tokens.team_id == uuid.UUID(club.owner["team"]["id"])
    await transport.pull(PullRequest(device_id="coach-b", cursor=page.cursor))
    assert recorder.sent == [
        ("/api/auth/login", None),
        ("/api/sync/pull", f"Bearer {tokens.access_token}"),
        ("/api/sync/pull", f"Bearer {tokens.access_token}"),
    ]


async def test_a_refused_access_token_is_refreshed_once_and_the_request_retried(
    http: AsyncTestClient[Litestar], club: AccountClub, recorder: Recorder, settings: Settings
) -> None:
    signed_up = tokens_of(club.owner)
    stale = expired(signed_up, settings.secret_key)
    credentials = Credentials(club.email, PASSWORD, "coach-a", tokens=stale)
    transport = HttpTransport(http, credentials)
    ack = await transport.push(PushRequest(device_id="coach-a", changes=[goal(1)]))
    assert (ack.acked_seq, ack.applied) == (1, 1)
    assert recorder.paths == ["/api/sync/push", "/api/auth/refresh", "/api/sync/push"]
    renewed = credentials.tokens
    assert renewed is not None and renewed.device_id == "coach-a"
    assert renewed.refresh_token != signed_up.refresh_token
    assert recorder.sent[-1][1] == f"Bearer {renewed.access_token}"
    # The refreshed pair keeps working, with no further exchange.
    assert await transport.conflicts() == []
    assert recorder.paths[3:] == ["/api/sync/conflicts"]


async def test_a_refused_refresh_falls_back_to_logging_in(
    http: AsyncTestClient[Litestar], club: AccountClub, recorder: Recorder
) -> None:
    credentials = club.credentials("coach-a")
    transport = HttpTransport(http, credentials)
    await transport.pull(PullRequest(device_id="coach-a"))
    # Logging the device out ends its session: the access token and refresh token both die.
    logout = await http.post("/api/auth/logout", headers=bearer(club.owner))
    assert logout.status_code == 204
    recorder.sent.clear()

    page = await transport.pull(PullRequest(device_id="coach-a"))
    assert page.changes and page.changes[0].table == "teams"
    assert recorder.paths == [
        "/api/sync/pull", "/api/auth/refresh", "/api/auth/login", "/api/sync/pull",
    ]  # fmt: skip
    assert credentials.tokens is not None
    assert credentials.tokens.refresh_token != club.owner["refresh_token"]


async def test_concurrent_requests_renew_a_refused_token_once(
    http: AsyncTestClient[Litestar], club: AccountClub, recorder: Recorder, settings: Settings
) -> None:
    # Refreshing twice with one refresh token would look like theft and end the login.
    stale = expired(tokens_of(club.owner), settings.secret_key)
    credentials = Credentials(club.email, PASSWORD, "coach-a", tokens=stale)
    transport = HttpTransport(http, credentials)
    pages: list[int] = []

    async def pull() -> None:
        pages.append(len((await transport.pull(PullRequest(device_id="coach-a"))).changes))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(pull)
    assert pages == [1, 1, 1]
    assert recorder.paths.count("/api/auth/refresh") == 1
    assert "/api/auth/login" not in recorder.paths
    assert recorder.paths.count("/api/sync/pull") == 6


async def test_a_wrong_password_is_refused_and_not_retried(
    http: AsyncTestClient[Litestar], club: AccountClub, recorder: Recorder
) -> None:
    credentials = Credentials(club.email, "not the password", "coach-b")
    with pytest.raises(SyncRejected) as refused:
        await HttpTransport(http, credentials).pull(PullRequest(device_id="coach-b"))
    assert (refused.value.status, refused.value.code) == (401, "invalid-credentials")
    assert "not the password" not in str(refused.value)
    assert recorder.paths == ["/api/auth/login"] and credentials.tokens is None


async def test_a_bare_access_token_is_sent_but_never_renewed(
    http: AsyncTestClient[Litestar], club: AccountClub, recorder: Recorder
) -> None:
    transport = HttpTransport(http, str(club.owner["access_token"]))
    await transport.pull(PullRequest(device_id="coach-a"))
    assert (await http.post("/api/auth/logout", headers=bearer(club.owner))).status_code == 204
    with pytest.raises(SyncRejected) as refused:
        await transport.pull(PullRequest(device_id="coach-a"))
    assert refused.value.status == 401
    assert recorder.paths == ["/api/sync/pull", "/api/auth/logout", "/api/sync/pull"]


async def test_a_rate_limited_login_is_unavailable_not_a_refusal(
    settings: Settings, clean_engine: AsyncEngine
) -> None:
    strict = dataclasses.replace(settings, login_attempts_per_minute=1)
    async with AsyncTestClient(create_app(strict, engine=clean_engine)) as http:
        club = await sign_up_club(http)
        await club.transport("coach-b").pull(PullRequest(device_id="coach-b"))
        with pytest.raises(SyncUnavailable) as unavailable:
            await club.transport("coach-c").pull(PullRequest(device_id="coach-c"))
    assert unavailable.value.status == 429
    assert unavailable.value.problem["type"] == "/problems/rate-limited"


async def test_secrets_stay_out_of_reprs(club: AccountClub) -> None:
    credentials = club.credentials("coach-a")
    tokens = credentials.tokens
    assert tokens is not None
    shown = " ".join(repr(x) for x in (credentials, tokens, club.transport("coach-a").auth)) + repr(
        HttpTransport(club.http, tokens.access_token).auth
    )
    for secret in (PASSWORD, tokens.access_token, tokens.refresh_token):
        assert secret not in shown
    assert "coach-a" in shown and club.email in shown


async def test_a_club_id_is_no_longer_credentials(club: AccountClub) -> None:
    with pytest.raises(TypeError, match="club from the access token"):
        HttpTransport(club.http, uuid.uuid4())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="belong to device"):
        Credentials(club.email, PASSWORD, "coach-b", tokens=tokens_of(club.owner))


def test_the_client_needs_nothing_of_the_server() -> None:
    package = Path(__file__).resolve().parents[1] / "clients" / "python" / "touchline_client"
    allowed = {"protocol", "touchline_client", "httpx", "msgspec", "anyio"}
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = {node.module.split(".")[0]}
            elif isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            else:
                continue
            third_party = {n for n in names if n not in sys.stdlib_module_names}
            assert third_party <= allowed, f"{source.name} imports {third_party - allowed}"


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), ("0", 0.0), ("soon", None), ("99999", None), (None, None)]
)
def test_retry_after_travels_with_an_unavailable_answer(
    header: str | None, expected: float | None
) -> None:
    headers = {"retry-after": header} if header is not None else {}
    answer = httpx.Response(503, headers=headers, json={"type": "/problems/database-unavailable"})
    with pytest.raises(SyncUnavailable) as raised:
        checked(answer, "POST /push")
    assert raised.value.retry_after_s == expected
    assert raised.value.status == 503
