"""docker-compose.yml cannot be run here (no Docker engine), so check it against the code, the
proxy configuration it mounts (deploy/nginx.conf; tests/test_proxy_config.py runs that), and a
real Compose implementation's `config`, which parses, validates and interpolates the file."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from sync_server.settings import ENV_VARS, Settings
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
SERVERS: Final = ("server-a", "server-b")
REQUIRED_SERVER_VARS = {
    "DATABASE_URL",
    "SECRET_KEY",
    "ENVIRONMENT",
    "PORT",
    "CORS_ORIGINS",
    "REDIS_URL",
    "TRUSTED_PROXIES",
    "LOG_FORMAT",
}
# `${NAME:-default}` and `${NAME:?message}`: Compose's interpolation forms used in the file.
_INTERPOLATION: Final = re.compile(r"\$\{(?P<name>[A-Z_]+)(?P<op>:-|:\?)(?P<arg>[^}]*)\}")


def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def service(name: str) -> dict[str, Any]:
    found = compose()["services"][name]
    assert isinstance(found, dict)
    return found


def server_environment(name: str = "server-a") -> dict[str, str]:
    environment = service(name)["environment"]
    if isinstance(environment, list):  # the "NAME=value" form
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def interpolated(value: str, secret_key: str) -> str:
    """`value` as Compose would pass it with nothing set but SECRET_KEY."""

    def resolve(match: re.Match[str]) -> str:
        if match["name"] == "SECRET_KEY":
            return secret_key
        assert match["op"] == ":-", f"{match[0]} needs a value to start"
        return match["arg"]

    return _INTERPOLATION.sub(resolve, value)


def address(name: str) -> str:
    found: str = service(name)["networks"]["backend"]["ipv4_address"]
    return found


def nginx_conf() -> str:
    return NGINX_CONF.read_text(encoding="utf-8")


def test_compose_has_the_database_redis_two_servers_and_the_proxy() -> None:
    assert set(compose()["services"]) == {"postgres", "redis", *SERVERS, "proxy"}


def test_every_service_has_a_health_check() -> None:
    for name, definition in compose()["services"].items():
        assert definition["healthcheck"]["test"], name


@pytest.mark.parametrize("name", SERVERS)
def test_server_sets_only_variables_the_settings_read(name: str) -> None:
    assert set(server_environment(name)) - set(ENV_VARS) == set()


@pytest.mark.parametrize("name", SERVERS)
def test_server_sets_every_required_variable(name: str) -> None:
    assert REQUIRED_SERVER_VARS - set(server_environment(name)) == set()


def test_the_instances_differ_only_in_their_address() -> None:
    first, second = (dict(service(name)) for name in SERVERS)
    assert first.pop("networks") != second.pop("networks")
    assert first == second
    assert first["image"] and first["build"] == "."


def test_server_runs_in_production_on_postgres() -> None:
    environment = server_environment()
    assert environment["ENVIRONMENT"] == "production"
    assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")  # refuses to start unset
    assert environment["LOG_FORMAT"] == "json"


def test_the_server_accepts_the_environment_compose_gives_it() -> None:
    """Every value, once interpolated, is one the server starts with."""
    env = {
        name: interpolated(value, secret_key="k" * 48)
        for name, value in server_environment().items()
    }
    settings = Settings.from_env(env)
    assert settings.environment == "production"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.database_schema == "grassroots"
    assert not settings.allow_signup
    assert settings.log_format == "json"
    assert settings.trusted_proxies == (f"{address('proxy')}/32",)


def test_the_servers_trust_the_proxy_and_nothing_else_reaches_them() -> None:
    subnet = ipaddress.ip_network(compose()["networks"]["backend"]["ipam"]["config"][0]["subnet"])
    addresses = {name: address(name) for name in (*SERVERS, "proxy")}
    assert len(set(addresses.values())) == len(addresses)
    assert all(ipaddress.ip_address(found) in subnet for found in addresses.values())
    assert server_environment()["TRUSTED_PROXIES"] == addresses["proxy"]
    for name in SERVERS:
        assert "ports" not in service(name), f"{name} must be reached through the proxy only"


def test_the_proxy_publishes_the_port_and_mounts_the_configuration() -> None:
    proxy = service("proxy")
    assert proxy["image"].startswith("nginx:")
    assert proxy["ports"] == ["${HTTP_PORT:-8000}:8000"]
    assert proxy["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert {name: proxy["depends_on"][name]["condition"] for name in SERVERS} == {
        name: "service_healthy" for name in SERVERS
    }


def test_nginx_balances_over_exactly_the_server_services() -> None:
    port = server_environment()["PORT"]
    upstream = re.search(r"upstream touchline \{(?P<body>[^}]*)\}", nginx_conf())
    assert upstream is not None
    servers = re.findall(r"^\s*server (\S+)", upstream["body"], flags=re.MULTILINE)
    assert servers == [f"{name}:{port}" for name in SERVERS]
    assert re.findall(r"^\s*listen (\S+);", nginx_conf(), flags=re.MULTILINE) == ["8000"]


def test_nginx_accepts_bodies_as_large_as_the_servers_do() -> None:
    found = re.search(r"client_max_body_size (\d+)m;", nginx_conf())
    assert found is not None
    assert int(found[1]) * 1024 * 1024 == Settings(secret_key="k").max_body_bytes
    assert "MAX_BODY_BYTES" not in server_environment()  # the compose file keeps the default


def test_nginx_forwards_what_the_servers_trust_and_upgrades_websockets() -> None:
    conf = nginx_conf()
    # The edge proxy overwrites X-Forwarded-For: appending would pass a client's own claim on.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_http_version 1.1;" in conf
    # proxy_set_header in a location would drop every header set for the server.
    locations = re.findall(r"location [^{]*\{[^}]*\}", conf)
    assert locations and not any("proxy_set_header" in block for block in locations)
    stream = next(block for block in locations if "/stream" in block)
    assert "proxy_buffering off;" in stream and "proxy_read_timeout 1h;" in stream
    websocket = next(block for block in locations if "location /ws/" in block)
    assert "proxy_read_timeout 1h;" in websocket


def test_nginx_logs_no_query_string_and_no_credentials() -> None:
    log_format = re.search(r"log_format touchline[^;]*;", nginx_conf())
    assert log_format is not None
    for secret in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$http_"):
        assert secret not in log_format[0], secret
    assert "$touchline_log_path" in log_format[0]


def test_the_operations_guide_documents_every_variable() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    reference = guide.split("## Environment reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", reference, flags=re.MULTILINE))
    assert documented == set(ENV_VARS)


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


# --- a real Compose implementation -----------------------------------------------------------


def compose_command() -> list[str]:
    """The Compose CLI: Docker's plugin if present, else the standalone docker-compose
    (Debian's package, installed by .ci/run). `config` needs no Docker engine."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone is not None:
        return [standalone]
    message = (
        "Compose NOT INSTALLED (neither `docker compose` nor `docker-compose`); "
        "docker-compose.yml was not validated. Install it: apt-get install -y docker-compose"
    )
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def compose_config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Only what the test gives: a developer's own SECRET_KEY or ports must not leak in.
    interpolated_names = {"SECRET_KEY", "POSTGRES_PASSWORD", "CORS_ORIGINS", "ALLOW_SIGNUP"}
    interpolated_names |= {"PUBLIC_URL", "HTTP_PORT"}
    base = {name: value for name, value in os.environ.items() if name not in interpolated_names}
    return subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config", *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_accepts_the_file() -> None:
    checked = compose_config(SECRET_KEY="k" * 48)
    assert checked.returncode == 0, checked.stderr
    resolved = yaml.safe_load(checked.stdout)
    assert set(resolved["services"]) == {"postgres", "redis", *SERVERS, "proxy"}
    environments = [resolved["services"][name]["environment"] for name in SERVERS]
    assert environments[0] == environments[1]
    assert environments[0]["SECRET_KEY"] == "k" * 48
    assert environments[0]["PUBLIC_URL"] == "http://localhost:8000"


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    checked = compose_config()
    assert checked.returncode != 0
    assert "set SECRET_KEY" in checked.stderr
