"""The family viewer's pages: served by the server, small, hardened, and friendly when a link
has ended. (The page running in a browser is driven by the end-to-end suite in clients/e2e.)"""

from __future__ import annotations

import re

import brotli  # type: ignore[import-untyped]
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from sync_server.routes.viewer_pages import VERSION
from tests.auth_fixtures import bearer
from tests.test_share_links import Fixture, match_with_secrets
from touchline_viewer import ASSETS, STATIC

pytestmark = pytest.mark.anyio

BUDGET = 30 * 1024
"""HTML, JavaScript and CSS of the page together, compressed as the server sends them."""


async def shared(client: AsyncTestClient[Litestar]) -> tuple[Fixture, str, str]:
    f = await match_with_secrets(client)
    link = (await client.get(f"/api/matches/{f.match}/share", headers=bearer(f.club.owner))).json()
    return f, link["token"], link["id"]


async def test_the_page_and_its_assets_are_served_by_the_server(
    client: AsyncTestClient[Litestar],
) -> None:
    _, token, _ = await shared(client)
    page = await client.get(f"/watch/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    # Same-origin scripts only, no framing, no referrer carrying the token away.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assets = re.findall(r'(?:src|href)="(/watch/assets/[^"]+)"', page.text)
    assert sorted(a.split("?")[0] for a in assets) == [
        "/watch/assets/icon.svg",
        "/watch/assets/watch.css",
        "/watch/assets/watch.js",
    ]
    assert all(a.endswith(f"?v={VERSION}") for a in assets)
    for url in assets:
        answer = await client.get(url)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    script = await client.get("/watch/assets/watch.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert (await client.get("/watch/assets/secrets.py")).status_code == 404
    # No CDN, no other origin: every URL the page and its script load is the server's own.
    assert "http" not in (STATIC / "watch.js").read_text().replace("https:", "")


async def test_the_overlay_may_be_framed_by_streaming_software(
    client: AsyncTestClient[Litestar],
) -> None:
    _, token, _ = await shared(client)
    overlay = await client.get(f"/watch/{token}/overlay")
    assert overlay.status_code == 200
    assert "frame-ancestors *" in overlay.headers["content-security-policy"]
    assert "x-frame-options" not in overlay.headers
    assert 'data-mode="overlay"' in overlay.text
    css = (STATIC / "overlay.css").read_text()
    assert "background: transparent" in css


@pytest.mark.parametrize("suffix", ["", "/overlay"])
async def test_a_revoked_or_unknown_link_gets_a_friendly_page(
    client: AsyncTestClient[Litestar], suffix: str
) -> None:
    f, token, link_id = await shared(client)
    unknown = await client.get(f"/watch/not-a-real-token{suffix}")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    assert "There is no match behind this link." in unknown.text
    revoked = await client.delete(
        f"/api/matches/{f.match}/share/{link_id}", headers=bearer(f.club.owner)
    )
    assert revoked.status_code in (200, 204)
    ended = await client.get(f"/watch/{token}{suffix}")
    assert ended.status_code == 410
    assert ended.headers["content-type"].startswith("text/html")
    assert '<section id="notice" role="alert">' in ended.text
    assert "The coach switched this link off, or it has expired." in ended.text
    assert "Traceback" not in ended.text and "problem" not in ended.text


async def test_html_javascript_and_css_fit_the_byte_budget_compressed(
    client: AsyncTestClient[Litestar],
) -> None:
    _, token, _ = await shared(client)
    total = 0
    for url in [f"/watch/{token}", *(f"/watch/assets/{name}" for name in ASSETS)]:
        answer = await client.get(url, headers={"accept-encoding": "br"})
        raw = answer.content
        # The test client decodes; measure what travels: compressed when the server did.
        on_wire = (
            len(brotli.compress(raw, quality=5))
            if answer.headers.get("content-encoding") == "br"
            else len(raw)
        )
        total += on_wire
    assert total < BUDGET, f"{total} bytes on the wire"
