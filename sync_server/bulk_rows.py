"""Writing many rows at once: the seam between the store and each database's fastest path.

SQLAlchemy's executemany processes every parameter of every row in Python, which was a
quarter of the server's CPU on a push. On PostgreSQL a whole batch goes instead as one
``INSERT ... SELECT * FROM unnest($1::type[], ...)``: one round trip, one array per column,
encoded by asyncpg in C. SQLite keeps SQLAlchemy's path (its cost is in the driver thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

Row = dict[str, Any]
_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class BulkRows(Protocol):
    async def insert(self, conn: AsyncConnection, table: Table, rows: Sequence[Row]) -> None:
        """Insert ``rows`` (every row has every column of ``table``)."""
        ...

    async def upsert(self, conn: AsyncConnection, table: Table, rows: Sequence[Row]) -> None:
        """Insert ``rows``, replacing every non-key column of rows whose key exists."""
        ...


class CoreBulkRows:
    """SQLAlchemy Core executemany with the dialect's ``ON CONFLICT``."""

    def __init__(self, dialect: str) -> None:
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    async def insert(self, conn: AsyncConnection, table: Table, rows: Sequence[Row]) -> None:
        await conn.execute(insert(table), list(rows))

    async def upsert(self, conn: AsyncConnection, table: Table, rows: Sequence[Row]) -> None:
        statement = self._insert(table)
        keys = {c.name for c in table.primary_key.columns}
        statement = statement.on_conflict_do_update(
            index_elements=list(table.primary_key.columns),
            set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys},
        )
        await conn.execute(statement, list(rows))


class PostgresBulkRows:
    """One ``unnest`` statement per batch, sent through the asyncpg connection underneath
    SQLAlchemy's, inside the same transaction."""

    def __init__(self, schema: str | None) -> None:
        self._prefix = f'"{schema}".' if schema else ""

    async def insert(self, conn: AsyncConnection, table: Table, rows: Sequence[Row]) -> None:
        await self._execute(conn, _insert_sql(self._prefix, table), table, rows)

    async def upsert(self, conn: AsyncConnection, table: Table, rows: Sequence[Row]) -> None:
        await self._execute(conn, _upsert_sql(self._prefix, table), table, rows)

    async def _execute(
        self, conn: AsyncConnection, sql: str, table: Table, rows: Sequence[Row]
    ) -> None:
        if not rows:
            return
        columns = [[row[column.name] for row in rows] for column in table.columns]
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute(sql, *columns)  # type: ignore[union-attr]


@cache
def _insert_sql(prefix: str, table: Table) -> str:
    names = ", ".join(f'"{column.name}"' for column in table.columns)
    arrays = ", ".join(
        f"${position}::{_pg_type(column.type)}[]"
        for position, column in enumerate(table.columns, start=1)
    )
    return f'INSERT INTO {prefix}"{table.name}" ({names}) SELECT * FROM unnest({arrays})'


@cache
def _upsert_sql(prefix: str, table: Table) -> str:
    keys = [column.name for column in table.primary_key.columns]
    updates = ", ".join(
        f'"{column.name}" = EXCLUDED."{column.name}"'
        for column in table.columns
        if column.name not in keys
    )
    conflict = ", ".join(f'"{key}"' for key in keys)
    return f"{_insert_sql(prefix, table)} ON CONFLICT ({conflict}) DO UPDATE SET {updates}"


def _pg_type(column_type: TypeEngine[Any]) -> str:
    # The dialect class's constructor is untyped in SQLAlchemy's stubs.
    return column_type.compile(dialect=_PG_DIALECT)
