"""`sync-server`: migrate the database, serve the app with uvicorn, or compact the log."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import uvicorn
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from protocol.compaction import CompactionRefused, CompactionReport
from sync_server import tables
from sync_server.app import create_app
from sync_server.db import create_engine
from sync_server.logs import configure_logging, logging_config
from sync_server.migrate import head_revision, upgrade_to_head
from sync_server.relay.fast_socket import UVICORN_WS
from sync_server.runtime import tune_collector
from sync_server.settings import Settings, SettingsError
from sync_server.store_pg import open_store

__all__ = ["main", "proxy_options", "served_settings"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sync-server",
        description="Touchline sync server. Configuration comes from the environment.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve HTTP (run `migrate` first)")
    serve.add_argument("--host", help="interface to bind (default: $HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: $PORT or 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the port (default 1)"
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")

    commands.add_parser("migrate", help="upgrade the database schema to the newest revision")

    compact = commands.add_parser(
        "compact",
        help="drop superseded log entries of finished matches (PROTOCOL.md §6.6)",
    )
    which = compact.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--match", type=uuid.UUID, metavar="ID", help="compact this match (in any club)"
    )
    which.add_argument(
        "--finished", action="store_true", help="compact every finished match of every club"
    )
    return parser


def _fastest(module: str) -> str:
    # uvloop and httptools come with uvicorn[standard] on most platforms, not all.
    return module if importlib.util.find_spec(module) is not None else "auto"


def served_settings(settings: Settings, host: str | None, port: int | None) -> Settings:
    """The settings with the command line's --host and --port, so that share links name the
    address the server really listens on. Worker processes build their own settings from the
    environment, so it says the same to them."""
    if host:
        os.environ["HOST"] = host
    if port:
        os.environ["PORT"] = str(port)
    return dataclasses.replace(settings, host=host or settings.host, port=port or settings.port)


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's forwarded-header handling: X-Forwarded-For and -Proto are believed from the
    configured proxies only, and from nobody when there are none (uvicorn's own default would
    trust 127.0.0.1, letting anything on the machine pick its rate-limit address)."""
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    multi_process = args.workers > 1
    level = getattr(logging, args.log_level.upper())
    # Worker processes import the app themselves, each building its settings likewise.
    app = "sync_server.app:app_from_env" if multi_process else create_app(settings)
    tune_collector()
    uvicorn.run(
        app,
        factory=multi_process,
        workers=args.workers,
        host=settings.host,
        port=settings.port,
        loop=_fastest("uvloop"),
        http=_fastest("httptools"),
        log_level=args.log_level,
        log_config=logging_config(level, settings.log_format),
        **proxy_options(settings),
        # The app logs every request itself (sync_server.access) without query strings;
        # uvicorn's access log would print WebSocket tokens from the query.
        access_log=False,
        # Live sockets (PROTOCOL.md §17): uvicorn's sans-I/O protocol with a direct send for
        # the relay's fan-out, flow control that tells a stalled reader apart, no per-message
        # compression (it would compress every message once per socket
        # instead of once per fan-out), frames no larger than a request body, and pings
        # that close a peer gone silent within 40 s.
        ws=UVICORN_WS,
        ws_per_message_deflate=False,
        ws_max_size=settings.max_body_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        # SIGTERM: stop accepting, let in-flight requests finish; the relay closes live
        # sockets with 1012 so clients reconnect to another instance.
        timeout_graceful_shutdown=10,
    )


async def _compact(settings: Settings, match_id: uuid.UUID | None) -> int:
    """Compact one match (``match_id``) or every finished one, printing each match's log
    size before and after. Exit status 1 when the one match asked for was not compacted."""
    engine = create_engine(settings, pooled=False)
    store = open_store(engine, max_skew_ms=settings.max_clock_skew_ms)
    compacted: list[CompactionReport] = []
    unfinished = 0
    refused = False
    try:
        m = tables.matches
        query = select(m.c.club_id, m.c.id).order_by(m.c.club_id, m.c.id)
        if match_id is not None:
            query = query.where(m.c.id == match_id)
        async with engine.connect() as conn:
            targets = [(row.club_id, row.id) for row in await conn.execute(query)]
        for club_id, match in targets:
            try:
                report = await store.compact(club_id, match)
            except CompactionRefused as exc:
                if match_id is None and exc.code in ("not-finished", "no-log"):
                    unfinished += 1
                    continue
                refused = True
                print(f"club {club_id} match {match}: not compacted: {exc.reason}")
                continue
            compacted.append(report)
            print(
                f"club {club_id} match {match}: "
                f"{report.before.entries:,} -> {report.after.entries:,} log entries, "
                f"{report.before.bytes:,} -> {report.after.bytes:,} bytes"
            )
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"sync-server: database error: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    finally:
        await store.close()
        await engine.dispose()
    if match_id is not None and not targets:
        print(f"sync-server: no match {match_id}", file=sys.stderr)
        return 1
    before = sum(report.before.entries for report in compacted)
    after = sum(report.after.entries for report in compacted)
    summary = f"compacted {len(compacted)} match(es): {before:,} -> {after:,} log entries"
    if unfinished:
        summary += f"; {unfinished} not finished, left as they are"
    print(summary)
    return 1 if refused else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"sync-server: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        getattr(logging, args.log_level.upper()) if args.command == "serve" else logging.INFO,
        settings.log_format,
    )

    if args.command == "migrate":
        try:
            upgrade_to_head(settings)
        except (SQLAlchemyError, OSError) as exc:
            # One line an operator can act on, not the driver's traceback.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            print(f"sync-server: database error: {type(exc).__name__}: {reason}", file=sys.stderr)
            return 1
        print(f"database at revision {head_revision(settings)}")
        return 0
    if args.command == "compact":
        return asyncio.run(_compact(settings, args.match))
    if args.port is not None and not 1 <= args.port <= 65535:
        print("sync-server: --port must be 1..65535", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("sync-server: --workers must be at least 1", file=sys.stderr)
        return 2
    _serve(served_settings(settings, args.host, args.port), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
