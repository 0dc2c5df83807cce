"""Accounts for API tests: sign up a club, log devices in, build bearer headers.

They take any httpx client: Litestar's test client or one talking to a served app."""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt

from sync_server.auth import ALGORITHM

PASSWORD = "correct horse battery staple"


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def new_email() -> str:
    return f"coach-{uuid.uuid4().hex[:12]}@example.org"


async def sign_up(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    team_name: str = "Riverside U11",
    device_id: str = "phone-a",
    invite_code: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email or new_email(), "password": PASSWORD}
    body["device_id"] = device_id
    if invite_code is not None:
        body["invite_code"] = invite_code
    else:
        body["team_name"] = team_name
    response = await client.post("/api/auth/signup", json=body)
    assert response.status_code == 201, response.text
    tokens: dict[str, Any] = response.json()
    tokens["email"] = body["email"]
    return tokens


async def log_in(client: httpx.AsyncClient, email: str, device_id: str) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD, "device_id": device_id}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@dataclass
class Club:
    """A club with its owner signed up; ``headers(device)`` logs the owner in on a device."""

    client: httpx.AsyncClient
    owner: dict[str, Any]
    _devices: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.owner["club"]["id"])

    async def headers(self, device_id: str) -> dict[str, str]:
        if device_id not in self._devices:
            if device_id == self.owner["device_id"]:
                self._devices[device_id] = bearer(self.owner)
            else:
                tokens = await log_in(self.client, self.owner["email"], device_id)
                self._devices[device_id] = bearer(tokens)
        return self._devices[device_id]

    async def invite(self, role: str) -> str:
        response = await self.client.post(
            f"/api/clubs/{self.id}/invites", json={"role": role}, headers=bearer(self.owner)
        )
        assert response.status_code == 201, response.text
        return str(response.json()["code"])

    async def member(self, role: str, device_id: str) -> dict[str, Any]:
        """A new user who joined with an invite for ``role``."""
        return await sign_up(self.client, invite_code=await self.invite(role), device_id=device_id)


async def new_club(client: httpx.AsyncClient, device_id: str = "phone-a") -> Club:
    return Club(client, await sign_up(client, device_id=device_id))


FORGERIES = (
    "alg-none",
    "wrong-key",
    "expired",
    "wrong-audience",
    "no-audience",
    "no-session",
    "other-user",
    "garbage",
    "hs512",
)


def forge_token(tokens: dict[str, Any], key: str, forge: str) -> str:
    """A broken or forged variant of the access token in ``tokens`` (see FORGERIES)."""
    claims: dict[str, Any] = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    now = datetime.now(UTC)
    if forge == "alg-none":
        return jwt.encode(claims, key=None, algorithm="none")
    if forge == "wrong-key":
        return jwt.encode(claims, "another key that is long enough to sign", ALGORITHM)
    if forge == "expired":
        past = {**claims, "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}
        return jwt.encode(past, key, ALGORITHM)
    if forge == "wrong-audience":
        return jwt.encode({**claims, "aud": "someone-else"}, key, ALGORITHM)
    if forge == "no-audience":
        return jwt.encode({k: v for k, v in claims.items() if k != "aud"}, key, ALGORITHM)
    if forge == "no-session":
        return jwt.encode({k: v for k, v in claims.items() if k != "sid"}, key, ALGORITHM)
    if forge == "other-user":
        return jwt.encode({**claims, "sub": str(uuid.uuid4())}, key, ALGORITHM)
    if forge == "hs512":
        with warnings.catch_warnings():  # the test key is short for HS512; that is fine here
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode(claims, key, "HS512")
    return "not.a.jwt"
