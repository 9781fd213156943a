"""Logging: JSON or text lines on stderr. The one line per request on logger
`llm_gateway.access` is written by metrics/access_log.py; its `fields` are laid out here."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from llm_gateway.config import ServerConfig

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's `fields` (access_log.py) become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with a record's `fields` appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return line
        extra = " ".join(f"{k}={v}" for k, v in fields.items()
                         if v is not None and k not in _IN_MESSAGE)
        return f"{line} {extra}"


_IN_MESSAGE = frozenset({"method", "path", "status"})  # already in the text message


def configure_logging(server: ServerConfig) -> None:
    """Send every log record to stderr in the configured format (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if server.log_format == "json" else TextFormatter())
    logging.basicConfig(level=server.log_level.upper(), handlers=[handler], force=True)
