"""docker-compose.yml cannot be run here (no Docker engine), so check it against the code."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from sync_server.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_SERVER_VARS = {
    "DATABASE_URL",
    "SECRET_KEY",
    "ENVIRONMENT",
    "PORT",
    "CORS_ORIGINS",
    "REDIS_URL",
}


def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def server_environment() -> dict[str, str]:
    environment = compose()["services"]["server"]["environment"]
    if isinstance(environment, list):  # the "NAME=value" form
        return dict(item.split("=", 1) for item in environment)
    return {name: str(value) for name, value in environment.items()}


def test_compose_has_the_three_services() -> None:
    assert set(compose()["services"]) == {"postgres", "redis", "server"}


def test_server_sets_only_variables_the_settings_read() -> None:
    assert set(server_environment()) - set(ENV_VARS) == set()


def test_server_sets_every_required_variable() -> None:
    assert REQUIRED_SERVER_VARS - set(server_environment()) == set()


def test_server_runs_in_production_on_postgres() -> None:
    environment = server_environment()
    assert environment["ENVIRONMENT"] == "production"
    assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")  # refuses to start unset


def test_server_image_migrates_before_serving() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-slim" in dockerfile
    assert "sync-server migrate && exec sync-server serve" in dockerfile


def test_server_image_copies_every_package_the_project_installs() -> None:
    """`pip install .` in the image builds the wheel: every package it lists must be there."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = {
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ")
    }
    assert set(packages) - copied == set()
