"""Loads a match's merged records and hands them to the pure views (protocol.viewer,
protocol.derive): the viewer's view, the coach's view, the score and the lineup."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from protocol import derive, merge, relay, viewer
from protocol.schema import VIEWER_NAMES, Scalar
from sync_server import tables
from sync_server.db import reading
from sync_server.records import read_state, read_values

Values = dict[str, Scalar]


@dataclass(frozen=True, slots=True)
class MatchRecords:
    """One match's merged records, as the derived views need them."""

    match_id: uuid.UUID
    match: Values
    deleted: bool
    events: list[tuple[uuid.UUID, Values]]
    """Live events only."""
    clock_actions: list[merge.RecordState]
    players: dict[str, Values]
    """Every player an event (or, when loaded, a lineup row) names, by id as text."""
    teams: dict[str, Values]
    lineup: list[tuple[uuid.UUID, Values]] = field(default_factory=list)
    """Live lineup rows, when asked for."""
    viewer_names: str = viewer.DEFAULT_NAMING
    """The club's viewer naming setting (a team's own setting overrides it)."""

    def view(
        self, now_ms: int, *, full_names: bool = False, recent: int = viewer.RECENT_EVENTS
    ) -> viewer.MatchView:
        """The mobile view; viewer-safe names unless ``full_names`` (coaches only), with the
        ``recent`` newest events."""
        return viewer.match_view(
            self.match_id,
            self.match,
            teams=self.teams,
            players=self.players,
            events=self.events,
            clock_actions=self.clock_actions,
            now_ms=now_ms,
            recent=recent,
            full_names=full_names,
            default_naming=self.viewer_names,
        )

    def clock(self, now_ms: int) -> derive.ClockState:
        format_ = self.match.get("period_format")
        return derive.clock(
            self.clock_actions,
            period_format=format_ if isinstance(format_, str) else None,
            now_ms=now_ms,
        )

    def score(self) -> derive.Score:
        return derive.score(self.match, (values for _, values in self.events))


async def load_match_records(
    engine: AsyncEngine,
    club_id: uuid.UUID,
    match_id: uuid.UUID,
    *,
    include_deleted: bool = False,
    lineup: bool = False,
) -> MatchRecords | None:
    """The match's records, or None when the club has no such match (or it is archived and
    ``include_deleted`` is false). ``lineup`` also loads the lineup rows and their players."""
    async with reading(engine) as conn:
        match_state = await read_state(conn, tables.matches, club_id, match_id)
        if match_state is None or (match_state.is_deleted and not include_deleted):
            return None
        match = match_state.values()
        events = [
            (record_id, state.values())
            for record_id, state in await by_match(conn, tables.events, club_id, match_id)
            if not state.is_deleted
        ]
        actions = [
            state for _, state in await by_match(conn, tables.clock_actions, club_id, match_id)
        ]
        rows = (
            [
                (record_id, state.values())
                for record_id, state in await by_match(conn, tables.lineup, club_id, match_id)
                if not state.is_deleted
            ]
            if lineup
            else []
        )
        player_ids = {_uuid(values.get("player_id")) for _, values in (*events, *rows)}
        players = await read_values(conn, tables.players, club_id, player_ids)
        team_ids = {_uuid(match.get("home_team_id")), _uuid(match.get("away_team_id"))}
        team_ids |= {_uuid(values.get("team_id")) for _, values in events}
        team_ids |= {_uuid(values.get("current_team")) for values in players.values()}
        teams = await read_values(conn, tables.teams, club_id, team_ids)
        naming = await viewer_naming(conn, club_id)
    return MatchRecords(
        match_id=match_id,
        match=match,
        deleted=match_state.is_deleted,
        events=events,
        clock_actions=actions,
        players=players,
        teams=teams,
        lineup=rows,
        viewer_names=naming,
    )


async def viewer_naming(conn: AsyncConnection, club_id: uuid.UUID) -> str:
    """The club's viewer naming setting, or the default."""
    settings = await read_state(conn, tables.club_settings, club_id, club_id)
    # Archived settings count as none, as GET /api/clubs/{id}/settings answers them.
    if settings is None or settings.is_deleted:
        return viewer.DEFAULT_NAMING
    naming = settings.values().get("viewer_names")
    return naming if isinstance(naming, str) and naming in VIEWER_NAMES else viewer.DEFAULT_NAMING


async def load_match_replica(
    engine: AsyncEngine, club_id: uuid.UUID, match_id: uuid.UUID
) -> relay.MatchReplica | None:
    """The relay's replica of a match: its records' merged states and the names it shows,
    or None when the club has no such match."""
    async with reading(engine) as conn:
        match_state = await read_state(conn, tables.matches, club_id, match_id)
        if match_state is None:
            return None
        states: list[tuple[str, uuid.UUID, merge.RecordState]] = [
            ("matches", match_id, match_state)
        ]
        for table in (tables.events, tables.clock_actions):
            found = await by_match(conn, table, club_id, match_id)
            states.extend((table.name, record_id, state) for record_id, state in found)
        replica = relay.MatchReplica(
            match_id, states, players={}, teams={}, naming=await viewer_naming(conn, club_id)
        )
        await fill_names(conn, club_id, replica)
    return replica


async def fill_names(
    conn: AsyncConnection, club_id: uuid.UUID, replica: relay.MatchReplica
) -> None:
    """Load the players and teams the replica's view names and it lacks. Ids the club does
    not have are remembered as empty, so they are not asked for again."""
    players, _ = replica.missing()
    if players:
        found = await read_values(conn, tables.players, club_id, players)
        replica.players.update({str(p): found.get(str(p), {}) for p in players})
    _, teams = replica.missing()
    if teams:
        found = await read_values(conn, tables.teams, club_id, teams)
        replica.teams.update({str(t): found.get(str(t), {}) for t in teams})
    replica.named()


async def refresh_names(
    engine: AsyncEngine, club_id: uuid.UUID, replica: relay.MatchReplica, *, everything: bool
) -> None:
    """After club-wide changes (``everything``: names may have changed) or new references."""
    async with reading(engine) as conn:
        if everything:
            replica.forget_names()
            replica.naming = await viewer_naming(conn, club_id)
        await fill_names(conn, club_id, replica)


async def load_match_view(
    engine: AsyncEngine,
    club_id: uuid.UUID,
    match_id: uuid.UUID,
    now_ms: int,
    *,
    full_names: bool = False,
) -> viewer.MatchView | None:
    """The viewer's view of a match, or None when the club has no such live match.
    ``full_names`` shows players' full names: for coaches, never for family viewers."""
    records = await load_match_records(engine, club_id, match_id)
    return None if records is None else records.view(now_ms, full_names=full_names)


async def by_match(
    conn: AsyncConnection, table: Table, club_id: uuid.UUID, match_id: uuid.UUID
) -> list[tuple[uuid.UUID, merge.RecordState]]:
    rows = await conn.execute(
        select(table.c.id, table.c.sync_state).where(
            table.c.club_id == club_id, table.c.match_id == match_id
        )
    )
    return [(row.id, merge.decode_state(row.sync_state)) for row in rows]


def _uuid(value: Scalar) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if isinstance(value, str) else None
    except ValueError:
        return None
