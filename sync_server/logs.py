"""Where the server's log records go, as text for a terminal or one JSON object per line.

Both the server's own loggers and uvicorn's go through one handler on stderr. In JSON, every
record carries its time, level, logger and message, the fields an access line attaches
(``request_id``, ``method``, ``path``, ``status``, ``duration_ms``, ``client``), and the id of
the request being served when the record was logged inside one, so an error can be joined to
its request line.
"""

from __future__ import annotations

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["REQUEST_ID", "JsonFormatter", "configure_logging", "logging_config"]

REQUEST_ID: ContextVar[str | None] = ContextVar("touchline_request_id", default=None)
"""The id of the request the current task serves (set by the request log middleware)."""

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if "request_id" not in entry and (current := REQUEST_ID.get()) is not None:
            entry["request_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(level: int, log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server and uvicorn (``uvicorn.run(log_config=)``)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        # uvicorn's loggers go to the root handler; its access log stays off (the app logs
        # requests itself, without query strings).
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": level}
            for name in ("uvicorn", "uvicorn.error")
        },
    }


def configure_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    """Apply :func:`logging_config` to this process."""
    logging.config.dictConfig(logging_config(level, log_format))
