"""The family viewer's pages: the live match behind a share link, and its overlay.

``/watch/{token}`` and ``/watch/{token}/overlay`` answer HTML; the page then reads
``/api/watch/{token}`` and follows the match live (PROTOCOL.md §14, §17). A link that is
unknown, revoked or expired gets a friendly page with the right status, never an error body a
parent cannot read. The assets come from ``touchline_viewer`` (clients/viewer), versioned by
their content so browsers may keep them for a year.
"""

from __future__ import annotations

import hashlib
import html
from typing import Final

from litestar import MediaType, Response, Router, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from sync_server.auth import utc_now
from sync_server.problems import ProblemError
from sync_server.routes.share import provide_share_links
from sync_server.share_links import ShareLinks
from touchline_viewer import ASSETS, STATIC

__all__ = ["router"]

_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_FILES: Final = {name: (STATIC / name).read_bytes() for name in ASSETS}
VERSION: Final = hashlib.sha256(b"".join(_FILES.values())).hexdigest()[:12]
_PAGES: Final = {
    name: (STATIC / f"{name}.html").read_text(encoding="utf-8").replace("{version}", VERSION)
    for name in ("watch", "overlay", "notice")
}
_NO_STORE: Final = {"cache-control": "no-store"}
_NOTICES: Final = {
    404: ("This link doesn't work", "There is no match behind this link."),
    410: ("This link has ended", "The coach switched this link off, or it has expired."),
}


async def _page(name: str, token: str, share_links: ShareLinks) -> Response[str]:
    # The link is checked here so that a dead one gets its notice at once; a removed match
    # is found by the page itself, whose first read answers 404.
    try:
        await share_links.resolve(token, utc_now())
    except ProblemError as problem:
        if problem.status not in _NOTICES:
            raise
        return _notice(problem.status)
    return Response(_PAGES[name], media_type=MediaType.HTML, headers=_NO_STORE)


def _notice(status: int) -> Response[str]:
    title, message = _NOTICES[status]
    body = _PAGES["notice"].replace("{title}", html.escape(title))
    return Response(
        body.replace("{message}", html.escape(message)),
        status_code=status,
        media_type=MediaType.HTML,
        headers=_NO_STORE,
    )


@get("/{token:str}", include_in_schema=False, opt={"exclude_from_auth": True})
async def watch_page(
    token: FromPath[str],
    share_links: NamedDependency[ShareLinks],
) -> Response[str]:
    return await _page("watch", token, share_links)


@get("/{token:str}/overlay", include_in_schema=False, opt={"exclude_from_auth": True})
async def overlay_page(
    token: FromPath[str],
    share_links: NamedDependency[ShareLinks],
) -> Response[str]:
    return await _page("overlay", token, share_links)


@get("/assets/{name:str}", include_in_schema=False, opt={"exclude_from_auth": True})
async def asset(name: FromPath[str]) -> Response[bytes]:
    content = _FILES.get(name)
    if content is None:
        return Response(b"", status_code=404, headers=_NO_STORE)
    return Response(
        content,
        media_type=_TYPES[name[name.rindex(".") :]],
        # The pages name each asset with its content's hash: a new version is a new URL.
        headers={"cache-control": "public, max-age=31536000, immutable"},
    )


router = Router(
    path="/watch",
    route_handlers=[watch_page, overlay_page, asset],
    dependencies={"share_links": Provide(provide_share_links, sync_to_thread=False)},
)
