"""The account of an import: what each source table gave, what was refused and why.

Counts are kept per **source** table (the app's own table names, ``matchNotes`` as well as
``match_notes``), because that is what a club admin recognises in their export.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["REASONS", "ImportReport", "Rejection", "TableCounts"]

REASONS: Final = {
    "not-an-object": "the row is not a JSON object",
    "missing-id": "the row has no id",
    "missing-field": "a field the server requires is absent or empty",
    "invalid-value": "a value the server would refuse (wrong type or out of range)",
    "unknown-kind": "an event kind the app never had",
    "no-content": "only a delete of a record whose content the export does not hold",
    "server-refused": "the server refused the record",
}
"""Every reason code a rejected row can carry."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that could not be imported."""

    table: str
    id: str | int | None
    reason: str
    """A key of :data:`REASONS`."""
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"table": self.table, "id": self.id, "reason": self.reason, "detail": self.detail}


@dataclass(slots=True)
class TableCounts:
    imported: int = 0
    """Records written to the server (or, in a dry run, that would be)."""
    of_which_deleted: int = 0
    """Imported archived: deleted in the app, restorable on the server."""
    skipped_as_duplicate: int = 0
    """Rows that repeat a record already counted (outbox copies) or already on the server."""
    already_on_server: int = 0
    """Of the duplicates: records a previous import (or another device) already wrote."""
    rejected: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "imported": self.imported,
            "of_which_deleted": self.of_which_deleted,
            "skipped_as_duplicate": self.skipped_as_duplicate,
            "already_on_server": self.already_on_server,
            "rejected": self.rejected,
        }


@dataclass(slots=True)
class ImportReport:
    """Filled by mapping (what the file holds) and then by the upload (what the server took)."""

    file: str
    format: str
    format_description: str
    tables: dict[str, TableCounts] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    not_imported_tables: dict[str, int] = field(default_factory=dict)
    """Device bookkeeping (outboxes, sync metadata) and tables the app never had."""
    unknown_tables: list[str] = field(default_factory=list)
    assists_recovered_from_notes: int = 0
    """Goals whose notes named an assist; each became an assist event linked to the goal."""
    warnings: Counter[str] = field(default_factory=Counter)
    unknown_season_matches: list[str] = field(default_factory=list)
    unresolved_refs: list[dict[str, str]] = field(default_factory=list)
    guest_owned_rows: Counter[str] = field(default_factory=Counter)
    derived_records: Counter[str] = field(default_factory=Counter)
    """Records made from others: assist events, clock actions from periods and states."""
    dry_run: bool = False
    server: str | None = None
    club_id: str | None = None
    device_id: str | None = None
    changes_pushed: int = 0

    def counts(self, table: str) -> TableCounts:
        return self.tables.setdefault(table, TableCounts())

    def reject(self, table: str, row_id: str | int | None, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        self.counts(table).rejected += 1
        self.rejected.append(Rejection(table, row_id, reason, detail))

    @property
    def exit_code(self) -> int:
        """0: everything imported or skipped as duplicate; 1: some rows were rejected."""
        return 1 if self.rejected else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "format_description": self.format_description,
            "dry_run": self.dry_run,
            "server": self.server,
            "club_id": self.club_id,
            "device_id": self.device_id,
            "tables": {name: counts.as_json() for name, counts in self.tables.items()},
            "rejected": [rejection.as_json() for rejection in self.rejected],
            "assists_recovered_from_notes": self.assists_recovered_from_notes,
            "derived_records": dict(self.derived_records),
            "not_imported_tables": self.not_imported_tables,
            "unknown_tables": self.unknown_tables,
            "warnings": {
                **dict(self.warnings),
                "matches_with_unknown_season": self.unknown_season_matches,
                "unresolved_refs": self.unresolved_refs,
            },
            "guest_owned_rows": dict(self.guest_owned_rows),
            "changes_pushed": self.changes_pushed,
            "exit_code": self.exit_code,
        }
