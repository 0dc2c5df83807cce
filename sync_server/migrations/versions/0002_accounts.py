"""Accounts: users, club memberships, sessions, rotating refresh tokens, invites, share links.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Also gives clubs their own team, teams a viewer naming choice, and conflicts the user who
reinstated them. Written by hand to match `sync_server.tables`.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _uuid(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Uuid(as_uuid=True), nullable=nullable)


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _schema() -> str | None:
    # ALTER TABLE is not covered by the connection's schema translate map; name it here.
    schema: str | None = op.get_context().version_table_schema
    return schema


def upgrade() -> None:
    op.add_column("clubs", _uuid("team_id"), schema=_schema())
    op.add_column("teams", sa.Column("viewer_names", sa.Text()), schema=_schema())
    op.add_column("conflicts", _uuid("reinstated_by"), schema=_schema())

    op.create_table(
        "users",
        _uuid("id", nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "memberships",
        _uuid("club_id", nullable=False),
        _uuid("user_id", nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("club_id", "user_id", name="pk_memberships"),
        sa.UniqueConstraint("user_id", name="uq_memberships_user_id"),
        sa.ForeignKeyConstraint(["club_id"], ["clubs.id"], name="fk_memberships_club_id_clubs"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_memberships_user_id_users"),
        sa.CheckConstraint("role IN ('owner', 'coach', 'viewer')", name="ck_memberships_role"),
    )
    op.create_table(
        "sessions",
        _uuid("id", nullable=False),
        _uuid("user_id", nullable=False),
        _uuid("club_id", nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("revoked_at"),
        sa.Column("revoked_reason", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_sessions_user_id_users"),
    )
    op.create_index("ix_sessions_user_id_device_id", "sessions", ["user_id", "device_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        _uuid("session_id", nullable=False),
        _timestamp("issued_at", nullable=False),
        _timestamp("expires_at", nullable=False),
        _timestamp("used_at"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_refresh_tokens"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_refresh_tokens_session_id_sessions"
        ),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])
    op.create_table(
        "invites",
        _uuid("id", nullable=False),
        _uuid("club_id", nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        _uuid("created_by", nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("expires_at", nullable=False),
        _timestamp("used_at"),
        _uuid("used_by"),
        sa.PrimaryKeyConstraint("id", name="pk_invites"),
        sa.UniqueConstraint("code_hash", name="uq_invites_code_hash"),
        sa.ForeignKeyConstraint(["club_id"], ["clubs.id"], name="fk_invites_club_id_clubs"),
        sa.CheckConstraint("role IN ('coach', 'viewer')", name="ck_invites_role"),
    )
    op.create_table(
        "share_links",
        _uuid("id", nullable=False),
        _uuid("club_id", nullable=False),
        _uuid("match_id", nullable=False),
        sa.Column("salt", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        _uuid("created_by", nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("expires_at", nullable=False),
        _timestamp("revoked_at"),
        sa.PrimaryKeyConstraint("id", name="pk_share_links"),
        sa.UniqueConstraint("token_hash", name="uq_share_links_token_hash"),
        sa.ForeignKeyConstraint(["club_id"], ["clubs.id"], name="fk_share_links_club_id_clubs"),
    )
    op.create_index("ix_share_links_club_id_match_id", "share_links", ["club_id", "match_id"])


def downgrade() -> None:
    op.drop_index("ix_share_links_club_id_match_id", table_name="share_links")
    op.drop_table("share_links")
    op.drop_table("invites")
    op.drop_index("ix_refresh_tokens_session_id", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index("ix_sessions_user_id_device_id", table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("memberships")
    op.drop_table("users")
    for table, column in (
        ("conflicts", "reinstated_by"),
        ("teams", "viewer_names"),
        ("clubs", "team_id"),
    ):
        with op.batch_alter_table(table, schema=_schema()) as batch:
            batch.drop_column(column)
