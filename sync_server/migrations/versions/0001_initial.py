"""Initial schema: merged domain tables, clubs, devices, the change log and conflicts.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Written by hand to match `sync_server.tables`; tests/test_migrations.py compares the two.
Tables are created without a schema: on PostgreSQL the connection's schema translate map puts
them in the configured schema.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in sync_server.tables: the change log's sequence key is INTEGER on SQLite.
_SEQUENCE_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _uuid(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Uuid(as_uuid=True), nullable=nullable)


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _domain_columns() -> dict[str, tuple[list[sa.Column[Any]], bool]]:
    """Table name -> (typed columns, whether it is indexed by (club_id, match_id))."""
    return {
        "teams": (
            [
                sa.Column("name", sa.Text()),
                sa.Column("short_name", sa.Text()),
                sa.Column("is_opponent", sa.Boolean()),
                sa.Column("color", sa.Text()),
                sa.Column("notes", sa.Text()),
            ],
            False,
        ),
        "players": (
            [
                sa.Column("full_name", sa.Text()),
                sa.Column("squad_number", sa.Integer()),
                sa.Column("preferred_pos", sa.Text()),
                sa.Column("dob", sa.Date()),
                sa.Column("notes", sa.Text()),
                _uuid("current_team"),
            ],
            False,
        ),
        "seasons": (
            [
                sa.Column("label", sa.Text()),
                sa.Column("start_date", sa.Date()),
                sa.Column("end_date", sa.Date()),
                sa.Column("is_current", sa.Boolean()),
            ],
            False,
        ),
        "matches": (
            [
                _uuid("season_id"),
                _timestamp("kickoff_ts"),
                sa.Column("competition", sa.Text()),
                _uuid("home_team_id"),
                _uuid("away_team_id"),
                sa.Column("venue", sa.Text()),
                sa.Column("duration_mins", sa.Integer()),
                sa.Column("period_format", sa.Text()),
                sa.Column("our_score", sa.Integer()),
                sa.Column("opponent_score", sa.Integer()),
                sa.Column("notes", sa.Text()),
            ],
            False,
        ),
        "events": (
            [
                _uuid("match_id"),
                _uuid("season_id"),
                sa.Column("period_number", sa.Integer()),
                sa.Column("clock_ms", sa.BigInteger()),
                sa.Column("kind", sa.Text()),
                _uuid("team_id"),
                _uuid("player_id"),
                _uuid("related_event_id"),
                sa.Column("notes", sa.Text()),
                sa.Column("sentiment", sa.Integer()),
                sa.Column("x", sa.Float()),
                sa.Column("y", sa.Float()),
                _timestamp("created_at"),
            ],
            True,
        ),
        "lineup": (
            [
                _uuid("match_id"),
                _uuid("player_id"),
                sa.Column("start_min", sa.Float()),
                sa.Column("end_min", sa.Float()),
                sa.Column("position", sa.Text()),
            ],
            True,
        ),
        "match_notes": (
            [
                _uuid("match_id"),
                sa.Column("period_number", sa.Integer()),
                sa.Column("note_text", sa.Text()),
                _timestamp("created_at"),
            ],
            True,
        ),
        "clock_actions": (
            [
                _uuid("match_id"),
                sa.Column("action", sa.Text()),
                _timestamp("at"),
                sa.Column("period_number", sa.Integer()),
            ],
            True,
        ),
    }


def _create_domain_table(name: str, columns: list[sa.Column[Any]], by_match: bool) -> None:
    op.create_table(
        name,
        _uuid("club_id", nullable=False),
        _uuid("id", nullable=False),
        *columns,
        sa.Column("sync_state", sa.Text(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        _timestamp("deleted_at"),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("club_id", "id", name=f"pk_{name}"),
    )
    if by_match:
        op.create_index(f"ix_{name}_club_id_match_id", name, ["club_id", "match_id"])


def upgrade() -> None:
    for name, (columns, by_match) in _domain_columns().items():
        _create_domain_table(name, columns, by_match)

    op.create_table(
        "clubs",
        _uuid("id", nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("log_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("max_hlc", sa.Text()),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clubs"),
    )
    op.create_table(
        "devices",
        _uuid("club_id", nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_hlc", sa.Text()),
        _timestamp("created_at", nullable=False),
        _timestamp("last_push_at"),
        sa.PrimaryKeyConstraint("club_id", "id", name="pk_devices"),
        sa.ForeignKeyConstraint(["club_id"], ["clubs.id"], name="fk_devices_club_id_clubs"),
        sa.CheckConstraint("length(id) BETWEEN 1 AND 64", name="ck_devices_id_length"),
    )
    op.create_table(
        "change_log",
        _uuid("club_id", nullable=False),
        sa.Column("server_seq", _SEQUENCE_KEY, nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("device_seq", sa.BigInteger(), nullable=False),
        sa.Column("hlc", sa.Text(), nullable=False),
        sa.Column("sent_hlc", sa.Text(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        _uuid("record_id", nullable=False),
        _uuid("match_id"),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        _timestamp("received_at", nullable=False),
        sa.PrimaryKeyConstraint("club_id", "server_seq", name="pk_change_log"),
        sa.UniqueConstraint(
            "club_id", "device_id", "device_seq", name="uq_change_log_club_id_device_id_device_seq"
        ),
    )
    op.create_index(
        "ix_change_log_club_id_match_id_server_seq",
        "change_log",
        ["club_id", "match_id", "server_seq"],
    )
    op.create_table(
        "conflicts",
        _uuid("club_id", nullable=False),
        _uuid("id", nullable=False),
        sa.Column("server_seq", sa.BigInteger(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        _uuid("record_id", nullable=False),
        _uuid("match_id"),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("winner_value", sa.Text()),
        sa.Column("winner_device", sa.Text(), nullable=False),
        sa.Column("winner_device_seq", sa.BigInteger(), nullable=False),
        sa.Column("winner_hlc", sa.Text(), nullable=False),
        sa.Column("loser_value", sa.Text()),
        sa.Column("loser_device", sa.Text(), nullable=False),
        sa.Column("loser_device_seq", sa.BigInteger(), nullable=False),
        sa.Column("loser_hlc", sa.Text(), nullable=False),
        _timestamp("detected_at", nullable=False),
        sa.Column("reinstated_seq", sa.BigInteger()),
        sa.PrimaryKeyConstraint("club_id", "id", name="pk_conflicts"),
    )
    op.create_index(
        "ix_conflicts_club_id_match_id_server_seq",
        "conflicts",
        ["club_id", "match_id", "server_seq"],
    )


def downgrade() -> None:
    for index, table in (
        ("ix_conflicts_club_id_match_id_server_seq", "conflicts"),
        ("ix_change_log_club_id_match_id_server_seq", "change_log"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("conflicts", "change_log", "devices", "clubs"):
        op.drop_table(table)
    for name, (_columns, by_match) in reversed(_domain_columns().items()):
        if by_match:
            op.drop_index(f"ix_{name}_club_id_match_id", table_name=name)
        op.drop_table(name)
