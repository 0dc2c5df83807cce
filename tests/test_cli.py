"""`sync-server migrate` then `sync-server serve`, as real processes on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sync_server.cli import served_settings
from sync_server.migrate import head_revision
from sync_server.settings import Settings

SYNC_SERVER = Path(sys.executable).with_name("sync-server")
STARTUP_DEADLINE_S = 20.0


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_SCHEMA", "PORT", "HOST", "REDIS_URL", "CORS_ORIGINS"}
    }
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'touchline.db'}",
        ENVIRONMENT="test",
        SECRET_KEY="test-secret-key-that-is-long-enough-for-hs256",
    )
    return env


def test_console_script_is_installed() -> None:
    assert SYNC_SERVER.exists(), f"{SYNC_SERVER} missing: run `pip install -e .`"


def test_bad_configuration_exits_with_the_variable_named(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(SYNC_SERVER), "migrate"],
        env={**server_env, "PORT": "not-a-port"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PORT" in result.stderr


@pytest.mark.slow
def test_migrate_then_serve(server_env: dict[str, str], tmp_path: Path, free_tcp_port: int) -> None:
    migrate = subprocess.run(
        [str(SYNC_SERVER), "migrate"],
        env=server_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    head = head_revision(Settings.from_env(server_env))
    assert f"database at revision {head}" in migrate.stdout

    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(SYNC_SERVER), "serve", "--port", str(free_tcp_port), "--log-level", "warning"],
            env=server_env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{free_tcp_port}"
    try:
        with httpx.Client(base_url=base_url, timeout=2.0) as client:
            health = _wait_until_healthy(client, server, log_path)
            schema = client.get("/schema/openapi.json")
            ready = client.get("/ready")
            signup = client.post(
                "/api/auth/signup",
                json={
                    "email": "coach@example.org",
                    "password": "correct horse battery staple",
                    "team_name": "Riverside U10",
                    "device_id": "phone-1",
                },
            )
            token = signup.json().get("access_token", "") if signup.status_code == 201 else ""
            pushed = client.post(
                "/api/sync/push",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "device_id": "phone-1",
                    "changes": [
                        {
                            "seq": 1,
                            "hlc": "001780000000000-00000",
                            "table": "teams",
                            "id": "5f1c0c56-1f8e-4f6e-9d0a-0a1b2c3d4e5f",
                            "fields": {"name": "Riverside U10"},
                        }
                    ],
                },
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)

    assert health.json() == {"status": "ok"}
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Touchline sync server"
    assert {"/api/sync/push", "/api/sync/pull"} <= schema.json()["paths"].keys()
    assert ready.status_code == 200
    assert signup.status_code == 201, signup.text
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["acked_seq"] == 1


def _wait_until_healthy(
    client: httpx.Client, server: subprocess.Popen[bytes], log_path: Path
) -> httpx.Response:
    """Poll /health until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            response = client.get("/health")
        except httpx.TransportError:
            pass  # not listening yet
        else:
            if response.status_code == 200:
                return response
        time.sleep(0.05)
    pytest.fail(f"/health not ready within {STARTUP_DEADLINE_S}s:\n{log_path.read_text()}")


def test_share_links_name_the_port_given_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # served_settings tells worker processes through the environment; keep it to this test.
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("HOST", raising=False)
    settings = Settings(secret_key="k" * 40)
    served = served_settings(settings, None, 9123)
    assert served.base_url == "http://127.0.0.1:9123"
    assert os.environ["PORT"] == "9123"
    assert served_settings(settings, "0.0.0.0", None).base_url == "http://0.0.0.0:8000"
    # An explicit PUBLIC_URL (behind a proxy) wins over either.
    public = Settings(secret_key="k" * 40, public_url="https://touchline.example.org")
    assert served_settings(public, None, 9123).base_url == "https://touchline.example.org"


def test_migrate_says_in_one_line_why_it_cannot_reach_the_database(
    server_env: dict[str, str],
) -> None:
    server_env["DATABASE_URL"] = "postgresql+asyncpg://postgres@127.0.0.1:1/test"
    result = subprocess.run(
        [str(SYNC_SERVER), "migrate"],
        env=server_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("sync-server: database error: ")
    assert "Traceback" not in result.stderr
