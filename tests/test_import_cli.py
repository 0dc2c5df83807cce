"""`touchline-import` against a real running server, on SQLite and PostgreSQL.

The command runs as a user runs it: the installed entry point, in its own process. The
results are read back through the REST API (and a pull, for what has no REST view).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sync_server.settings import Settings
from tests.auth_fixtures import PASSWORD, sign_up
from tests.import_fixtures import (
    EXPECTED,
    EXPORTS,
    FIXTURES,
    expected_imported,
    expected_live_kinds,
)
from tests.live_fixtures import Served, serve_in_thread
from touchline_import.mapping import plan_import
from touchline_import.sources import read_source
from touchline_import.upload import Upload

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

COMMAND = Path(sys.executable).with_name("touchline-import")


@dataclass
class Club:
    http: httpx.AsyncClient
    served: Served
    email: str
    token: str

    async def get(self, path: str, **params: Any) -> Any:
        answer = await self.http.get(
            path, params=params, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.get(
                path, limit=100, **params, **({"cursor": cursor} if cursor else {})
            )
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    async def log(self) -> list[dict[str, Any]]:
        """Every change in the club's log."""
        changes: list[dict[str, Any]] = []
        cursor = 0
        while True:
            answer = await self.http.post(
                "/api/sync/pull",
                json={"device_id": "phone-a", "cursor": cursor, "limit": 1000, "include_own": True},
                headers={"Authorization": f"Bearer {self.token}"},
            )
            page = answer.json()
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                return changes

    def run(
        self, *args: str | Path, report: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(COMMAND),
            *map(str, args),
            "--server",
            self.served.url,
            "--email",
            self.email,
        ]
        if report is not None:
            command += ["--report", str(report)]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TOUCHLINE_PASSWORD": PASSWORD, "COLUMNS": "120"},
            check=False,
        )


@pytest.fixture
def served(settings: Settings, clean_engine: AsyncEngine) -> Iterator[Served]:
    with serve_in_thread(settings) as served:
        yield served


@pytest.fixture
async def club(served: Served) -> AsyncIterator[Club]:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        tokens = await sign_up(http)
        yield Club(http, served, tokens["email"], tokens["access_token"])


def imported(report: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        table: (counts["imported"], counts["of_which_deleted"])
        for table, counts in report["tables"].items()
    }


async def run(
    club: Club, *args: str | Path, report: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: club.run(*args, report=report))


@pytest.mark.parametrize("file", EXPORTS)
async def test_each_export_imports_with_the_expected_counts(
    club: Club, file: str, tmp_path: Path
) -> None:
    before = {
        "teams": len(await club.items("/api/teams")),
        "seasons": len(await club.items("/api/seasons")),
    }
    result = await run(club, FIXTURES / file, report=tmp_path / "report.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert imported(report) == expected_imported(file)
    assert report["rejected"] == []
    assert (
        report["tables"]["events"]["skipped_as_duplicate"]
        == EXPECTED[file]["skipped_as_duplicate"]["events"]
    )

    # Read back through the REST API.
    expected = expected_imported(file)
    teams = await club.items("/api/teams")
    assert len(teams) - before["teams"] == expected["teams"][0]
    players = [p for team in teams for p in await club.items(f"/api/teams/{team['id']}/players")]
    assert len(players) == expected["players"][0]
    if "seasons" in expected:
        assert len(await club.items("/api/seasons")) - before["seasons"] == expected["seasons"][0]
    matches = await club.items("/api/matches")
    assert len(matches) == expected["matches"][0]
    events = [
        event
        for match in matches
        for event in await club.items(f"/api/matches/{match['id']}/events", include_deleted="true")
    ]
    live = Counter(event["kind"] for event in events if not event["deleted"])
    assert live == expected_live_kinds(file)
    assert sum(event["deleted"] for event in events) == expected["events"][1]
    # What has no REST view, through a pull: the last state of every record.
    states: dict[tuple[str, str], bool] = {}
    for change in await club.log():
        key = (change["table"], change["id"])
        states[key] = (
            states.get(key, False) if change["op"] == "upsert" else change["op"] == "delete"
        )
    tables = Counter(table for table, _ in states)
    archived = Counter(table for (table, _), deleted in states.items() if deleted)
    if "lineup" in expected:
        assert (tables["lineup"], archived["lineup"]) == expected["lineup"]
        in_lineup = [
            entry
            for match in matches
            for entry in (await club.get(f"/api/matches/{match['id']}/lineup"))["players"]
            if entry["in_lineup"]
        ]
        assert 0 < len(in_lineup) <= expected["lineup"][0] - expected["lineup"][1]
    notes = expected.get("match_notes") or expected.get("matchNotes")
    if notes is not None:
        assert tables["match_notes"] == notes[0]
    assert tables["app_settings"] == expected["settings"][0]
    if file.startswith("dexie-head"):
        assert tables["player_teams"] == expected["playerTeams"][0]
        assert tables["default_lineups"] == expected["defaultLineups"][0]
    if file.startswith(("dexie-head", "exportdata")):
        # Periods and final states became clock presses: the matches show as finished.
        statuses = {(await club.get(f"/api/matches/{m['id']}"))["match"]["status"] for m in matches}
        assert statuses == {"finished"}


async def test_importing_again_and_then_the_plain_dump_adds_nothing(
    club: Club, tmp_path: Path
) -> None:
    first = await run(club, FIXTURES / "dexie-v3-small.json")
    assert first.returncode == 0, first.stderr
    log = await club.log()
    for file in ("dexie-v3-small.json", "plain-dump-small.json"):
        again = await run(club, FIXTURES / file, report=tmp_path / "again.json")
        assert again.returncode == 0, again.stderr
        report = json.loads((tmp_path / "again.json").read_text())
        assert report["changes_pushed"] == 0
        assert all(counts["imported"] == 0 for counts in report["tables"].values())
        assert report["tables"]["events"]["already_on_server"] == 67
        assert await club.log() == log


async def test_a_dry_run_writes_nothing_and_says_what_it_would_do(
    club: Club, tmp_path: Path
) -> None:
    log = await club.log()
    result = await run(
        club, FIXTURES / "dexie-head-small.json", "--dry-run", report=tmp_path / "r.json"
    )
    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing was written" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dry_run"] is True and report["changes_pushed"] == 0
    assert imported(report) == expected_imported("dexie-head-small.json")
    assert await club.log() == log


async def test_a_file_that_is_not_an_export_exits_2_with_one_line(
    club: Club, tmp_path: Path
) -> None:
    path = tmp_path / "photo.json"
    path.write_text('{"caption": "Cup final"}')
    result = await run(club, path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "touchline-import: error: photo.json is not an export of the app"
    )
    wrong = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [str(COMMAND), str(FIXTURES / "dexie-v3-small.json"), "--server", club.served.url,
             "--email", club.email, "--password", "not the password"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "login refused: 401 invalid-credentials" in wrong.stderr


async def test_rejected_rows_exit_1_and_everything_else_is_imported(
    club: Club, tmp_path: Path
) -> None:
    document = json.loads((FIXTURES / "plain-dump-small.json").read_text())
    document["events"][0]["kind"] = "dance"
    document["events"].append({"id": "event-x", "match_id": "1", "kind": "goal", "sentiment": 12})
    spoilt = tmp_path / "spoilt.json"
    spoilt.write_text(json.dumps(document))
    result = await run(club, spoilt, report=tmp_path / "r.json")
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(r["table"], r["id"], r["reason"]) for r in report["rejected"]] == [
        ("events", document["events"][0]["id"], "unknown-kind"),
        ("events", "event-x", "invalid-value"),
    ]
    assert report["tables"]["events"]["imported"] == 66
    assert "rejected events 'event-x': invalid-value" in result.stdout


async def test_a_coachs_later_edit_survives_a_reimport(club: Club) -> None:
    assert (await run(club, FIXTURES / "dexie-v3-small.json")).returncode == 0
    match = uuid.UUID("eb4b32fe-189a-4d45-aba5-95b88ee736bc")
    event = (await club.items(f"/api/matches/{match}/events"))[0]
    edited = await club.http.put(
        f"/api/events/{event['id']}",
        json={"notes": "Corrected on the touchline"},
        headers={"Authorization": f"Bearer {club.token}"},
    )
    assert edited.status_code == 200, edited.text
    assert (await run(club, FIXTURES / "plain-dump-small.json")).returncode == 0
    assert (await club.get(f"/api/events/{event['id']}"))["notes"] == "Corrected on the touchline"


async def test_an_import_cut_off_half_way_carries_on_where_the_server_stopped(
    club: Club, tmp_path: Path
) -> None:
    source = read_source(FIXTURES / "dexie-v3-small.json")
    async with httpx.AsyncClient(timeout=30) as http:
        upload = Upload(http, club.served.url, club.email, PASSWORD)
        tokens = await upload.login()
        plan = plan_import(source, tokens.club_id, file="dexie-v3-small.json")
        half = len(plan.records) // 2
        cut = type(plan)(plan.records[:half], plan.report)
        await upload.push(cut, await upload.read_state())
    result = await run(club, FIXTURES / "dexie-v3-small.json", report=tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    on_server = sum(counts["already_on_server"] for counts in report["tables"].values())
    assert on_server == sum(not record.derived for record in plan.records[:half])
    # Together the two runs hold exactly what one run would.
    events = [
        e
        for m in await club.items("/api/matches")
        for e in await club.items(f"/api/matches/{m['id']}/events", include_deleted="true")
    ]
    assert len(events) == 67 + 2
