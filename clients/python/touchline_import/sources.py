"""Reading an export of the app's IndexedDB: which format it is, and its rows, decoded.

Four shapes exist in the wild (tests/fixtures/indexeddb/README.md describes each):

- a dexie-export-import file (``{"formatName": "dexie", "data": {...}}``) of the older
  snake_case schema (tables ``events``, ``outbox``, ``match_notes``);
- the same of the later camelCase schema (``matchNotes``, ``isDeleted`` flags);
- the app's own ``ExportData`` (``{"metadata": {"version": ...}, "matches": [...], ...}``);
- a plain ``{"table": [rows]}`` dump, of either schema.

Dexie exports encode what JSON cannot hold with Typeson: a row's ``$types`` maps key paths to
type names and the value at each path is a placeholder. :func:`revive` undoes that, so an
``undefined`` property becomes absent instead of the placeholder ``0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

__all__ = ["NotAnExport", "Source", "read_source", "revive"]

Schema = Literal["snake", "camel", "exportdata"]

# Tables that exist only in one generation of the app's schema.
SNAKE_ONLY: Final = frozenset({"outbox", "match_notes", "sync_metadata"})
CAMEL_ONLY: Final = frozenset(
    {
        "matchNotes",
        "playerTeams",
        "matchPeriods",
        "matchState",
        "defaultLineups",
        "syncMetadata",
        "syncFailures",
        "globalStats",
    }
)
SHARED: Final = frozenset(
    {"teams", "players", "seasons", "matches", "events", "lineup", "settings"}
)
KNOWN_TABLES: Final = SNAKE_ONLY | CAMEL_ONLY | SHARED

FORMAT_NAMES: Final[Mapping[str, str]] = {
    "dexie-snake": "Dexie export, snake_case schema (app database v1-v3)",
    "dexie-camel": "Dexie export, camelCase schema (app database v4 and later)",
    "exportdata": "the app's ExportData file",
    "plain-snake": "plain table dump, snake_case schema",
    "plain-camel": "plain table dump, camelCase schema",
}


class NotAnExport(Exception):
    """The file cannot be read as an export of the app: the import cannot run at all."""


@dataclass(frozen=True, slots=True)
class Source:
    """An export's rows, table by table, with Typeson markers already decoded."""

    format: str
    """One of :data:`FORMAT_NAMES`."""
    schema: Schema
    tables: dict[str, list[Any]]
    database_version: int | None = None
    undecoded: dict[str, int] = field(default_factory=dict)
    """Typeson types met that cannot be decoded (blobs, maps): type name -> count."""

    @property
    def description(self) -> str:
        return FORMAT_NAMES[self.format]


def read_source(path: Path) -> Source:
    """Read and recognise an export; raises :class:`NotAnExport` with a one-line reason."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise NotAnExport(f"cannot read {path}: {error.strerror or error}") from error
    try:
        document = json.loads(raw)
    except UnicodeDecodeError as error:
        raise NotAnExport(f"{path.name} is not text (UTF-8 JSON expected)") from error
    except json.JSONDecodeError as error:
        raise NotAnExport(
            f"{path.name} is not JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from error
    return recognise(document, name=path.name)


def recognise(document: Any, *, name: str = "the file") -> Source:
    """Tell which of the four formats ``document`` (parsed JSON) is, and extract its rows."""
    if not isinstance(document, dict):
        raise NotAnExport(f"{name} holds a JSON {_json_type(document)}, not an export object")
    if document.get("formatName") == "dexie":
        return _dexie(document, name)
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and "version" in metadata:
        return _export_data(document, name)
    tables = {key: rows for key, rows in document.items() if isinstance(rows, list)}
    if tables and set(tables) & KNOWN_TABLES and len(tables) == len(document):
        undecoded: dict[str, int] = {}
        schema = _schema_of(set(tables))
        return Source(
            format=f"plain-{schema}",
            schema=schema,
            tables={key: [revive(row, undecoded) for row in rows] for key, rows in tables.items()},
            undecoded=undecoded,
        )
    raise NotAnExport(
        f"{name} is not an export of the app: expected a Dexie export, the app's ExportData "
        "or a {table: [rows]} dump of grassroots_db"
    )


def _dexie(document: Mapping[str, Any], name: str) -> Source:
    body = document.get("data")
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise NotAnExport(f"{name} is a Dexie export without table data")
    undecoded: dict[str, int] = {}
    tables: dict[str, list[Any]] = {}
    for block in body["data"]:
        if not isinstance(block, dict) or not isinstance(block.get("tableName"), str):
            raise NotAnExport(f"{name} is a damaged Dexie export: a table block has no name")
        rows = block.get("rows")
        if not isinstance(rows, list):
            raise NotAnExport(f"{name}: table {block['tableName']!r} has no rows array")
        # Out-of-line keys are exported as [key, value] pairs; the app's tables are all
        # in-line, but a pair is unwrapped rather than misread.
        inbound = block.get("inbound", True) is not False
        tables[block["tableName"]] = [
            revive(row if inbound else _unpair(row), undecoded) for row in rows
        ]
    found = set(tables)
    if not found & KNOWN_TABLES:
        database = body.get("databaseName")
        raise NotAnExport(
            f"{name} is a Dexie export of {database!r} with none of the app's tables"
            if database
            else f"{name} is a Dexie export with none of the app's tables"
        )
    version = body.get("databaseVersion")
    schema = _schema_of(found)
    return Source(
        format=f"dexie-{schema}",
        schema=schema,
        tables=tables,
        database_version=version if isinstance(version, int) else None,
        undecoded=undecoded,
    )


def _export_data(document: Mapping[str, Any], name: str) -> Source:
    tables = {
        key: rows for key, rows in document.items() if key != "metadata" and isinstance(rows, list)
    }
    if not tables:
        raise NotAnExport(f"{name} is an ExportData file without any table")
    return Source(
        format="exportdata",
        schema="exportdata",
        tables=tables,
    )


def _schema_of(tables: set[str]) -> Literal["snake", "camel"]:
    if tables & CAMEL_ONLY:
        return "camel"
    return "snake"


def _unpair(row: Any) -> Any:
    if isinstance(row, list) and len(row) == 2:
        return row[1]
    return row


def revive(row: Any, undecoded: dict[str, int] | None = None) -> Any:
    """A row with its Typeson ``$types`` applied and removed.

    ``undef`` removes the property (JavaScript ``undefined``); ``nan`` and the infinities
    become floats; ``date`` stays epoch milliseconds (how every other time in these files is
    written); ``bigint`` becomes an int; array markers are no-ops. Types that cannot be
    decoded are left as they are and counted in ``undecoded``.
    """
    if not isinstance(row, dict) or "$types" not in row:
        return row
    types = row["$types"]
    revived = {key: value for key, value in row.items() if key != "$types"}
    if not isinstance(types, dict):
        return revived
    # Deepest paths first, so a parent's marker applies after its children's.
    for path in sorted(types, key=lambda p: p.count("."), reverse=True):
        kind = types[path]
        if isinstance(kind, str):
            _apply(revived, path.split("."), kind, undecoded)
    return revived


_NO_OP: Final = frozenset({"arrayNonindexKeys", "array", "object"})


def _apply(
    row: dict[str, Any], path: list[str], kind: str, undecoded: dict[str, int] | None
) -> None:
    parent: Any = row
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            return
    last = path[-1]
    if last not in parent or kind in _NO_OP:
        return
    value = parent[last]
    if kind == "undef":
        del parent[last]
    elif kind == "nan":
        parent[last] = math.nan
    elif kind == "infinity":
        parent[last] = math.inf
    elif kind == "negativeInfinity":
        parent[last] = -math.inf
    elif kind == "date" and _is_number(value):
        parent[last] = value
    elif kind == "bigint" and isinstance(value, str | int):
        try:
            parent[last] = int(value)
        except ValueError:
            _count(undecoded, kind)
    else:
        _count(undecoded, kind)


def _count(undecoded: dict[str, int] | None, kind: str) -> None:
    if undecoded is not None:
        undecoded[kind] = undecoded.get(kind, 0) + 1


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"
