"""Property-based checks of every endpoint against the server's own OpenAPI schema.

The real app runs under uvicorn on a free local port, on a fresh migrated SQLite database,
with a signed-up owner, one match, a share link and a conflict. Schemathesis generates a
bounded number of requests (valid and invalid) for every operation in /schema/openapi.json
and sends them with the owner's access token. No response may be a 5xx, and each must match
what the schema documents for its status code: the body's schema and its media type.

Generated ids almost never name anything, so every request would stop at a 404 and the
success responses would go unchecked. For about half of the cases (chosen by a hash of the
generated value, so runs repeat) a path id is swapped for the seeded club, member, match,
conflict or share token, and a push or pull body's device for the token's own device.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from litestar.serialization import encode_json
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from protocol.hlc import Hlc
from sync_server.app import create_app
from sync_server.migrate import upgrade_to_head
from sync_server.settings import Settings
from tests.live_fixtures import free_port, uvicorn_in_thread

if TYPE_CHECKING:
    # Defined for type checkers only: a schemathesis test case of an OpenAPI operation.
    from schemathesis.specs.openapi.schemas import OpenApiCase

pytestmark = pytest.mark.slow

PASSWORD: Final = "correct horse battery staple"
DEVICE: Final = "schemathesis"
OTHER_DEVICE: Final = "schemathesis-b"
STARTUP_TIMEOUT_S: Final = 15.0
REQUEST_TIMEOUT_S: Final = 10.0
# Fuzzed cases per operation, on top of schemathesis's explicit and boundary ("coverage")
# cases; the whole file stays well under a minute on two cores. To hunt for bugs, raise it:
# SCHEMATHESIS_MAX_EXAMPLES=500 pytest tests/test_schemathesis.py
MAX_EXAMPLES: Final = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass(frozen=True)
class LiveServer:
    """The app served on `base_url`, and what was seeded in it."""

    base_url: str
    email: str
    access_token: str
    club_id: str
    user_id: str
    match_id: str
    conflict_id: str
    team_id: str = ""
    player_id: str = ""
    season_id: str = ""
    event_id: str = ""

    def url(self, path: str) -> str:
        return self.base_url + path

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.access_token}"}

    def post(self, path: str, body: Any, token: str | None = None) -> dict[str, Any]:
        response = httpx.post(
            self.url(path), json=body, headers=self.bearer(token), timeout=REQUEST_TIMEOUT_S
        )
        assert response.is_success, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def log_in(self, device_id: str) -> str:
        body = {"email": self.email, "password": PASSWORD, "device_id": device_id}
        token: str = self.post("/api/auth/login", body)["access_token"]
        return token

    def share_token(self) -> str:
        response = httpx.get(
            self.url(f"/api/matches/{self.match_id}/share"),
            headers=self.bearer(),
            timeout=REQUEST_TIMEOUT_S,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token


def _change(seq: int, table: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    hlc = Hlc(time.time_ns() // 1_000_000, seq).encode()
    return {"seq": seq, "hlc": hlc, "table": table, "id": record_id, "fields": fields}


def _seed(base_url: str) -> LiveServer:
    """An owner with a match, and a conflict on its venue between two of their devices."""
    email = f"owner-{uuid.uuid4().hex[:12]}@example.org"
    signup = {"email": email, "password": PASSWORD, "team_name": "Schemathesis FC"}
    response = httpx.post(
        f"{base_url}/api/auth/signup",
        json={**signup, "device_id": DEVICE},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 201, response.text
    tokens = response.json()
    home, away, match_id, player, season, event = (str(uuid.uuid4()) for _ in range(6))
    seeding = LiveServer(
        base_url=base_url,
        email=email,
        access_token=tokens["access_token"],
        club_id=tokens["club"]["id"],
        user_id=tokens["user"]["id"],
        match_id=match_id,
        conflict_id="",
        team_id=home,
        player_id=player,
        season_id=season,
        event_id=event,
    )
    match = {
        "home_team_id": home,
        "away_team_id": away,
        "kickoff_ts": "2026-11-21T10:00:00+00:00",
        "period_format": "half",
        "duration_mins": 50,
    }
    changes = [
        _change(1, "teams", home, {"name": "Riverside U10"}),
        _change(2, "teams", away, {"name": "Hillview U10", "is_opponent": True}),
        _change(3, "matches", match_id, match),
        _change(4, "matches", match_id, {"venue": "Riverside Park"}),
        _change(5, "players", player, {"full_name": "Jamie Smith", "current_team": home}),
        _change(6, "seasons", season, {"label": "2026/27"}),
        _change(
            7,
            "events",
            event,
            {"match_id": match_id, "kind": "goal", "team_id": home, "player_id": player},
        ),
    ]
    seeding.post("/api/sync/push", {"device_id": DEVICE, "changes": changes})
    # The other device writes the venue without having seen the first device's write.
    other = seeding.log_in(OTHER_DEVICE)
    venue = _change(1, "matches", match_id, {"venue": "Hillview Rec"})
    pushed = seeding.post(
        "/api/sync/push", {"device_id": OTHER_DEVICE, "changes": [venue]}, token=other
    )
    assert pushed["conflicts"], pushed
    seeding.share_token()  # creates the match's share link
    return replace(seeding, conflict_id=pushed["conflicts"][0]["id"])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    database = tmp_path_factory.mktemp("schemathesis") / "touchline.db"
    port = free_port()
    app_settings = Settings.from_env(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "SECRET_KEY": "x" * 48,
            "PORT": str(port),
            # Hundreds of requests a minute from one address and one account, on purpose.
            "RATE_LIMIT_PER_MINUTE": "100000",
            "LOGIN_ATTEMPTS_PER_MINUTE": "100000",
        }
    )
    upgrade_to_head(app_settings)
    config = uvicorn.Config(
        create_app(app_settings),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
    )
    with uvicorn_in_thread(config, timeout_s=STARTUP_TIMEOUT_S) as base_url:
        yield _seed(base_url)


def _openapi_document() -> dict[str, Any]:
    """The document the app serves at /schema/openapi.json, built without serving it.

    Collection needs the operations before any server runs, and schemathesis's lazy loader
    (`schemathesis.pytest.from_fixture`) fails under pytest 9: it sets `Function._nodeid`,
    which pytest 9 no longer has. So the document comes from an app that never starts, and
    `test_served_document_is_the_one_tested` checks that the live server serves exactly it.
    """
    app = create_app(Settings.from_env({"ENVIRONMENT": "test", "SECRET_KEY": "x" * 48}))
    document: dict[str, Any] = json.loads(encode_json(app.openapi_schema.to_schema()))
    return document


OPENAPI_DOCUMENT: Final = _openapi_document()
schema = schemathesis.openapi.from_dict(OPENAPI_DOCUMENT)


def test_served_document_is_the_one_tested(live_server: LiveServer) -> None:
    response = httpx.get(live_server.url("/schema/openapi.json"), timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200
    assert response.json() == OPENAPI_DOCUMENT


def _use_seeded(generated: object) -> bool:
    """Whether to swap a generated value for a seeded one: for about half of the values."""
    return zlib.crc32(repr(generated).encode()) % 2 == 0


def _aim_at_seeded_records(case: OpenApiCase, server: LiveServer) -> None:
    seeded = {
        "club_id": server.club_id,
        # The owner: removing them is refused (403) and so is changing their role (409), so
        # member removal never ends the session every case uses.
        "user_id": server.user_id,
        "match_id": server.match_id,
        "conflict_id": server.conflict_id,
        "team_id": server.team_id,
        "player_id": server.player_id,
        "season_id": server.season_id,
        "event_id": server.event_id,
    }
    path = case.path_parameters or {}
    for name, value in seeded.items():
        if name in path and _use_seeded(path[name]):
            path[name] = value
    if "token" in path and _use_seeded(path["token"]):
        path["token"] = server.share_token()
    body = case.body
    if (
        case.operation.path in ("/api/sync/push", "/api/sync/pull")
        and isinstance(body, dict)
        and _use_seeded(body.get("device_id"))
    ):
        body["device_id"] = DEVICE


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    # Every case is a round trip to a real server, and schemathesis filters some candidates
    # (for instance, path parameters it cannot place in a URL).
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: OpenApiCase, live_server: LiveServer) -> None:
    _aim_at_seeded_records(case, live_server)
    token = None
    if case.operation.path == "/api/auth/logout":
        # Logout ends the user's sessions on the token's device; a device of its own keeps
        # the shared token working for every case after this one.
        token = live_server.log_in(f"logout-{uuid.uuid4().hex}")
    case.call_and_validate(
        base_url=live_server.base_url,
        headers=live_server.bearer(token),
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT_S,
    )
