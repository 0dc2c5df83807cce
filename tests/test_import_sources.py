"""Recognising the app's exports, decoding Typeson, and refusing what is not an export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.import_fixtures import FIXTURES
from touchline_import.sources import NotAnExport, read_source, recognise, revive


@pytest.mark.parametrize(
    ("file", "kind", "schema"),
    [
        ("dexie-v3-small.json", "dexie-snake", "snake"),
        ("dexie-head-small.json", "dexie-camel", "camel"),
        ("exportdata-v1-small.json", "exportdata", "exportdata"),
        ("plain-dump-small.json", "plain-snake", "snake"),
    ],
)
def test_every_format_is_recognised(file: str, kind: str, schema: str) -> None:
    source = read_source(FIXTURES / file)
    assert (source.format, source.schema) == (kind, schema)
    assert source.undecoded == {}


def test_dexie_exports_keep_table_order_and_version() -> None:
    source = read_source(FIXTURES / "dexie-v3-small.json")
    assert next(iter(source.tables)) == "outbox"
    assert source.database_version == 3
    assert len(source.tables["outbox"]) == 71


def test_typeson_markers_are_applied_and_removed() -> None:
    row = {
        "a": 0, "b": "NaN", "c": "Infinity", "d": "-Infinity", "e": 1757151000000, "f": "12",
        "g": [1, 2], "nested": {"h": 0, "keep": 1}, "blob": "…",
        "$types": {"a": "undef", "b": "nan", "c": "infinity", "d": "negativeInfinity",
                   "e": "date", "f": "bigint", "g": "arrayNonindexKeys", "nested.h": "undef",
                   "blob": "blob2"},
    }  # fmt: skip
    undecoded: dict[str, int] = {}
    revived = revive(row, undecoded)
    assert "a" not in revived and "$types" not in revived
    assert math.isnan(revived["b"]) and revived["c"] == math.inf and revived["d"] == -math.inf
    assert (revived["e"], revived["f"], revived["g"]) == (1757151000000, 12, [1, 2])
    assert revived["nested"] == {"keep": 1}
    assert undecoded == {"blob2": 1}
    assert row["a"] == 0, "the original row is left alone"


def test_the_v3_delete_rows_have_no_data_once_revived() -> None:
    outbox = read_source(FIXTURES / "dexie-v3-small.json").tables["outbox"]
    deletes = [row for row in outbox if row["operation"] == "DELETE"]
    assert len(deletes) == 2 and all("data" not in row for row in deletes)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"nope", "is not JSON (line 1, column 1"),
        (b"\xff\xfe\x00", "is not text"),
        (b"[1, 2]", "holds a JSON array, not an export object"),
        (b'{"hello": "world"}', "is not an export of the app"),
        (b'{"formatName": "dexie", "data": {}}', "is a Dexie export without table data"),
        (
            b'{"formatName": "dexie", "data": {"databaseName": "other", "data": '
            b'[{"tableName": "cats", "rows": []}]}}',
            "is a Dexie export of 'other' with none of the app's tables",
        ),
        (b'{"metadata": {"version": "1.0"}}', "is an ExportData file without any table"),
    ],
)
def test_what_is_not_an_export_is_refused_with_a_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(content)
    with pytest.raises(NotAnExport, match=None) as refused:
        read_source(path)
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotAnExport, match="cannot read"):
        read_source(tmp_path / "absent.json")


def test_out_of_line_rows_are_unwrapped() -> None:
    document = {
        "formatName": "dexie",
        "data": {"data": [{"tableName": "teams", "inbound": False, "rows": [["k", {"id": "1"}]]}]},
    }
    assert recognise(json.loads(json.dumps(document))).tables == {"teams": [{"id": "1"}]}
