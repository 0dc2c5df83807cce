"""SQLAlchemy Core tables: the merged domain state plus the sync bookkeeping.

Tables are defined without a schema; on PostgreSQL the engine's `schema_translate_map`
places them in the configured schema (default `grassroots`). The initial Alembic migration
creates exactly these tables, and a test compares the two so they cannot drift.

Every domain row is scoped by `club_id` and keyed by the client-chosen `id`. Its typed
columns hold the merged values; `sync_state` holds the per-field version metadata (JSON) that
the merge needs, written by the store alongside the values.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)

__all__ = [
    "DOMAIN_TABLES",
    "ROLES",
    "app_settings",
    "change_log",
    "clock_actions",
    "club_settings",
    "clubs",
    "conflicts",
    "default_lineups",
    "devices",
    "events",
    "invites",
    "lineup",
    "match_notes",
    "matches",
    "memberships",
    "metadata",
    "player_teams",
    "players",
    "refresh_tokens",
    "seasons",
    "sessions",
    "share_links",
    "teams",
    "users",
]

# Deterministic constraint names keep migrations reproducible across SQLite and PostgreSQL.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite's INTEGER is already 64-bit; key columns use its native spelling there.
_SequenceKey = BigInteger().with_variant(Integer, "sqlite")


def _timestamp(name: str, *, nullable: bool = True) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _domain_table(name: str, *columns: Column[Any], by_match: bool = False) -> Table:
    """A merged domain table: sync columns shared by all, then the typed fields."""
    table = Table(
        name,
        metadata,
        Column("club_id", Uuid(as_uuid=True), nullable=False),
        Column("id", Uuid(as_uuid=True), nullable=False),
        *columns,
        # Per-field version metadata (JSON), so a later change can be merged field by field.
        Column("sync_state", Text, nullable=False),
        # Deletes are soft so that they can be restored; only a restore un-archives a record.
        Column("is_deleted", Boolean, nullable=False, server_default=false()),
        _timestamp("deleted_at"),
        # Server sequence of the last change applied to this row.
        Column("updated_seq", BigInteger, nullable=False),
        PrimaryKeyConstraint("club_id", "id"),
    )
    if by_match:
        Index(f"ix_{name}_club_id_match_id", table.c.club_id, table.c.match_id)
    return table


teams = _domain_table(
    "teams",
    Column("name", Text),
    Column("short_name", Text),
    Column("is_opponent", Boolean),
    Column("color", Text),
    Column("notes", Text),
    Column("viewer_names", Text),
)

players = _domain_table(
    "players",
    Column("full_name", Text),
    Column("squad_number", Integer),
    Column("preferred_pos", Text),
    Column("dob", Date),
    Column("notes", Text),
    Column("current_team", Uuid(as_uuid=True)),
)

seasons = _domain_table(
    "seasons",
    Column("label", Text),
    Column("start_date", Date),
    Column("end_date", Date),
    Column("is_current", Boolean),
)

matches = _domain_table(
    "matches",
    Column("season_id", Uuid(as_uuid=True)),
    _timestamp("kickoff_ts"),
    Column("competition", Text),
    Column("home_team_id", Uuid(as_uuid=True)),
    Column("away_team_id", Uuid(as_uuid=True)),
    Column("venue", Text),
    Column("duration_mins", Integer),
    Column("period_format", Text),
    Column("our_score", Integer),
    Column("opponent_score", Integer),
    Column("notes", Text),
)

events = _domain_table(
    "events",
    Column("match_id", Uuid(as_uuid=True)),
    Column("season_id", Uuid(as_uuid=True)),
    Column("period_number", Integer),
    Column("clock_ms", BigInteger),
    Column("kind", Text),
    Column("team_id", Uuid(as_uuid=True)),
    Column("player_id", Uuid(as_uuid=True)),
    Column("related_event_id", Uuid(as_uuid=True)),
    Column("notes", Text),
    Column("sentiment", Integer),
    Column("x", Float),
    Column("y", Float),
    _timestamp("created_at"),
    by_match=True,
)

lineup = _domain_table(
    "lineup",
    Column("match_id", Uuid(as_uuid=True)),
    Column("player_id", Uuid(as_uuid=True)),
    Column("start_min", Float),
    Column("end_min", Float),
    Column("position", Text),
    by_match=True,
)

match_notes = _domain_table(
    "match_notes",
    Column("match_id", Uuid(as_uuid=True)),
    Column("period_number", Integer),
    Column("note_text", Text),
    _timestamp("created_at"),
    by_match=True,
)

clock_actions = _domain_table(
    "clock_actions",
    Column("match_id", Uuid(as_uuid=True)),
    Column("action", Text),
    _timestamp("at"),
    Column("period_number", Integer),
    by_match=True,
)

# One record per club, keyed by the club's own id: viewer naming and match defaults.
club_settings = _domain_table(
    "club_settings",
    Column("viewer_names", Text),
    Column("default_period_format", Text),
    Column("default_duration_mins", Integer),
)

player_teams = _domain_table(
    "player_teams",
    Column("player_id", Uuid(as_uuid=True)),
    Column("team_id", Uuid(as_uuid=True)),
    Column("start_date", Date),
    Column("end_date", Date),
    Column("is_active", Boolean),
)

default_lineups = _domain_table(
    "default_lineups",
    Column("team_id", Uuid(as_uuid=True)),
    Column("formation", Text),
)

app_settings = _domain_table(
    "app_settings",
    Column("key", Text),
    Column("value", Text),
)

DOMAIN_TABLES: Final[dict[str, Table]] = {
    table.name: table
    for table in (
        teams,
        players,
        seasons,
        matches,
        events,
        lineup,
        match_notes,
        clock_actions,
        club_settings,
        player_teams,
        default_lineups,
        app_settings,
    )
}

clubs = Table(
    "clubs",
    metadata,
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("name", Text),
    # Last server sequence allocated in this club. Allocation updates it under a row lock,
    # so server sequences commit in increasing order and a pull never skips one.
    Column("log_seq", BigInteger, nullable=False, server_default=text("0")),
    # Greatest effective HLC stored in this club: the skew cap never goes below it, so a
    # server clock stepping back cannot order a change before one its author had seen.
    Column("max_hlc", Text),
    _timestamp("created_at", nullable=False),
    # The coach's own team, created with the club at signup (opponents are teams too).
    Column("team_id", Uuid(as_uuid=True)),
    PrimaryKeyConstraint("id"),
)

devices = Table(
    "devices",
    metadata,
    Column("club_id", Uuid(as_uuid=True), nullable=False),
    # Chosen by the client, so bounded here rather than trusted.
    Column("id", Text, nullable=False),
    Column("name", Text),
    # Device sequences are dense: the next accepted change is exactly last_seq + 1.
    Column("last_seq", BigInteger, nullable=False, server_default=text("0")),
    # Effective HLC of the device's last accepted change; its clock never goes back.
    Column("last_hlc", Text),
    _timestamp("created_at", nullable=False),
    _timestamp("last_push_at"),
    PrimaryKeyConstraint("club_id", "id"),
    ForeignKeyConstraint(["club_id"], ["clubs.id"]),
    CheckConstraint("length(id) BETWEEN 1 AND 64", name="id_length"),
)

# Append-only: every accepted change, in server order. It is the source of truth for pulls
# and for gap filling after a missed live message.
change_log = Table(
    "change_log",
    metadata,
    Column("club_id", Uuid(as_uuid=True), nullable=False),
    Column("server_seq", _SequenceKey, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("device_seq", BigInteger, nullable=False),
    # The HLC used for ordering, after clamping a device clock that ran too far ahead.
    Column("hlc", Text, nullable=False),
    # The HLC exactly as the device sent it, kept for diagnosis.
    Column("sent_hlc", Text, nullable=False),
    Column("table_name", Text, nullable=False),
    Column("record_id", Uuid(as_uuid=True), nullable=False),
    Column("match_id", Uuid(as_uuid=True)),
    Column("op", Text, nullable=False),
    Column("fields", Text, nullable=False),
    _timestamp("received_at", nullable=False),
    PrimaryKeyConstraint("club_id", "server_seq"),
    # A retried push carries the same (device, seq) and must not apply twice.
    UniqueConstraint("club_id", "device_id", "device_seq"),
    Index("ix_change_log_club_id_match_id_server_seq", "club_id", "match_id", "server_seq"),
)

# The ledger of concurrent same-field writes that lost, readable by coaches and reversible.
conflicts = Table(
    "conflicts",
    metadata,
    Column("club_id", Uuid(as_uuid=True), nullable=False),
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("server_seq", BigInteger, nullable=False),
    Column("table_name", Text, nullable=False),
    Column("record_id", Uuid(as_uuid=True), nullable=False),
    Column("match_id", Uuid(as_uuid=True)),
    Column("field", Text, nullable=False),
    Column("winner_value", Text),
    Column("winner_device", Text, nullable=False),
    Column("winner_device_seq", BigInteger, nullable=False),
    Column("winner_hlc", Text, nullable=False),
    Column("loser_value", Text),
    Column("loser_device", Text, nullable=False),
    Column("loser_device_seq", BigInteger, nullable=False),
    Column("loser_hlc", Text, nullable=False),
    _timestamp("detected_at", nullable=False),
    # Server sequence of the change that put the losing value back, when a coach overruled.
    Column("reinstated_seq", BigInteger),
    # The user who asked for the reinstatement.
    Column("reinstated_by", Uuid(as_uuid=True)),
    PrimaryKeyConstraint("club_id", "id"),
    Index("ix_conflicts_club_id_match_id_server_seq", "club_id", "match_id", "server_seq"),
)


# -- accounts ------------------------------------------------------------------------------

ROLES: Final = ("owner", "coach", "viewer")

users = Table(
    "users",
    metadata,
    Column("id", Uuid(as_uuid=True), nullable=False),
    # Stored lower-cased, so the unique constraint is case-insensitive in effect.
    Column("email", Text, nullable=False),
    # "scrypt$<n>$<r>$<p>$<salt>$<hash>": parameters travel with the hash so they can grow.
    Column("password_hash", Text, nullable=False),
    _timestamp("created_at", nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("email"),
)

# A user belongs to one club (unique user_id); the club is what every token is scoped to.
memberships = Table(
    "memberships",
    metadata,
    Column("club_id", Uuid(as_uuid=True), nullable=False),
    Column("user_id", Uuid(as_uuid=True), nullable=False),
    Column("role", Text, nullable=False),
    _timestamp("created_at", nullable=False),
    PrimaryKeyConstraint("club_id", "user_id"),
    UniqueConstraint("user_id"),
    ForeignKeyConstraint(["club_id"], ["clubs.id"]),
    ForeignKeyConstraint(["user_id"], ["users.id"]),
    CheckConstraint("role IN ('owner', 'coach', 'viewer')", name="role"),
)

# One login of one user on one device. Access tokens name their session, and every request
# checks it is live, so logging out or removing a member takes effect at once.
sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("user_id", Uuid(as_uuid=True), nullable=False),
    Column("club_id", Uuid(as_uuid=True), nullable=False),
    Column("device_id", Text, nullable=False),
    _timestamp("created_at", nullable=False),
    _timestamp("revoked_at"),
    Column("revoked_reason", Text),
    PrimaryKeyConstraint("id"),
    ForeignKeyConstraint(["user_id"], ["users.id"]),
    Index("ix_sessions_user_id_device_id", "user_id", "device_id"),
)

# Refresh tokens rotate: each is used once. A session's tokens form one family, so reusing
# a used token (a stolen copy) revokes the whole session.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    # SHA-256 of the token: the token itself is never stored.
    Column("token_hash", Text, nullable=False),
    Column("session_id", Uuid(as_uuid=True), nullable=False),
    _timestamp("issued_at", nullable=False),
    _timestamp("expires_at", nullable=False),
    _timestamp("used_at"),
    PrimaryKeyConstraint("token_hash"),
    ForeignKeyConstraint(["session_id"], ["sessions.id"]),
    Index("ix_refresh_tokens_session_id", "session_id"),
)

invites = Table(
    "invites",
    metadata,
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("club_id", Uuid(as_uuid=True), nullable=False),
    Column("code_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("created_by", Uuid(as_uuid=True), nullable=False),
    _timestamp("created_at", nullable=False),
    _timestamp("expires_at", nullable=False),
    _timestamp("used_at"),
    Column("used_by", Uuid(as_uuid=True)),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("code_hash"),
    ForeignKeyConstraint(["club_id"], ["clubs.id"]),
    CheckConstraint("role IN ('coach', 'viewer')", name="role"),
)

# Read-only links for family. The token is an HMAC of (id, salt) under the server's secret,
# so the server can show an active link again, while the table alone never reveals one.
share_links = Table(
    "share_links",
    metadata,
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("club_id", Uuid(as_uuid=True), nullable=False),
    Column("match_id", Uuid(as_uuid=True), nullable=False),
    Column("salt", Text, nullable=False),
    Column("token_hash", Text, nullable=False),
    Column("created_by", Uuid(as_uuid=True), nullable=False),
    _timestamp("created_at", nullable=False),
    _timestamp("expires_at", nullable=False),
    _timestamp("revoked_at"),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("token_hash"),
    ForeignKeyConstraint(["club_id"], ["clubs.id"]),
    Index("ix_share_links_club_id_match_id", "club_id", "match_id"),
)
