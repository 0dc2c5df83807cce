"""The checks a local edit must pass before it enters the outbox.

They mirror the server's validation (``protocol.ingest``), so a change the server would refuse
is refused at once, at the touchline, instead of blocking the outbox later: a refused change
set is refused as a whole, and every change after it waits behind it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from protocol import merge
from protocol.schema import TABLES, Scalar, TableSpec, check_value
from protocol.wire import Op

__all__ = ["InvalidChange", "check_edit"]


class InvalidChange(ValueError):
    """A local edit the server would refuse; nothing was recorded."""


def check_edit(
    table: str,
    record_id: uuid.UUID,
    op: Op,
    fields: Mapping[str, Scalar],
    current: merge.RecordState | None,
) -> None:
    """Raise :class:`InvalidChange` unless the edit is valid against the record's ``current``
    state (as the device sees it, pending changes included; None when it does not exist)."""
    spec = TABLES.get(table)
    if spec is None:
        raise InvalidChange(f"unknown table {table!r}; one of: {', '.join(TABLES)}")
    where = f"{table} {record_id}"
    if op != "upsert":
        if fields:
            raise InvalidChange(f"{op} carries no fields")
        if current is None:
            raise InvalidChange(f"cannot {op} {where}: no such record")
        return
    problems = _field_problems(spec, fields)
    if current is None:
        problems += [
            f"{name}: required to create the record"
            for name, field_spec in spec.fields.items()
            if field_spec.required and fields.get(name) is None
        ]
    else:
        for name, value in fields.items():
            existing = current.fields.get(name)
            field_spec = spec.fields.get(name)
            if field_spec is None or not field_spec.immutable or existing is None:
                continue
            if not merge.same_value(existing.value, value):
                problems.append(f"{name}: cannot change once set")
    if problems:
        raise InvalidChange(f"{where}: " + "; ".join(problems))


def _field_problems(spec: TableSpec, fields: Mapping[str, Scalar]) -> list[str]:
    problems: list[str] = []
    for name, value in fields.items():
        if not 1 <= len(name) <= 64:
            problems.append(f"{name!r}: field names have 1 to 64 characters")
            continue
        field_spec = spec.fields.get(name)
        problem = "unknown field" if field_spec is None else check_value(field_spec, value)
        if problem is not None:
            problems.append(f"{name}: {problem}")
    return problems
