"""Log records as JSON lines with request ids, and the settings that choose the format."""

from __future__ import annotations

import json
import logging

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from sync_server.logs import REQUEST_ID, JsonFormatter, logging_config
from sync_server.settings import Settings, SettingsError

pytestmark = pytest.mark.anyio

SECRET = "s" * 40


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("sync_server.test").makeRecord(
        "sync_server.test", logging.WARNING, __file__, 1, message, (), None, extra=extra
    )
    return made


def test_a_record_is_one_json_object_with_its_fields() -> None:
    line = JsonFormatter().format(record("push refused", status=409, path="/api/sync/push"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "sync_server.test"
    assert entry["message"] == "push refused"
    assert (entry["status"], entry["path"]) == (409, "/api/sync/push")
    assert entry["ts"].endswith("+00:00")


def test_records_logged_inside_a_request_carry_its_id() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        entry = json.loads(JsonFormatter().format(record("database slow")))
    finally:
        REQUEST_ID.reset(token)
    assert entry["request_id"] == "req-42"
    assert "request_id" not in json.loads(JsonFormatter().format(record("idle")))


def test_exceptions_are_kept_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    line = JsonFormatter().format(failed)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exception"]


async def test_access_lines_carry_request_id_status_and_client(
    client: AsyncTestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sync_server.access"):
        answer = await client.get("/health", headers={"x-request-id": "phone-7.retry-2"})
    assert answer.headers["x-request-id"] == "phone-7.retry-2"
    access = [r for r in caplog.records if r.name == "sync_server.access"]
    entry = json.loads(JsonFormatter().format(access[-1]))
    assert entry["request_id"] == "phone-7.retry-2"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/health", 200)
    assert "client" in entry


def test_the_config_routes_uvicorn_through_the_same_handler() -> None:
    config = logging_config(logging.INFO, "json")
    assert config["formatters"]["default"] == {"()": "sync_server.logs.JsonFormatter"}
    assert config["loggers"]["uvicorn.error"]["propagate"] is True
    assert logging_config(logging.INFO, "text")["formatters"]["default"]["format"]


def test_settings_read_the_log_format_and_trusted_proxies() -> None:
    settings = Settings.from_env(
        {"SECRET_KEY": SECRET, "LOG_FORMAT": "JSON", "TRUSTED_PROXIES": "10.0.0.2, 172.16.0.0/12"}
    )
    assert settings.log_format == "json"
    assert settings.trusted_proxies == ("10.0.0.2/32", "172.16.0.0/12")
    assert Settings.from_env({"SECRET_KEY": SECRET}).trusted_proxies == ()
    with pytest.raises(SettingsError, match="LOG_FORMAT must be one of text, json"):
        Settings.from_env({"SECRET_KEY": SECRET, "LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES must list IP addresses"):
        Settings.from_env({"SECRET_KEY": SECRET, "TRUSTED_PROXIES": "proxy.local"})
