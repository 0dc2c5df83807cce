"""``touchline-import``: bring an export of the app's IndexedDB into a Touchline server.

Exit codes: 0 when every row was imported (or was already there), 1 when some rows were
rejected (each is in the report, the rest was imported), 2 when the import could not run.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from touchline_import.mapping import ImportPlan, plan_import
from touchline_import.report import REASONS, ImportReport
from touchline_import.sources import NotAnExport, read_source
from touchline_import.upload import ImportFailed, ServerState, Upload

__all__ = ["main"]

PASSWORD_VARIABLE: Final = "TOUCHLINE_PASSWORD"
CANNOT_RUN: Final = 2
SHOWN_REJECTIONS: Final = 20


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        password = _password(args.password)
        report = anyio.run(_run, args, password, console)
    except (NotAnExport, ImportFailed) as error:
        print(f"touchline-import: error: {error}", file=sys.stderr)
        return CANNOT_RUN
    except KeyboardInterrupt:
        print("touchline-import: interrupted; run it again to carry on", file=sys.stderr)
        return CANNOT_RUN
    _summary(console, report, args.report)
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        except OSError as error:
            print(f"touchline-import: error: cannot write the report: {error}", file=sys.stderr)
            return CANNOT_RUN
    return report.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="touchline-import",
        description="Import an export of the app's IndexedDB (grassroots_db) into a Touchline "
        "server. Running it again, or with another export of the same phone, adds nothing.",
    )
    parser.add_argument(
        "file",
        type=Path,
        help="the export: a Dexie export, the app's ExportData file or a {table: [rows]} dump",
    )
    parser.add_argument(
        "--server", required=True, help="the server's address, e.g. https://touchline.example.org"
    )
    parser.add_argument("--email", required=True, help="a coach of the club to import into")
    parser.add_argument(
        "--password",
        help=f"the account's password (or set {PASSWORD_VARIABLE}; "
        "asked for when neither is given)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read, map and check everything "
        "and report what would happen, writing nothing to the server",
    )
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    return parser


def _password(given: str | None) -> str:
    if given is not None:
        return given
    if os.environ.get(PASSWORD_VARIABLE):
        return os.environ[PASSWORD_VARIABLE]
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    raise ImportFailed(f"no password: pass --password or set {PASSWORD_VARIABLE}")


async def _run(args: argparse.Namespace, password: str, console: Console) -> ImportReport:
    source = read_source(args.file)
    console.print(
        f"[bold]{args.file.name}[/]: {source.description}, "
        f"{sum(len(rows) for rows in source.tables.values())} rows"
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0)) as http:
        upload = Upload(http, args.server, args.email, password)
        tokens = await upload.login()
        try:
            plan = plan_import(source, tokens.club_id, file=str(args.file))
            report = plan.report
            report.dry_run, report.server = args.dry_run, upload.server
            report.club_id, report.device_id = str(tokens.club_id), upload.device_id
            with _progress(console) as progress:
                reading = progress.add_task("Reading the club's data", total=None)
                state = await upload.read_state(
                    lambda _, done, total: progress.update(reading, completed=done, total=total)
                )
                progress.update(reading, total=max(state.cursor, 1), completed=max(state.cursor, 1))
                if args.dry_run:
                    upload.select(plan, state)
                else:
                    await _push(upload, plan, state, progress)
        finally:
            await upload.logout()
    return report


async def _push(upload: Upload, plan: ImportPlan, state: ServerState, progress: Progress) -> None:
    pushing: TaskID = progress.add_task("Pushing changes", total=None)
    plan.report.changes_pushed = await upload.push(
        plan, state, lambda _, done, total: progress.update(pushing, completed=done, total=total)
    )
    progress.update(
        pushing,
        total=max(plan.report.changes_pushed, 1),
        completed=max(plan.report.changes_pushed, 1),
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _summary(console: Console, report: ImportReport, report_path: Path | None) -> None:
    table = Table(title="Dry run: nothing was written" if report.dry_run else "Imported")
    for heading in (
        "table",
        "imported",
        "of which deleted",
        "duplicates",
        "already on server",
        "rejected",
    ):
        table.add_column(heading, justify="left" if heading == "table" else "right")
    for name, counts in report.tables.items():
        table.add_row(
            name,
            str(counts.imported),
            str(counts.of_which_deleted),
            str(counts.skipped_as_duplicate),
            str(counts.already_on_server),
            str(counts.rejected),
        )
    console.print(table)
    if report.assists_recovered_from_notes:
        console.print(f"Assists recovered from goal notes: {report.assists_recovered_from_notes}")
    derived = {name: count for name, count in report.derived_records.items() if count}
    if derived:
        console.print(
            "Records made from others: "
            + ", ".join(f"{count} {name}" for name, count in derived.items())
        )
    if report.not_imported_tables:
        console.print(
            "Not imported (device bookkeeping or unknown): "
            + ", ".join(
                f"{name} ({rows} rows)" for name, rows in report.not_imported_tables.items()
            )
        )
    warnings = {name: count for name, count in report.warnings.items() if count}
    if warnings or report.unknown_season_matches:
        console.print(
            "Warnings: "
            + ", ".join(f"{name} {count}" for name, count in warnings.items())
            + (
                f", matches with an unknown season {report.unknown_season_matches}"
                if report.unknown_season_matches
                else ""
            )
        )
    for rejection in report.rejected[:SHOWN_REJECTIONS]:
        console.print(
            f"[red]rejected[/] {rejection.table} {rejection.id!r}: {rejection.reason} "
            f"({REASONS[rejection.reason]}): {rejection.detail}"
        )
    hidden = len(report.rejected) - SHOWN_REJECTIONS
    if hidden > 0:
        console.print(
            f"... and {hidden} more rejected rows"
            + (f" (all in {report_path})" if report_path else "")
        )
    if not report.dry_run:
        console.print(
            f"{report.changes_pushed} changes pushed as device {report.device_id} "
            f"to club {report.club_id}"
        )
