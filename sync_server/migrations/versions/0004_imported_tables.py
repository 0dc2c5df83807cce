"""Player memberships, default lineups and the app's settings: three more synced tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Merged domain tables like the others (PROTOCOL.md §3.10 to §3.12), so that everything a club
imports from the app's IndexedDB has a home on the server. Written by hand to match
`sync_server.tables`; tests/test_migrations.py compares the two.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _uuid(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Uuid(as_uuid=True), nullable=nullable)


def _domain_table(name: str, *columns: sa.Column[Any]) -> None:
    op.create_table(
        name,
        _uuid("club_id", nullable=False),
        _uuid("id", nullable=False),
        *columns,
        sa.Column("sync_state", sa.Text(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("club_id", "id", name=f"pk_{name}"),
    )


def upgrade() -> None:
    _domain_table(
        "player_teams",
        _uuid("player_id"),
        _uuid("team_id"),
        sa.Column("start_date", sa.Date()),
        sa.Column("end_date", sa.Date()),
        sa.Column("is_active", sa.Boolean()),
    )
    _domain_table("default_lineups", _uuid("team_id"), sa.Column("formation", sa.Text()))
    _domain_table("app_settings", sa.Column("key", sa.Text()), sa.Column("value", sa.Text()))


def downgrade() -> None:
    for name in ("app_settings", "default_lineups", "player_teams"):
        op.drop_table(name)
