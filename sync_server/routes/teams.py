"""REST endpoints (issue in progress)."""

from __future__ import annotations

from litestar import Router

from sync_server.http_caching import ETagMiddleware

router = Router(path="/api", route_handlers=[], middleware=[ETagMiddleware()], tags=["teams"])
