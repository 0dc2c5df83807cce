"""The app's IndexedDB exports (tests/fixtures/indexeddb) and what importing each must give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

FIXTURES: Final = Path(__file__).parent / "fixtures" / "indexeddb"
EXPORTS: Final = (
    "dexie-v3-small.json",
    "plain-dump-small.json",
    "dexie-head-small.json",
    "exportdata-v1-small.json",
)
EXPECTED: Final[dict[str, Any]] = json.loads((FIXTURES / "expected-small.json").read_text())[
    "files"
]


def expected_imported(file: str) -> dict[str, tuple[int, int]]:
    """Source table -> (imported, of which deleted), as expected-small.json states it."""
    counts: dict[str, tuple[int, int]] = {}
    for table, value in EXPECTED[file]["imported"].items():
        if isinstance(value, dict):
            counts[table] = (value["imported"], value["of_which_deleted"])
        else:
            deleted = EXPECTED[file].get("events_breakdown", {}).get("deleted_total", 0)
            counts[table] = (value, deleted if table == "events" else 0)
    return counts


def expected_live_kinds(file: str) -> dict[str, int]:
    """Live events by kind once imported: the file's own, plus one assist per goal whose
    notes named one."""
    kinds = dict(EXPECTED[file]["live_events_by_kind"])
    kinds["assist"] = kinds.get("assist", 0) + EXPECTED[file]["assists_recovered_from_notes"]
    return kinds
