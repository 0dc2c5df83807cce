from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from sync_server.settings import DEFAULT_DATABASE_URL, ENV_VARS, Settings, SettingsError

LONG_SECRET = "s" * 32


def from_env(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(env, secret_key_file=tmp_path / "data" / "secret_key")


def test_defaults(tmp_path: Path) -> None:
    settings = from_env(tmp_path)

    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.is_sqlite
    assert settings.database_schema is None
    assert settings.environment == "development"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.cors_origins == ()
    assert settings.redis_url is None
    assert settings.max_clock_skew_ms == 60_000
    assert settings.push_max_changes == 1000
    assert settings.pull_max_limit == 1000


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = from_env(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://coach:pw@db.example:5432/club",
        "postgresql://coach:pw@db.example:5432/club",
        "postgresql+asyncpg://coach:pw@db.example:5432/club",
    ],
)
def test_postgres_urls_are_rewritten_to_asyncpg(tmp_path: Path, raw: str) -> None:
    settings = from_env(tmp_path, DATABASE_URL=raw)

    assert settings.database_url == "postgresql+asyncpg://coach:pw@db.example:5432/club"
    assert not settings.is_sqlite
    assert settings.database_schema == "grassroots"


def test_custom_schema_on_postgres(tmp_path: Path) -> None:
    settings = from_env(tmp_path, DATABASE_URL="postgres://db/club", DATABASE_SCHEMA="league_two")
    assert settings.database_schema == "league_two"


@pytest.mark.parametrize("schema", ["Grassroots", "1st", "a-b", 'x"; drop', "a" * 64])
def test_schema_must_be_a_plain_identifier(tmp_path: Path, schema: str) -> None:
    with pytest.raises(SettingsError, match="DATABASE_SCHEMA"):
        from_env(tmp_path, DATABASE_URL="postgres://db/club", DATABASE_SCHEMA=schema)


def test_schema_is_refused_for_sqlite(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DATABASE_SCHEMA"):
        from_env(tmp_path, DATABASE_SCHEMA="grassroots")


@pytest.mark.parametrize("raw", ["mysql://db/club", "not a url"])
def test_unsupported_database_url_is_named(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        from_env(tmp_path, DATABASE_URL=raw)


@pytest.mark.parametrize("secret", [None, "short", "x" * 31])
def test_production_refuses_missing_or_short_secret(tmp_path: Path, secret: str | None) -> None:
    env = {"ENVIRONMENT": "production"}
    if secret is not None:
        env["SECRET_KEY"] = secret
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        from_env(tmp_path, **env)
    assert not (tmp_path / "data").exists()


def test_production_accepts_long_secret(tmp_path: Path) -> None:
    settings = from_env(tmp_path, ENVIRONMENT="production", SECRET_KEY=LONG_SECRET)
    assert settings.secret_key == LONG_SECRET
    assert LONG_SECRET not in repr(settings)


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "80.5"])
def test_bad_port_names_the_variable(tmp_path: Path, port: str) -> None:
    with pytest.raises(SettingsError, match="PORT"):
        from_env(tmp_path, PORT=port)


@pytest.mark.parametrize("name", ["PUSH_MAX_CHANGES", "PULL_MAX_LIMIT", "MAX_CLOCK_SKEW_MS"])
def test_bad_limits_name_the_variable(tmp_path: Path, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        from_env(tmp_path, **{name: "-5"})


def test_unknown_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ENVIRONMENT"):
        from_env(tmp_path, ENVIRONMENT="staging")


def test_development_secret_is_generated_once_and_persisted(tmp_path: Path) -> None:
    first = from_env(tmp_path)
    second = from_env(tmp_path)

    key_file = tmp_path / "data" / "secret_key"
    assert first.secret_key == second.secret_key
    assert len(first.secret_key.encode()) >= 32
    assert key_file.read_text().strip() == first.secret_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_explicit_secret_is_not_persisted(tmp_path: Path) -> None:
    settings = from_env(tmp_path, SECRET_KEY="given")
    assert settings.secret_key == "given"
    assert not (tmp_path / "data").exists()


def test_test_environment_never_writes_a_secret(tmp_path: Path) -> None:
    settings = from_env(tmp_path, ENVIRONMENT="test")
    assert settings.secret_key
    assert not (tmp_path / "data").exists()


def test_lists_and_optional_values(tmp_path: Path) -> None:
    settings = from_env(
        tmp_path,
        CORS_ORIGINS=" https://coach.example , ,https://family.example",
        REDIS_URL="redis://cache:6379/0",
        HOST="0.0.0.0",
        PORT="9000",
        PUSH_MAX_CHANGES="50",
    )
    assert settings.cors_origins == ("https://coach.example", "https://family.example")
    assert settings.redis_url == "redis://cache:6379/0"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.push_max_changes == 50


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    settings = from_env(tmp_path, REDIS_URL="", CORS_ORIGINS="", PORT="  ")
    assert settings.redis_url is None
    assert settings.cors_origins == ()
    assert settings.port == 8000


def test_readme_documents_every_variable() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert [name for name in ENV_VARS if f"`{name}`" not in readme] == []


def test_signup_is_open_in_development_and_closed_in_production(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    assert Settings.from_env({}, secret_key_file=key_file).allow_signup is True
    production = {"ENVIRONMENT": "production", "SECRET_KEY": "k" * 32}
    assert Settings.from_env(production).allow_signup is False
    assert Settings.from_env({**production, "ALLOW_SIGNUP": "true"}).allow_signup is True
    with pytest.raises(SettingsError, match="ALLOW_SIGNUP"):
        Settings.from_env({"ALLOW_SIGNUP": "maybe"}, secret_key_file=key_file)


def test_public_url_sets_where_share_links_point(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    default = Settings.from_env({"PORT": "8123"}, secret_key_file=key_file)
    assert default.base_url == "http://127.0.0.1:8123"
    public = Settings.from_env(
        {"PUBLIC_URL": "https://touchline.example/"}, secret_key_file=key_file
    )
    assert public.base_url == "https://touchline.example"
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        Settings.from_env({"PUBLIC_URL": "touchline.example"}, secret_key_file=key_file)
