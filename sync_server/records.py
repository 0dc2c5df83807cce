"""Reading and writing merged records for the REST API, through the same merge as sync.

A REST write is a change set recorded for the caller's *REST device* (its device id plus
``:rest``), stamped and merged exactly like a push, so REST and sync clients see one truth,
REST writes appear in pulls and the conflict ledger covers both. The REST device is separate
from the caller's sync device because the server numbers its changes: a device that also
pushes keeps its own dense sequence. A REST write has seen the club's whole log (its caller
read the server's state), so it overwrites that state causally; a later push that had not seen
it conflicts with it, as it would with any device's write.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Table, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol import merge
from protocol.ingest import PushRejected, ServerWrite
from protocol.schema import Scalar
from sync_server.auth import Principal
from sync_server.db import reading
from sync_server.problems import ProblemError
from sync_server.store import ChangeStore, RecordedChanges

__all__ = ["MAX_PAGE", "Page", "Records", "rest_device_id"]

REST_SUFFIX: Final = ":rest"
_DEVICE_ID_MAX: Final = 64
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
# "$.changes[2].fields.kind" -> "$.kind": errors name the REST body's fields, not the change's.
_CHANGE_FIELD: Final = re.compile(r"^\$\.changes\[\d+\]\.fields\.")


def rest_device_id(device_id: str) -> str:
    """The device a caller's REST writes are recorded under (at most 64 characters)."""
    if len(device_id) + len(REST_SUFFIX) <= _DEVICE_ID_MAX:
        return device_id + REST_SUFFIX
    return hashlib.sha256(device_id.encode()).hexdigest()[:40] + REST_SUFFIX


@dataclass(frozen=True, slots=True)
class Page:
    items: list[tuple[uuid.UUID, merge.RecordState]]
    next_cursor: str | None


def _not_found(table: str, record_id: uuid.UUID) -> ProblemError:
    noun = table.removesuffix("s").replace("_", " ")
    return ProblemError(
        404, "not-found", f"{noun.capitalize()} not found", f"no {noun} {record_id}"
    )


def _encode_cursor(record_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(record_id.bytes).decode().rstrip("=")


def _decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise ProblemError(
            400,
            "invalid-query",
            "Invalid cursor",
            "cursor must be a next_cursor value from an earlier page",
        ) from None


@dataclass(frozen=True, slots=True)
class Records:
    engine: AsyncEngine
    store: ChangeStore

    async def write(self, principal: Principal, writes: Sequence[ServerWrite]) -> RecordedChanges:
        """Record ``writes`` atomically as the caller's REST device; nothing on refusal."""
        try:
            async with self.store.transaction() as conn:
                return await self.store.record(
                    conn,
                    principal.club_id,
                    writes,
                    device_id=rest_device_id(principal.device_id),
                    causal=True,
                )
        except PushRejected as rejected:
            raise _rest_problem(rejected) from None

    async def state(
        self, club_id: uuid.UUID, table: Table, record_id: uuid.UUID
    ) -> merge.RecordState | None:
        async with reading(self.engine) as conn:
            return await read_state(conn, table, club_id, record_id)

    async def require(
        self,
        club_id: uuid.UUID,
        table: Table,
        record_id: uuid.UUID,
        *,
        include_deleted: bool = False,
    ) -> merge.RecordState:
        """The record's merged state; 404 when the club has none (or it is archived)."""
        state = await self.state(club_id, table, record_id)
        if state is None or (state.is_deleted and not include_deleted):
            raise _not_found(table.name, record_id)
        return state

    async def page(
        self,
        club_id: uuid.UUID,
        table: Table,
        *,
        where: Mapping[str, Any] | None = None,
        include_deleted: bool = False,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page:
        """One page of a table's records in a stable order (by id): following next_cursor
        visits every record that existed throughout, once, with no gaps."""
        if not 1 <= limit <= MAX_PAGE:
            raise ProblemError(
                400, "invalid-query", "Invalid limit", f"limit must be 1 to {MAX_PAGE}"
            )
        conditions = [table.c.club_id == club_id]
        conditions += [table.c[name] == value for name, value in (where or {}).items()]
        if not include_deleted:
            conditions.append(table.c.is_deleted.is_(False))
        if cursor is not None:
            conditions.append(table.c.id > _decode_cursor(cursor))
        query = (
            select(table.c.id, table.c.sync_state)
            .where(and_(*conditions))
            .order_by(table.c.id)
            .limit(limit + 1)
        )
        async with reading(self.engine) as conn:
            rows = (await conn.execute(query)).all()
        items = [(row.id, merge.decode_state(row.sync_state)) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1][0]) if more and items else None)

    async def values_by_id(
        self, club_id: uuid.UUID, table: Table, ids: Sequence[uuid.UUID]
    ) -> dict[str, dict[str, Scalar]]:
        """Current values of the given records, keyed by id as text (missing ids absent)."""
        if not ids:
            return {}
        async with reading(self.engine) as conn:
            return await read_values(conn, table, club_id, ids)


async def read_state(
    conn: AsyncConnection, table: Table, club_id: uuid.UUID, record_id: uuid.UUID
) -> merge.RecordState | None:
    """One record's merged state, or None when the club has no such record."""
    raw = (
        await conn.execute(
            select(table.c.sync_state).where(table.c.club_id == club_id, table.c.id == record_id)
        )
    ).scalar_one_or_none()
    return None if raw is None else merge.decode_state(raw)


async def read_values(
    conn: AsyncConnection, table: Table, club_id: uuid.UUID, ids: Iterable[uuid.UUID | None]
) -> dict[str, dict[str, Scalar]]:
    """Current values of the given records, keyed by id as text (missing ids absent)."""
    wanted = [record_id for record_id in ids if record_id is not None]
    if not wanted:
        return {}
    rows = await conn.execute(
        select(table.c.id, table.c.sync_state).where(
            table.c.club_id == club_id, table.c.id.in_(wanted)
        )
    )
    return {str(row.id): merge.decode_state(row.sync_state).values() for row in rows}


def _rest_problem(rejected: PushRejected) -> ProblemError:
    extensions = dict(rejected.extensions)
    errors = extensions.pop("errors", None)
    if isinstance(errors, list):
        extensions["errors"] = [
            {**error, "field": _CHANGE_FIELD.sub("$.", str(error.get("field", "$")))}
            for error in errors
        ]
    if rejected.code == "invalid-change-set":
        # The REST caller sent a body, not a change set: the same rules, its own words.
        return ProblemError(
            422,
            "validation-failed",
            "Request failed validation",
            _CHANGE_FIELD.sub("$.", rejected.detail),
            **extensions,
        )
    return ProblemError(
        rejected.status, rejected.code, rejected.title, rejected.detail, **extensions
    )
