"""Club settings: one synced record per club (viewer naming, default match format).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

A merged domain table like the others (PROTOCOL.md §3.9); its one record's id is the club's
own id. Written by hand to match `sync_server.tables`; tests/test_migrations.py compares the
two. Created without a schema: on PostgreSQL the translate map places it.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _uuid(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Uuid(as_uuid=True), nullable=nullable)


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "club_settings",
        _uuid("club_id", nullable=False),
        _uuid("id", nullable=False),
        sa.Column("viewer_names", sa.Text()),
        sa.Column("default_period_format", sa.Text()),
        sa.Column("default_duration_mins", sa.Integer()),
        sa.Column("sync_state", sa.Text(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        _timestamp("deleted_at"),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("club_id", "id", name="pk_club_settings"),
    )


def downgrade() -> None:
    op.drop_table("club_settings")
