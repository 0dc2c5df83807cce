"""The server's configuration: one immutable object, built once from the environment.

`Settings.from_env` is the only place that reads environment variables; everything else
receives a `Settings` (handlers by dependency injection).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["ENVIRONMENTS", "ENV_VARS", "LOG_FORMATS", "Settings", "SettingsError"]

# Every variable `Settings.from_env` reads. docker-compose.yml is tested against this list.
ENV_VARS: Final = (
    "DATABASE_URL",
    "DATABASE_SCHEMA",
    "SECRET_KEY",
    "CORS_ORIGINS",
    "ENVIRONMENT",
    "HOST",
    "PORT",
    "REDIS_URL",
    "MAX_CLOCK_SKEW_MS",
    "PUSH_MAX_CHANGES",
    "PULL_MAX_LIMIT",
    "ALLOW_SIGNUP",
    "PUBLIC_URL",
    "ACCESS_TOKEN_TTL_S",
    "REFRESH_TOKEN_TTL_S",
    "SHARE_LINK_TTL_HOURS",
    "INVITE_TTL_HOURS",
    "MAX_BODY_BYTES",
    "RATE_LIMIT_PER_MINUTE",
    "LOGIN_ATTEMPTS_PER_MINUTE",
    "WS_MESSAGES_PER_SECOND",
    "RELAY_QUEUE_LIMIT",
    "RELAY_HEARTBEAT_S",
    "TRUSTED_PROXIES",
    "LOG_FORMAT",
)

LOG_FORMATS: Final = ("text", "json")

ENVIRONMENTS: Final = ("development", "production", "test")

DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///./data/touchline.db"
DEFAULT_POSTGRES_SCHEMA: Final = "grassroots"
DEFAULT_SECRET_KEY_FILE: Final = Path("data") / "secret_key"
# HS256 keys shorter than the hash output weaken every token signed with them.
MIN_SECRET_KEY_BYTES: Final = 32

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_POSTGRES_IDENTIFIER_MAX = 63


class SettingsError(ValueError):
    """The environment describes a configuration the server refuses to run with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Immutable server configuration; see README.md for what each variable means."""

    secret_key: str = field(repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    database_schema: str | None = None
    cors_origins: tuple[str, ...] = ()
    environment: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    max_clock_skew_ms: int = 60_000
    push_max_changes: int = 1000
    pull_max_limit: int = 1000
    allow_signup: bool = True
    public_url: str | None = None
    """Base URL that share links point at; defaults to http://HOST:PORT."""
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    share_link_ttl_hours: int = 72
    """How long after kickoff (or after minting, if later) a share link keeps working."""
    invite_ttl_hours: int = 7 * 24
    max_body_bytes: int = 2 * 1024 * 1024
    rate_limit_per_minute: int = 1200
    """Requests per minute per token (or per client address when there is none)."""
    login_attempts_per_minute: int = 10
    """Login attempts per minute per client address, and again per account."""
    ws_messages_per_second: int = 20
    relay_queue_limit: int = 256
    """Messages a live connection may fall behind by before it is told to resync."""
    relay_heartbeat_s: int = 15
    trusted_proxies: tuple[str, ...] = ()
    """Peers (addresses or networks) whose X-Forwarded-For and X-Forwarded-Proto are believed;
    nobody's when empty, so a client cannot pick the address its rate limit is counted under."""
    log_format: str = "text"
    """`text` for a terminal, `json` (one object per line, with request ids) for collectors."""

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        secret_key_file: Path = DEFAULT_SECRET_KEY_FILE,
    ) -> Settings:
        """Build settings from `env` (usually `os.environ`).

        Empty values count as unset, so a compose file can pass `${VAR:-}` through.
        `secret_key_file` is where a development secret is kept between restarts.
        """
        values = {name: value for name, value in env.items() if value.strip()}

        environment = values.get("ENVIRONMENT", "development").strip().lower()
        if environment not in ENVIRONMENTS:
            raise SettingsError(
                f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}; got {environment!r}"
            )

        database_url = _normalise_database_url(values.get("DATABASE_URL", DEFAULT_DATABASE_URL))
        is_sqlite = database_url.startswith("sqlite")
        database_schema = _schema_for(values.get("DATABASE_SCHEMA"), is_sqlite=is_sqlite)

        return cls(
            database_url=database_url,
            database_schema=database_schema,
            secret_key=_secret_key(values.get("SECRET_KEY"), environment, secret_key_file),
            cors_origins=tuple(
                origin.strip()
                for origin in values.get("CORS_ORIGINS", "").split(",")
                if origin.strip()
            ),
            environment=environment,
            host=values.get("HOST", "127.0.0.1").strip(),
            port=_int_in_range(values, "PORT", 8000, low=1, high=65535),
            redis_url=values.get("REDIS_URL"),
            max_clock_skew_ms=_int_in_range(values, "MAX_CLOCK_SKEW_MS", 60_000, low=0),
            push_max_changes=_int_in_range(values, "PUSH_MAX_CHANGES", 1000, low=1),
            pull_max_limit=_int_in_range(values, "PULL_MAX_LIMIT", 1000, low=1),
            # Open signup suits a club's own laptop; a public deployment opts in explicitly.
            allow_signup=_flag(values, "ALLOW_SIGNUP", default=environment != "production"),
            public_url=_public_url(values.get("PUBLIC_URL")),
            access_token_ttl_s=_int_in_range(values, "ACCESS_TOKEN_TTL_S", 900, low=30),
            refresh_token_ttl_s=_int_in_range(
                values, "REFRESH_TOKEN_TTL_S", 30 * 24 * 3600, low=60
            ),
            share_link_ttl_hours=_int_in_range(values, "SHARE_LINK_TTL_HOURS", 72, low=1),
            invite_ttl_hours=_int_in_range(values, "INVITE_TTL_HOURS", 7 * 24, low=1),
            max_body_bytes=_int_in_range(values, "MAX_BODY_BYTES", 2 * 1024 * 1024, low=1024),
            rate_limit_per_minute=_int_in_range(values, "RATE_LIMIT_PER_MINUTE", 1200, low=1),
            login_attempts_per_minute=_int_in_range(values, "LOGIN_ATTEMPTS_PER_MINUTE", 10, low=1),
            ws_messages_per_second=_int_in_range(values, "WS_MESSAGES_PER_SECOND", 20, low=1),
            relay_queue_limit=_int_in_range(values, "RELAY_QUEUE_LIMIT", 256, low=4),
            relay_heartbeat_s=_int_in_range(values, "RELAY_HEARTBEAT_S", 15, low=1, high=300),
            trusted_proxies=_networks(values.get("TRUSTED_PROXIES", "")),
            log_format=_choice(values, "LOG_FORMAT", LOG_FORMATS),
        )


def _networks(raw: str) -> tuple[str, ...]:
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(
                f"TRUSTED_PROXIES must list IP addresses or networks (10.0.0.0/8); got {item!r}"
            ) from None
    return tuple(networks)


def _choice(values: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = values.get(name, choices[0]).strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _normalise_database_url(raw: str) -> str:
    url = raw.strip()
    # Hosting providers hand out libpq-style URLs; the server only speaks asyncpg.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith("sqlite://"):
        url = "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise SettingsError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise SettingsError(
            "DATABASE_URL must be a sqlite+aiosqlite:// or postgresql+asyncpg:// "
            f"(or postgres://) URL; got driver {parsed.drivername!r}"
        )
    return url


def _schema_for(raw: str | None, *, is_sqlite: bool) -> str | None:
    if raw is None:
        return None if is_sqlite else DEFAULT_POSTGRES_SCHEMA
    schema = raw.strip()
    if is_sqlite:
        raise SettingsError("DATABASE_SCHEMA is only supported with a PostgreSQL DATABASE_URL")
    if not _SCHEMA_NAME.fullmatch(schema) or len(schema) > _POSTGRES_IDENTIFIER_MAX:
        # The schema name ends up in DDL, so only a plain identifier is accepted.
        raise SettingsError(
            "DATABASE_SCHEMA must be a plain lower-case identifier "
            f"([a-z_][a-z0-9_]*, at most 63 characters); got {schema!r}"
        )
    return schema


def _secret_key(raw: str | None, environment: str, secret_key_file: Path) -> str:
    if environment == "production":
        if raw is None:
            raise SettingsError("SECRET_KEY must be set when ENVIRONMENT=production")
        if len(raw.encode()) < MIN_SECRET_KEY_BYTES:
            raise SettingsError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes when "
                "ENVIRONMENT=production; generate one with "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return raw
    if raw is not None:
        return raw
    if environment == "test":
        # Tests never write into ./data; a key per process is all they need.
        return secrets.token_urlsafe(48)
    return _persisted_development_key(secret_key_file)


def _persisted_development_key(path: Path) -> str:
    """Read the development key, creating it on first start so tokens survive restarts."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting together agree on whichever key was written first.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text(encoding="utf-8").strip()
        else:
            key = secrets.token_urlsafe(48)
            with os.fdopen(fd, "w", encoding="utf-8") as key_file:
                key_file.write(key + "\n")
    except OSError as exc:
        raise SettingsError(
            f"SECRET_KEY is unset and the development key file {path} is unusable: {exc}"
        ) from exc
    if not key:
        raise SettingsError(f"SECRET_KEY is unset and the development key file {path} is empty")
    return key


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _flag(values: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = values.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false; got {raw!r}")


def _public_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    url = raw.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"PUBLIC_URL must start with http:// or https://; got {raw!r}")
    return url


def _int_in_range(
    values: Mapping[str, str], name: str, default: int, *, low: int, high: int | None = None
) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    bounds = f"{low}..{high}" if high is not None else f">= {low}"
    try:
        number = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be an integer {bounds}; got {raw!r}") from None
    if number < low or (high is not None and number > high):
        raise SettingsError(f"{name} must be an integer {bounds}; got {number}")
    return number
