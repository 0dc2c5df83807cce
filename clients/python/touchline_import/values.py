"""Turning the app's stored values into the field values the sync protocol accepts.

The app wrote times as epoch milliseconds (older schema) or ISO strings (later schema), ids
that are not always UUIDs, and numbers where text was meant. Each converter returns the
protocol's value or raises :class:`Refused` with a reason code and what was wrong.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

from protocol.schema import TABLES, Scalar, check_value

__all__ = [
    "PLACEHOLDER_PLAYERS",
    "Refused",
    "as_bool",
    "as_date",
    "as_float",
    "as_int",
    "as_text",
    "as_timestamp",
    "json_object",
    "pick",
    "stable_id",
    "validated",
]

PLACEHOLDER_PLAYERS: Final = frozenset({"anon", "unknown", ""})
"""Player ids the app used for "no player" (``anon``: MatchConsole; ``unknown``: GoalModal
with an empty roster; ``''``: team-level events of the later schema)."""

_UUID_TEXT = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


class Refused(Exception):
    """A row that cannot be imported, with the reason code of the report."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def stable_id(club_id: uuid.UUID, table: str, old_id: str | int) -> uuid.UUID:
    """The server id of a source row: its own id when that is a UUID, otherwise
    ``uuid5(club_id, "<table>:<old id>")``, so the same row of the same club always maps to
    the same record, whichever export it comes from and however often it is imported."""
    text = str(old_id).strip()
    if _UUID_TEXT.match(text):
        return uuid.UUID(text)
    return uuid.uuid5(club_id, f"{table}:{text}")


def pick(row: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``row`` with a value other than null."""
    for name in names:
        value = row.get(name)
        if value is not None:
            return value
    return None


def as_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and math.isfinite(value):
        return _number_text(value)
    raise Refused("invalid-value", f"{field}: expected text, got {_kind(value)}")


def as_int(value: Any, field: str) -> int | None:
    number = as_float(value, field)
    if number is None:
        return None
    if not number.is_integer():
        raise Refused("invalid-value", f"{field}: expected a whole number, got {value!r}")
    return int(number)


def as_float(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise Refused("invalid-value", f"{field}: expected a number, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise Refused("invalid-value", f"{field}: expected a number, got {value!r}") from None
    if not isinstance(value, int | float):
        raise Refused("invalid-value", f"{field}: expected a number, got {_kind(value)}")
    if isinstance(value, float) and math.isnan(value):
        # NaN is how the app stored "no value" in a number field (a plain dump writes null).
        return None
    if not math.isfinite(value):
        raise Refused("invalid-value", f"{field}: expected a finite number, got {value}")
    return float(value)


def as_bool(value: Any, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise Refused("invalid-value", f"{field}: expected true or false, got {value!r}")


def as_timestamp(value: Any, field: str) -> str | None:
    """Epoch milliseconds or an ISO string, as an RFC 3339 UTC timestamp."""
    if value is None or value == "":
        return None
    moment: datetime
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None if math.isnan(value) else _bad_time(field, value)
        try:
            moment = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return _bad_time(field, value)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return _bad_time(field, value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    else:
        return _bad_time(field, value)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_date(value: Any, field: str) -> str | None:
    """``YYYY-MM-DD`` from a date, an ISO timestamp or epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise Refused("invalid-value", f"{field}: not a date: {value!r}") from None
    stamp = as_timestamp(value, field)
    return stamp[:10] if stamp is not None else None


def json_object(value: Any, field: str) -> dict[str, Any]:
    """An object the app stored as JSON text (the legacy records' settings, results)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise Refused("invalid-value", f"{field}: not valid JSON text") from None
        if isinstance(parsed, dict):
            return parsed
    raise Refused("invalid-value", f"{field}: expected a JSON object")


def validated(table: str, fields: dict[str, Any]) -> dict[str, Scalar]:
    """``fields`` without absent values, checked against the protocol's table spec exactly as
    the server will check them, so that a push is refused for no row the report let through."""
    spec = TABLES[table]
    clean: dict[str, Scalar] = {name: value for name, value in fields.items() if value is not None}
    for name, field_spec in spec.fields.items():
        if field_spec.required and name not in clean:
            raise Refused("missing-field", f"{name}: required, but absent or empty")
    for name, value in clean.items():
        problem = check_value(spec.fields[name], value)
        if problem is not None:
            raise Refused("invalid-value", f"{name}: {problem} (got {value!r})")
    return clean


def _bad_time(field: str, value: Any) -> str:
    raise Refused("invalid-value", f"{field}: not a time: {value!r}")


def _number_text(value: int | float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
