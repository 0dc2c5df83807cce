"""Loads a match's merged records and hands them to the pure viewer view (protocol.viewer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol import merge, viewer
from protocol.schema import Scalar
from sync_server import tables
from sync_server.db import reading


async def load_match_view(
    engine: AsyncEngine, club_id: uuid.UUID, match_id: uuid.UUID, now_ms: int
) -> viewer.MatchView | None:
    """The viewer's view of a match, or None when the club has no such live match."""
    async with reading(engine) as conn:
        match_state = await _state(conn, tables.matches, club_id, match_id)
        if match_state is None or match_state.is_deleted:
            return None
        match = match_state.values()
        events = [
            (record_id, state.values())
            for record_id, state in await _by_match(conn, tables.events, club_id, match_id)
            if not state.is_deleted
        ]
        actions = [
            state for _, state in await _by_match(conn, tables.clock_actions, club_id, match_id)
        ]
        player_ids = {_uuid(values.get("player_id")) for _, values in events} - {None}
        players = await _values(conn, tables.players, club_id, player_ids)
        team_ids = {_uuid(match.get("home_team_id")), _uuid(match.get("away_team_id"))}
        team_ids |= {_uuid(values.get("team_id")) for _, values in events}
        team_ids |= {_uuid(values.get("current_team")) for values in players.values()}
        teams = await _values(conn, tables.teams, club_id, team_ids - {None})
    return viewer.match_view(
        match_id,
        match,
        teams=teams,
        players=players,
        events=events,
        clock_actions=actions,
        now_ms=now_ms,
    )


async def _state(
    conn: AsyncConnection, table: Table, club_id: uuid.UUID, record_id: uuid.UUID
) -> merge.RecordState | None:
    raw = (
        await conn.execute(
            select(table.c.sync_state).where(table.c.club_id == club_id, table.c.id == record_id)
        )
    ).scalar_one_or_none()
    return None if raw is None else merge.decode_state(raw)


async def _by_match(
    conn: AsyncConnection, table: Table, club_id: uuid.UUID, match_id: uuid.UUID
) -> list[tuple[uuid.UUID, merge.RecordState]]:
    rows = await conn.execute(
        select(table.c.id, table.c.sync_state).where(
            table.c.club_id == club_id, table.c.match_id == match_id
        )
    )
    return [(row.id, merge.decode_state(row.sync_state)) for row in rows]


async def _values(
    conn: AsyncConnection, table: Table, club_id: uuid.UUID, ids: Iterable[uuid.UUID | None]
) -> dict[str, dict[str, Scalar]]:
    wanted = [record_id for record_id in ids if record_id is not None]
    if not wanted:
        return {}
    rows = await conn.execute(
        select(table.c.id, table.c.sync_state).where(
            table.c.club_id == club_id, table.c.id.in_(wanted)
        )
    )
    return {str(row.id): merge.decode_state(row.sync_state).values() for row in rows}


def _uuid(value: Scalar) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if isinstance(value, str) else None
    except ValueError:
        return None
