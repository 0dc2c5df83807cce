"""From an export's rows to the records the server should hold: pure, no I/O.

:func:`plan_import` reads a :class:`~touchline_import.sources.Source` and returns the records
to create (each with a stable id, see :func:`~touchline_import.values.stable_id`) and a
report of what every source table gave. It applies the app's quirks as
tests/fixtures/indexeddb/README.md describes them:

- an event both in ``events`` and in the ``outbox`` is one event (the table wins); an
  outbox-only event takes its content from its last outbox row, and a final ``DELETE`` means
  it was deleted;
- deleted rows (outbox deletes, ``isDeleted`` flags) are imported archived, restorable;
- ``(Assist: <player id>)`` in a goal's notes becomes an assist event linked to the goal;
- ``anon``, ``unknown``, ``''`` and null player ids mean "no player" (a warning), and
  references to rows the export does not hold are warnings, never errors;
- match periods and match states become clock actions, so the server derives the clock.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from protocol.schema import EVENT_KINDS, Scalar, TableName
from touchline_import.report import ImportReport
from touchline_import.sources import Source
from touchline_import.values import (
    PLACEHOLDER_PLAYERS,
    Refused,
    as_bool,
    as_date,
    as_float,
    as_int,
    as_text,
    as_timestamp,
    json_object,
    pick,
    stable_id,
    validated,
)

__all__ = ["ImportPlan", "ImportRecord", "plan_import"]

_ASSIST = re.compile(r"\s*\(Assist: ([^)]+)\)")

# Device bookkeeping: never imported (the outbox is read only as a source of events).
BOOKKEEPING: Final = frozenset(
    {"outbox", "sync_metadata", "syncMetadata", "syncFailures", "globalStats"}
)
# Records are created in this order, so that a device pulling mid-import sees teams and
# players before the events naming them.
_TABLE_ORDER: Final[tuple[TableName, ...]] = (
    "teams",
    "players",
    "seasons",
    "player_teams",
    "default_lineups",
    "app_settings",
    "matches",
    "lineup",
    "match_notes",
    "events",
    "clock_actions",
)
_CLOCK_ORDER: Final = {
    "start": 0,
    "end_period": 1,
    "start_period": 2,
    "pause": 3,
    "finish": 4,
    "abandon": 5,
    "postpone": 6,
}
_STATE_ACTIONS: Final = {
    "COMPLETED": "finish",
    "FINISHED": "finish",
    "ABANDONED": "abandon",
    "CANCELLED": "abandon",
    "POSTPONED": "postpone",
    "PAUSED": "pause",
}


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One record to create on the server."""

    table: TableName
    id: uuid.UUID
    fields: dict[str, Scalar]
    deleted: bool
    """Create it and then archive it: deleted in the app, restorable on the server."""
    source_table: str
    """The source table the report counts it under."""
    source_id: str | int | None
    derived: bool = False
    """Made from another row (an assist from a goal's notes, a clock action from a period);
    counted in ``derived_records``, not as an imported row."""
    at: str = ""
    """Clock actions only: their time, which orders them (the server replays them in the
    order of their HLCs, which follow push order)."""


@dataclass(frozen=True, slots=True)
class ImportPlan:
    records: list[ImportRecord]
    report: ImportReport


def plan_import(source: Source, club_id: uuid.UUID, *, file: str) -> ImportPlan:
    """Every record ``source`` holds, mapped for the club ``club_id``, and the report."""
    report = ImportReport(file=file, format=source.format, format_description=source.description)
    # Values the export encoded in a way this tool cannot read (blobs, maps) stay as they were
    # written; say so rather than import them silently.
    for kind, count in source.undecoded.items():
        report.warnings[f"undecoded_{kind}_values"] += count
    mapper = _Mapper(source, club_id, report)
    mapper.run()
    order = {table: rank for rank, table in enumerate(_TABLE_ORDER)}
    records = sorted(
        mapper.records,
        key=lambda r: (order[r.table], r.at, _CLOCK_ORDER.get(str(r.fields.get("action")), 9)),
    )
    return ImportPlan(records, report)


Row = Mapping[str, Any]
_Mapping = Callable[[Row], dict[str, Any]]


class _Mapper:
    def __init__(self, source: Source, club_id: uuid.UUID, report: ImportReport) -> None:
        self.source = source
        self.club = club_id
        self.report = report
        self.records: list[ImportRecord] = []
        self.camel = source.schema == "camel"
        tables = source.tables
        # Raw ids present in the export, to tell a dangling reference from a good one.
        self.known: dict[str, set[str]] = {
            "teams": self._ids(tables, "teams", "team_id", "id", "teamId"),
            "players": self._ids(tables, "players", "id", "player_id", "playerId"),
            "seasons": self._ids(tables, "seasons", "season_id", "id", "seasonId"),
            "matches": self._ids(tables, "matches", "match_id", "id", "matchId"),
        }
        self.our_teams = self._our_teams()

    # -- the whole export -------------------------------------------------------------------

    def run(self) -> None:
        tables = self.source.tables
        for name, rows in tables.items():
            if name in BOOKKEEPING:
                self.report.not_imported_tables[name] = len(rows)
            elif name not in _READERS:
                self.report.unknown_tables.append(name)
                self.report.not_imported_tables[name] = len(rows)
        for name, reader in _READERS.items():
            if name in tables:
                self.report.counts(name)
                for row in tables[name]:
                    reader(self, name, row)
        if self.source.schema != "exportdata":
            self._outbox_only(tables.get("outbox", []), tables.get("events", []))

    def _ids(self, tables: Mapping[str, list[Any]], table: str, *keys: str) -> set[str]:
        return {
            str(found)
            for row in tables.get(table, [])
            if isinstance(row, dict) and (found := pick(row, *keys)) is not None
        }

    def _our_teams(self) -> set[str]:
        """Teams that are ours: marked as not an opponent, or with players on them."""
        ours: set[str] = set()
        for row in self.source.tables.get("teams", []):
            if isinstance(row, dict) and row.get("isOpponent", row.get("is_opponent")) is False:
                ours.add(str(pick(row, "team_id", "id", "teamId")))
        if not ours:
            for row in self.source.tables.get("players", []):
                if isinstance(row, dict):
                    team = pick(row, "current_team", "currentTeam", "team_id", "teamId")
                    if team is not None:
                        ours.add(str(team))
        return ours

    # -- one row ----------------------------------------------------------------------------

    def add(
        self,
        source_table: str,
        row: Any,
        table: TableName,
        id_keys: tuple[str, ...],
        mapping: _Mapping,
        *,
        old_id: str | int | None = None,
        deleted: bool | None = None,
    ) -> ImportRecord | None:
        """Map one row; a refused row is reported with its reason, never dropped."""
        if not isinstance(row, dict):
            self.report.reject(source_table, None, "not-an-object", f"a {type(row).__name__}")
            return None
        if old_id is None:
            old_id = pick(row, *id_keys)
        if old_id is None or old_id == "":
            self.report.reject(source_table, None, "missing-id", f"none of {', '.join(id_keys)}")
            return None
        try:
            fields = validated(table, mapping(row))
        except Refused as refused:
            self.report.reject(source_table, old_id, refused.reason, refused.detail)
            return None
        if deleted is None:
            deleted = row.get("isDeleted") is True or row.get("is_deleted") is True
        record = ImportRecord(
            table,
            stable_id(self.club, table, old_id),
            fields,
            deleted,
            source_table,
            old_id,
        )
        self.records.append(record)
        counts = self.report.counts(source_table)
        counts.imported += 1
        counts.of_which_deleted += deleted
        owner = row.get("createdByUserId")
        if isinstance(owner, str) and owner.startswith("guest-"):
            self.report.guest_owned_rows[source_table] += 1
        return record

    def derive(self, record: ImportRecord) -> None:
        self.records.append(record)
        self.report.derived_records[record.table] += 1

    def ref(self, table: str, raw: Any, field: str) -> str | None:
        """The server id a reference points to; a dangling one is kept and warned about."""
        if raw is None or raw == "":
            return None
        text = as_text(raw, field)
        assert text is not None
        if table in self.source.tables and text not in self.known[table]:
            self.report.warnings[f"unresolved_{table[:-1]}_refs"] += 1
            self.report.unresolved_refs.append({"field": field, "id": text})
        return str(stable_id(self.club, table, text))

    def player(self, raw: Any, field: str) -> str | None:
        if raw is None or (isinstance(raw, str) and raw.strip() in PLACEHOLDER_PLAYERS):
            self.report.warnings["placeholder_player_refs"] += 1
            return None
        return self.ref("players", raw, field)

    # -- tables -----------------------------------------------------------------------------

    def team(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            return {
                "name": as_text(pick(row, "name"), "name"),
                "short_name": as_text(pick(row, "short_name", "shortName"), "short_name"),
                "is_opponent": as_bool(pick(row, "is_opponent", "isOpponent"), "is_opponent"),
                "color": as_text(
                    pick(row, "color", "color_primary", "colorPrimary", "homeKitPrimary"), "color"
                ),
                "notes": as_text(pick(row, "notes"), "notes"),
            }

        self.add(name, row, "teams", ("team_id", "id", "teamId"), fields)

    def player_row(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            return {
                "full_name": as_text(pick(row, "full_name", "name", "fullName"), "full_name"),
                "squad_number": as_int(
                    pick(row, "squad_number", "squadNumber", "jersey_number", "jerseyNumber"),
                    "squad_number",
                ),
                "preferred_pos": as_text(
                    pick(row, "preferred_pos", "preferredPosition", "preferredPos", "position"),
                    "preferred_pos",
                ),
                "dob": as_date(pick(row, "dob", "dateOfBirth"), "dob"),
                "notes": as_text(pick(row, "notes"), "notes"),
                "current_team": self.ref(
                    "teams",
                    pick(row, "current_team", "currentTeam", "team_id", "teamId"),
                    "current_team",
                ),
            }

        self.add(name, row, "players", ("id", "player_id", "playerId"), fields)

    def season(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            return {
                "label": as_text(pick(row, "label", "name"), "label"),
                "start_date": as_date(pick(row, "start_date", "startDate"), "start_date"),
                "end_date": as_date(pick(row, "end_date", "endDate"), "end_date"),
                "is_current": as_bool(pick(row, "is_current", "isCurrent"), "is_current"),
            }

        self.add(name, row, "seasons", ("season_id", "id", "seasonId"), fields)

    def match(self, name: str, row: Any) -> None:
        record = self.add(name, row, "matches", ("match_id", "id", "matchId"), self._match_fields)
        if record is not None and self.source.schema == "exportdata":
            self._legacy_clock(record, row)

    def _match_fields(self, row: Row) -> dict[str, Any]:
        settings = json_object(row.get("settings"), "settings")
        result = json_object(row.get("result"), "result")
        about = json_object(row.get("metadata"), "metadata")
        season = pick(row, "season_id", "seasonId")
        if (
            "seasons" in self.source.tables
            and season is not None
            and (str(season) not in self.known["seasons"])
        ):
            self.report.unknown_season_matches.append(str(pick(row, "match_id", "id", "matchId")))
        home, away = (
            pick(row, "home_team_id", "homeTeamId"),
            pick(row, "away_team_id", "awayTeamId"),
        )
        duration = pick(row, "duration_mins", "durationMinutes", "durationMins")
        periods = as_int(settings.get("total_periods"), "settings.total_periods")
        if duration is None and periods and settings.get("period_duration") is not None:
            length = as_float(settings["period_duration"], "settings.period_duration")
            duration = round((length or 0) * periods) or None
        period_format = pick(row, "period_format", "periodFormat")
        if period_format is None and periods in (2, 4):
            period_format = "half" if periods == 2 else "quarter"
        ours, theirs = self._scores(row, result, home, away)
        return {
            "season_id": self.ref("seasons", season, "season_id") if season else None,
            "kickoff_ts": as_timestamp(
                pick(row, "kickoff_ts", "kickoffTime", "kickoff_time", "date"), "kickoff_ts"
            ),
            "competition": as_text(
                pick(row, "competition") or about.get("competition"), "competition"
            ),
            "home_team_id": self.ref("teams", home, "home_team_id"),
            "away_team_id": self.ref("teams", away, "away_team_id"),
            "venue": as_text(pick(row, "venue") or about.get("venue"), "venue"),
            "duration_mins": as_int(duration, "duration_mins"),
            "period_format": as_text(period_format, "period_format"),
            "our_score": ours,
            "opponent_score": theirs,
            "notes": as_text(pick(row, "notes"), "notes"),
        }

    def _scores(
        self, row: Row, result: Mapping[str, Any], home: Any, away: Any
    ) -> tuple[int | None, int | None]:
        ours = as_int(pick(row, "our_score", "ourScore"), "our_score")
        theirs = as_int(pick(row, "opponent_score", "opponentScore"), "opponent_score")
        if ours is not None or theirs is not None:
            return ours, theirs
        home_score = as_int(
            pick(row, "homeScore", "home_score") or result.get("home_score"), "home_score"
        )
        away_score = as_int(
            pick(row, "awayScore", "away_score") or result.get("away_score"), "away_score"
        )
        if str(home) in self.our_teams:
            return home_score, away_score
        if str(away) in self.our_teams:
            return away_score, home_score
        return None, None

    def event(
        self, name: str, row: Any, *, old_id: str | int | None = None, deleted: bool | None = None
    ) -> None:
        record = self.add(
            name, row, "events", ("id",), self._event_fields, old_id=old_id, deleted=deleted
        )
        if record is None or record.deleted or record.fields.get("kind") != "goal":
            return
        notes = row.get("notes") if isinstance(row, dict) else None
        found = _ASSIST.search(notes) if isinstance(notes, str) else None
        if found is None:
            return
        self.report.assists_recovered_from_notes += 1
        assist: dict[str, Scalar] = {
            key: record.fields[key]
            for key in (
                "match_id",
                "season_id",
                "period_number",
                "clock_ms",
                "team_id",
                "created_at",
            )
            if key in record.fields
        }
        assist.update(kind="assist", related_event_id=str(record.id))
        assister = found.group(1).strip()
        if assister not in PLACEHOLDER_PLAYERS:
            if "players" in self.source.tables and assister not in self.known["players"]:
                self.report.warnings["unresolved_assist_refs"] += 1
                self.report.unresolved_refs.append({"field": "assist", "id": assister})
            assist["player_id"] = str(stable_id(self.club, "players", assister))
        assert record.source_id is not None
        self.derive(
            ImportRecord(
                "events",
                stable_id(self.club, "events", f"{record.source_id}:assist"),
                validated("events", assist),
                False,
                name,
                record.source_id,
                derived=True,
            )
        )

    def _event_fields(self, row: Row) -> dict[str, Any]:
        kind = as_text(pick(row, "kind"), "kind")
        if kind is not None and kind not in EVENT_KINDS:
            raise Refused("unknown-kind", f"kind: {kind!r} is not an event kind")
        match = pick(row, "match_id", "matchId")
        notes = as_text(row.get("notes"), "notes")
        if notes is not None:
            # The assist becomes its own event; what the coach typed stays.
            notes = _ASSIST.sub("", notes).strip() or None
        linked = pick(row, "linked_events", "linkedEvents")
        related = linked[0] if isinstance(linked, list) and linked else None
        spot = row.get("coordinates")
        spot = spot if isinstance(spot, dict) else {}
        season = pick(row, "season_id", "seasonId")
        return {
            "match_id": self.ref("matches", match, "match_id"),
            "season_id": self.ref("seasons", season, "season_id"),
            "period_number": as_int(pick(row, "period_number", "periodNumber"), "period_number"),
            "clock_ms": as_int(pick(row, "clock_ms", "clockMs"), "clock_ms"),
            "kind": kind,
            "team_id": self.ref("teams", pick(row, "team_id", "teamId"), "team_id"),
            "player_id": self.player(
                pick(row, "player_id", "playerId")
                if "player_id" in row or "playerId" in row
                else None,
                "player_id",
            ),
            "related_event_id": (
                str(stable_id(self.club, "events", related)) if related is not None else None
            ),
            "notes": notes,
            "sentiment": as_int(pick(row, "sentiment"), "sentiment"),
            "x": as_float(spot.get("x"), "coordinates.x"),
            "y": as_float(spot.get("y"), "coordinates.y"),
            "created_at": as_timestamp(
                pick(row, "created_at", "createdAt", "created", "ts_server"), "created_at"
            ),
        }

    def event_row(self, name: str, row: Any) -> None:
        if self.source.schema != "exportdata":
            self.event(name, row)
            return
        # ExportData's events are outbox records {id: row number, payload}: the payload has
        # no event id, so one derives from the row number and the time the coach logged the
        # event. Both stay the same in every export of one phone (the export's own time
        # would not), so exporting again later and importing that adds nothing.
        if not isinstance(row, dict) or not isinstance(row.get("payload"), dict):
            self.report.reject(
                name,
                row.get("id") if isinstance(row, dict) else None,
                "not-an-object",
                "an outbox record without a payload",
            )
            return
        number = row.get("id")
        if number is None:
            self.report.reject(name, None, "missing-id", "an outbox record without its id")
            return
        logged = row["payload"].get("created", row.get("created_at", ""))
        self.event(name, row["payload"], old_id=f"exportdata:{number}:{logged}")

    def lineup(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            raw_player = pick(row, "player_id", "playerId")
            return {
                "match_id": self.ref("matches", pick(row, "match_id", "matchId"), "match_id"),
                "player_id": self.player(raw_player, "player_id"),
                "start_min": as_float(pick(row, "start_min", "startMinute"), "start_min"),
                "end_min": as_float(pick(row, "end_min", "endMinute"), "end_min"),
                "position": as_text(pick(row, "position"), "position"),
            }

        self.add(name, row, "lineup", ("id",), fields)

    def match_note(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            return {
                "match_id": self.ref("matches", pick(row, "match_id", "matchId"), "match_id"),
                "period_number": as_int(
                    pick(row, "period_number", "periodNumber"), "period_number"
                ),
                "note_text": as_text(
                    pick(row, "notes", "note_text", "noteText", "text"), "note_text"
                ),
                "created_at": as_timestamp(pick(row, "created_at", "createdAt"), "created_at"),
            }

        self.add(name, row, "match_notes", ("match_note_id", "matchNoteId", "id"), fields)

    def setting(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            value = row.get("value")
            return {
                "key": as_text(row.get("key"), "key"),
                "value": value if isinstance(value, str) or value is None else json.dumps(value),
            }

        self.add(name, row, "app_settings", ("key",), fields)

    def player_team(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            return {
                "player_id": self.ref("players", pick(row, "playerId", "player_id"), "player_id"),
                "team_id": self.ref("teams", pick(row, "teamId", "team_id"), "team_id"),
                "start_date": as_date(pick(row, "startDate", "start_date"), "start_date"),
                "end_date": as_date(pick(row, "endDate", "end_date"), "end_date"),
                "is_active": as_bool(pick(row, "isActive", "is_active"), "is_active"),
            }

        self.add(name, row, "player_teams", ("id",), fields)

    def default_lineup(self, name: str, row: Any) -> None:
        def fields(row: Row) -> dict[str, Any]:
            spots = row.get("formation")
            if spots is not None and not isinstance(spots, list):
                raise Refused("invalid-value", "formation: expected an array")
            formation = [
                {
                    "player_id": self.ref(
                        "players", pick(spot, "playerId", "player_id"), "formation"
                    ),
                    "position": as_text(spot.get("position"), "formation.position"),
                    "x": as_float(pick(spot, "pitchX", "x"), "formation.x"),
                    "y": as_float(pick(spot, "pitchY", "y"), "formation.y"),
                }
                for spot in spots or []
                if isinstance(spot, dict)
            ]
            return {
                "team_id": self.ref("teams", pick(row, "teamId", "team_id"), "team_id"),
                "formation": json.dumps(formation, separators=(",", ":")),
            }

        self.add(name, row, "default_lineups", ("id",), fields)

    # -- the clock: periods and states become clock actions ---------------------------------

    def match_period(self, name: str, row: Any) -> None:
        """A period (started, maybe ended) is the clock presses that started and ended it."""

        def fields(row: Row) -> dict[str, Any]:
            number = as_int(pick(row, "periodNumber", "period_number"), "period_number")
            return {
                "match_id": self.ref("matches", pick(row, "matchId", "match_id"), "match_id"),
                "action": "start" if (number or 1) <= 1 else "start_period",
                "at": as_timestamp(pick(row, "startedAt", "started_at"), "startedAt"),
                "period_number": number,
            }

        record = self.add(name, row, "clock_actions", ("id",), fields)
        if record is None:
            return
        self.records[-1] = _timed(record)
        ended = as_timestamp(pick(row, "endedAt", "ended_at"), "endedAt")
        if ended is not None:
            end = {**record.fields, "action": "end_period", "at": ended}
            self.derive(
                _timed(
                    ImportRecord(
                        "clock_actions",
                        stable_id(self.club, "clock_actions", f"{record.source_id}:end"),
                        end,
                        record.deleted,
                        name,
                        record.source_id,
                        derived=True,
                    )
                )
            )

    def match_state(self, name: str, row: Any) -> None:
        """A final state (completed, abandoned, postponed, paused) is one more press."""
        if not isinstance(row, dict):
            self.report.reject(name, None, "not-an-object", f"a {type(row).__name__}")
            return
        match = pick(row, "matchId", "match_id")
        status = str(row.get("status") or "").upper()
        action = _STATE_ACTIONS.get(status)
        at = as_timestamp(pick(row, "lastUpdatedAt", "updatedAt"), "lastUpdatedAt")
        if match is None:
            self.report.reject(name, None, "missing-id", "none of matchId, match_id")
            return
        if action is None or at is None:
            # Not started, or running: the periods already say so.
            self.report.counts(name).imported += 1
            return
        self.add(
            name,
            row,
            "clock_actions",
            ("matchId", "match_id"),
            lambda row: {
                "match_id": self.ref("matches", match, "match_id"),
                "action": action,
                "at": at,
            },
            old_id=f"state:{match}",
        )
        self.records[-1] = _timed(self.records[-1])

    def _legacy_clock(self, match: ImportRecord, row: Row) -> None:
        """ExportData keeps each period's start and the time run in the current one: the
        match is started, each next period starts when the previous one is ended, and a
        completed match is finished when its last period had run its time."""
        if str(row.get("status") or "") != "completed":
            return
        try:
            clock = json_object(row.get("clock_state"), "clock_state")
            starts = sorted(
                (int(number), as_timestamp(at, "period_starts"))
                for number, at in dict(clock.get("period_starts") or {}).items()
            )
            offset = as_int(clock.get("offset_ms"), "offset_ms") or 0
        except (Refused, ValueError, TypeError):
            self.report.warnings["matches_without_readable_clock"] += 1
            return
        presses: list[tuple[str, str | None, int]] = []
        for number, at in starts:
            if number > 1:
                presses.append(("end_period", at, number - 1))
            presses.append(("start" if number == 1 else "start_period", at, number))
        if starts:
            last_number, last_at = starts[-1]
            last_ms = _ms(last_at)
            if last_ms is not None:
                presses.append(("finish", as_timestamp(last_ms + offset, "finish"), last_number))
        for index, (action, at, number) in enumerate(presses):
            if at is None:
                continue
            fields = {
                "match_id": str(match.id),
                "action": action,
                "at": at,
                "period_number": number,
            }
            self.derive(
                _timed(
                    ImportRecord(
                        "clock_actions",
                        stable_id(self.club, "clock_actions", f"{match.source_id}:{index}"),
                        validated("clock_actions", fields),
                        False,
                        "matches",
                        match.source_id,
                        derived=True,
                    )
                )
            )

    # -- the outbox: events the events table never received ---------------------------------

    def _outbox_only(self, outbox: Iterable[Any], events: Iterable[Any]) -> None:
        in_table = {str(row.get("id")) for row in events if isinstance(row, dict)}
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for row in outbox:
            if isinstance(row, dict) and row.get("table_name") == "events":
                groups.setdefault(str(row.get("record_id")), []).append(row)
        counts = self.report.counts("events")
        for record_id, rows in groups.items():
            if record_id in in_table:
                counts.skipped_as_duplicate += len(rows)
                continue
            rows.sort(key=_outbox_order)
            content = [r for r in rows if isinstance(r.get("data") or r.get("payload"), dict)]
            deleted = str(rows[-1].get("operation", "")).upper() == "DELETE"
            if not content:
                self.report.reject(
                    "outbox",
                    record_id,
                    "no-content",
                    f"{len(rows)} outbox row(s) without the event's data",
                )
                continue
            last = content[-1]
            self.event(
                "events", last.get("data") or last.get("payload"), old_id=record_id, deleted=deleted
            )
            counts.skipped_as_duplicate += len(rows) - 1


def _outbox_order(row: Mapping[str, Any]) -> float:
    number = row.get("id")
    return float(number) if isinstance(number, int | float) else 0.0


def _timed(record: ImportRecord) -> ImportRecord:
    return ImportRecord(
        record.table,
        record.id,
        record.fields,
        record.deleted,
        record.source_table,
        record.source_id,
        record.derived,
        str(record.fields.get("at", "")),
    )


def _ms(stamp: str | None) -> int | None:
    if stamp is None:
        return None
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


_READERS: Final[Mapping[str, Callable[[_Mapper, str, Any], None]]] = {
    "teams": _Mapper.team,
    "players": _Mapper.player_row,
    "seasons": _Mapper.season,
    "matches": _Mapper.match,
    "events": _Mapper.event_row,
    "lineup": _Mapper.lineup,
    "match_notes": _Mapper.match_note,
    "matchNotes": _Mapper.match_note,
    "settings": _Mapper.setting,
    "playerTeams": _Mapper.player_team,
    "defaultLineups": _Mapper.default_lineup,
    "matchPeriods": _Mapper.match_period,
    "matchState": _Mapper.match_state,
}
