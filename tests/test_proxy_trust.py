"""Forwarded headers are believed from the configured proxies only (TRUSTED_PROXIES).

The per-address login limit shows which address the server counted a request under: with
the proxy trusted, each forwarded client has its own allowance; without, a client that sends
X-Forwarded-For itself still shares its real address's.
"""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server.cli import proxy_options
from sync_server.settings import Settings
from tests.live_fixtures import serve_in_thread

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def failed_logins(url: str, addresses: list[str]) -> list[int]:
    statuses = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for number, address in enumerate(addresses):
            # A different account each time: the limit also counts per account.
            answer = await http.post(
                "/api/auth/login",
                json={
                    "email": f"nobody{number}@example.org",
                    "password": "wrong password",
                    "device_id": "d",
                },
                headers={"x-forwarded-for": address},
            )
            statuses.append(answer.status_code)
    return statuses


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        (("127.0.0.1",), [401, 401, 401]),  # three clients, one attempt each
        ((), [401, 401, 429]),  # one client (127.0.0.1) claiming three addresses
        (("10.9.9.9",), [401, 401, 429]),  # a proxy that is not the peer: not believed
    ],
)
async def test_forwarded_addresses_count_only_from_trusted_proxies(
    settings: Settings, clean_engine: AsyncEngine, trusted: tuple[str, ...], expected: list[int]
) -> None:
    configured = dataclasses.replace(
        Settings.from_env(
            {
                "SECRET_KEY": settings.secret_key,
                "DATABASE_URL": settings.database_url,
                **(
                    {"DATABASE_SCHEMA": settings.database_schema}
                    if settings.database_schema
                    else {}
                ),
                "ENVIRONMENT": "test",
                "TRUSTED_PROXIES": ",".join(trusted),
            }
        ),
        login_attempts_per_minute=2,
    )
    with serve_in_thread(configured) as served:
        assert (
            await failed_logins(served.url, ["198.51.100.1", "198.51.100.2", "198.51.100.3"])
            == expected
        )


def test_no_proxy_configured_means_no_forwarded_headers_at_all() -> None:
    assert proxy_options(Settings(secret_key="k" * 40)) == {"proxy_headers": False}
    trusted = proxy_options(Settings(secret_key="k" * 40, trusted_proxies=("10.0.0.0/8",)))
    assert trusted == {"proxy_headers": True, "forwarded_allow_ips": ["10.0.0.0/8"]}
