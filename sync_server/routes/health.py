"""Liveness and readiness probes for load balancers and orchestrators.

`/health` says the process answers; `/ready` says it can also reach its database, so a
balancer stops sending traffic to an instance whose database is gone.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Final

from litestar import get
from litestar.di import NamedDependency
from litestar.types import ControllerRouterHandler
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server.db import check_database
from sync_server.migrate import database_revision, newest_revision
from sync_server.problems import ProblemError, problem_responses

__all__ = ["ROUTES", "health", "ready"]

logger = logging.getLogger(__name__)

# A probe must answer quickly even when the database hangs (e.g. SQLite busy_timeout).
READY_TIMEOUT_S: Final = 2.0


@get(
    "/health",
    tags=["operations"],
    summary="The process is alive",
    responses=problem_responses(),
)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/ready",
    tags=["operations"],
    summary="The process can serve traffic (its database answers)",
    responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
)
async def ready(engine: NamedDependency[AsyncEngine]) -> dict[str, str]:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await check_database(engine)
            revision = await database_revision(engine)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        logger.warning("readiness check failed: %r", exc)
        raise ProblemError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "database-unavailable",
            "Database unavailable",
            "The server cannot reach its database; retry shortly.",
            headers={"Retry-After": "1"},
        ) from exc
    if revision != newest_revision():
        # Serving an older schema would answer 500s: wait for `sync-server migrate`.
        logger.warning(
            "not ready: database at revision %s, server needs %s", revision, newest_revision()
        )
        raise ProblemError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "database-not-migrated",
            "Database not migrated",
            f"The database is at schema revision {revision or 'none'}; this server needs "
            f"{newest_revision()}. Run `sync-server migrate`.",
            headers={"Retry-After": "5"},
        )
    return {"status": "ready", "revision": revision}


ROUTES: Final[tuple[ControllerRouterHandler, ...]] = (health, ready)
