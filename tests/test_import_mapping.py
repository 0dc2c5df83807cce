"""Mapping the app's exports to records: the counts, ids and quirks of the fixture README."""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from protocol.schema import TABLES, check_value
from tests.import_fixtures import EXPECTED, EXPORTS, FIXTURES, expected_imported
from touchline_import.mapping import ImportPlan, plan_import
from touchline_import.sources import Source, read_source, recognise
from touchline_import.values import stable_id

CLUB = uuid.UUID("3dfd91dc-2feb-4e6c-b91f-f7b02c331e2f")


def plan(file: str, club: uuid.UUID = CLUB) -> ImportPlan:
    return plan_import(read_source(FIXTURES / file), club, file=file)


def live_kinds(result: ImportPlan) -> Counter[str]:
    return Counter(
        str(r.fields["kind"])
        for r in result.records
        if r.table == "events" and not r.deleted and not r.derived
    )


@pytest.mark.parametrize("file", EXPORTS)
def test_each_export_maps_to_the_expected_counts(file: str) -> None:
    result = plan(file)
    report = result.report
    expected = EXPECTED[file]
    got = {
        table: (counts.imported, counts.of_which_deleted) for table, counts in report.tables.items()
    }
    assert got == expected_imported(file)
    assert (
        report.counts("events").skipped_as_duplicate == expected["skipped_as_duplicate"]["events"]
    )
    assert report.rejected == [] == expected["rejected"]
    assert report.assists_recovered_from_notes == expected["assists_recovered_from_notes"]
    assert live_kinds(result) == expected["live_events_by_kind"]
    references = expected["references"]
    assert report.warnings["placeholder_player_refs"] == references["placeholder_player_refs"]
    assert report.warnings["unresolved_player_refs"] == references["unresolved_player_refs"]
    assert report.warnings["unresolved_assist_refs"] == references.get("unresolved_assist_refs", 0)
    if "matches_with_unknown_season" in references:
        assert report.unknown_season_matches == references["matches_with_unknown_season"]
    assert report.not_imported_tables == expected.get("not_imported_tables", {})
    assert dict(report.guest_owned_rows) == expected.get("guest_owned_rows", {})


@pytest.mark.parametrize("file", EXPORTS)
def test_every_record_is_valid_for_the_server(file: str) -> None:
    for record in plan(file).records:
        spec = TABLES[record.table]
        for name, value in record.fields.items():
            assert check_value(spec.fields[name], value) is None, (record, name)
        assert all(name in record.fields for name, f in spec.fields.items() if f.required)


def test_the_same_rows_map_to_the_same_ids_in_every_run_and_format() -> None:
    v3, again, plain = (
        plan("dexie-v3-small.json"),
        plan("dexie-v3-small.json"),
        plan("plain-dump-small.json"),
    )
    ids = {(r.table, r.id) for r in v3.records}
    assert (
        ids == {(r.table, r.id) for r in again.records} == {(r.table, r.id) for r in plain.records}
    )
    assert len(ids) == len(v3.records), "two rows mapped to one record"
    # The later schema holds the same events under the same ids.
    head = {(r.table, r.id) for r in plan("dexie-head-small.json").records if r.table == "events"}
    assert {key for key in ids if key[0] == "events"} == head
    # Another club gets other ids for non-UUID rows, the same for UUID ones.
    other = {(r.table, r.id) for r in plan("dexie-v3-small.json", uuid.uuid4()).records}
    assert ("matches", uuid.UUID("eb4b32fe-189a-4d45-aba5-95b88ee736bc")) in ids & other
    assert ("matches", stable_id(CLUB, "matches", "1")) in ids - other


def test_non_uuid_ids_derive_from_the_club_the_table_and_the_old_id() -> None:
    assert stable_id(CLUB, "teams", "1") == uuid.uuid5(CLUB, "teams:1")
    assert stable_id(CLUB, "teams", "1") != stable_id(CLUB, "players", "1")
    assert stable_id(CLUB, "events", "event-1757151347460-15nq63d31") == uuid.uuid5(
        CLUB, "events:event-1757151347460-15nq63d31"
    )
    upper = "EB4B32FE-189A-4D45-ABA5-95B88EE736BC"
    assert stable_id(CLUB, "matches", upper) == uuid.UUID(upper.lower())


def test_outbox_only_events_take_their_last_content_and_a_final_delete_archives_them() -> None:
    records = {r.id: r for r in plan("dexie-v3-small.json").records}
    goal = records[stable_id(CLUB, "events", "event_1757152243139_ebdym9vnx")]
    assert goal.fields["kind"] == "goal" and not goal.deleted
    assert goal.fields["created_at"] == "2025-09-06T09:50:43.099Z"  # the payload's `created`
    deleted = records[stable_id(CLUB, "events", "event-1757760406269-5rekfsp6o")]
    assert deleted.deleted and deleted.fields["kind"] == "ball_won"
    own_goal = records[stable_id(CLUB, "events", "event_1757152241591_f273bduhd")]
    assert own_goal.fields["sentiment"] == -2 and "player_id" not in own_goal.fields


def test_an_assist_in_a_goals_notes_becomes_an_assist_linked_to_the_goal() -> None:
    records = {r.id: r for r in plan("dexie-v3-small.json").records}
    goal_id = stable_id(CLUB, "events", "event_1757152243139_ebdym9vnx")
    assist = records[stable_id(CLUB, "events", "event_1757152243139_ebdym9vnx:assist")]
    assert assist.derived and assist.fields["kind"] == "assist"
    assert assist.fields["related_event_id"] == str(goal_id)
    assert assist.fields["player_id"] == "098441ca-cb82-42d8-9e79-8d0843501860"
    goal = records[goal_id]
    assert {k: goal.fields[k] for k in ("match_id", "period_number", "clock_ms")} == {
        k: assist.fields[k] for k in ("match_id", "period_number", "clock_ms")
    }
    # The marker leaves the notes; what the coach typed stays.
    assert "notes" not in goal.fields
    typed = records[stable_id(CLUB, "events", "event_1757152028641_36owwk82z")]
    assert typed.fields["notes"] == "keeper came off his line"


def test_epoch_milliseconds_become_timestamps_and_typeson_undefined_is_absent() -> None:
    records = {(r.table, r.id): r for r in plan("dexie-head-small.json").records}
    event = records[("events", uuid.UUID("0df69681-5cd6-4d58-9fd9-0945db3a6b96"))]
    assert "notes" not in event.fields  # `notes: 0` with $types undef is undefined, not 0
    match = records[("matches", stable_id(CLUB, "matches", "1"))]
    assert match.fields["kickoff_ts"] == "2025-09-06T09:30:00.000Z"
    v3 = {(r.table, r.id): r for r in plan("dexie-v3-small.json").records}
    assert v3[("matches", stable_id(CLUB, "matches", "1"))].fields["kickoff_ts"] == (
        "2025-09-06T09:30:00.000Z"  # kickoff_ts 1757151000000 in the older schema
    )


def test_soft_deleted_rows_are_archived_not_dropped() -> None:
    result = plan("dexie-head-small.json")
    deleted = Counter(r.source_table for r in result.records if r.deleted and not r.derived)
    assert deleted == {"events": 2, "lineup": 1, "matchNotes": 1}


def test_periods_and_final_states_become_clock_actions_in_time_order() -> None:
    actions = [r for r in plan("dexie-head-small.json").records if r.table == "clock_actions"]
    by_match: dict[object, list[str]] = {}
    for record in actions:
        by_match.setdefault(record.fields["match_id"], []).append(str(record.fields["action"]))
    assert sorted(map(tuple, by_match.values())) == [
        ("start", "end_period", "start_period", "end_period", "finish"),
        ("start", "end_period", "start_period", "end_period", "start_period", "end_period",
         "start_period", "end_period", "finish"),
    ]  # fmt: skip
    times = [str(r.fields["at"]) for r in actions]
    assert times == sorted(times)


def test_legacy_match_settings_give_the_format_and_length() -> None:
    records = {(r.table, r.id): r for r in plan("exportdata-v1-small.json").records}
    demo = records[("matches", stable_id(CLUB, "matches", "1"))].fields
    league = records[("matches", uuid.UUID("eb4b32fe-189a-4d45-aba5-95b88ee736bc"))].fields
    assert (demo["period_format"], demo["duration_mins"]) == ("quarter", 50)
    assert (league["period_format"], league["duration_mins"]) == ("half", 50)
    # We were away in the league match: our score is the away score.
    assert (league["our_score"], league["opponent_score"]) == (3, 2)
    assert (demo["competition"], demo["our_score"]) == ("Friendly", 4)


def _v3_with(change: Any) -> Source:
    document = json.loads((FIXTURES / "dexie-v3-small.json").read_text())
    change({block["tableName"]: block["rows"] for block in document["data"]["data"]})
    return recognise(copy.deepcopy(document))


def test_bad_rows_are_reported_with_a_reason_and_the_rest_is_imported() -> None:
    def spoil(tables: dict[str, list[Any]]) -> None:
        events = tables["events"]
        events[0]["kind"] = "dance"
        events[1]["sentiment"] = 9
        events[2]["match_id"] = None
        events.append("not a row")
        tables["players"][0].pop("full_name")
        tables["teams"].append({"name": "No id"})

    result = plan_import(_v3_with(spoil), CLUB, file="spoilt.json")
    reasons = sorted((r.table, r.reason) for r in result.report.rejected)
    assert reasons == [
        ("events", "invalid-value"),
        ("events", "missing-field"),
        ("events", "not-an-object"),
        ("events", "unknown-kind"),
        ("players", "missing-field"),
        ("teams", "missing-id"),
    ]
    assert result.report.exit_code == 1
    by_reason = {r.reason: r for r in result.report.rejected}
    assert by_reason["invalid-value"].detail.startswith("sentiment: must be <= 4")
    assert by_reason["unknown-kind"].id == "0df69681-5cd6-4d58-9fd9-0945db3a6b96"
    counts = result.report.counts("events")
    assert (counts.imported, counts.rejected) == (67 - 3, 4)
    assert result.report.counts("players").imported == 8


def test_values_the_export_could_not_decode_are_warned_about() -> None:
    def blob(tables: dict[str, Any]) -> None:
        tables["events"][0]["$types"] = {"notes": "blob2"}

    result = plan_import(_v3_with(blob), CLUB, file="blob.json")
    assert result.report.warnings["undecoded_blob2_values"] == 1
    assert result.report.as_json()["warnings"]["undecoded_blob2_values"] == 1
