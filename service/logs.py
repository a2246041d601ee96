"""Structured JSON logging with the request id; bodies, tokens and secrets are never logged."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from flask import g, has_request_context

# Only these extra attributes reach the log line: an allow-list keeps stray data out.
_EXTRA_FIELDS = (
    "method", "path", "status", "duration_ms", "agency", "client", "error_type",
    # the delivery worker's: ids and figures, never contents
    "worker", "delivery", "notification", "webhook", "outcome", "attempts", "recorded", "seq",
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    """Format records as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and g.get("request_id"):
            entry["request_id"] = g.request_id
        for field in _EXTRA_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to whatever ``sys.stderr`` is at the time (test capture, gunicorn redirection)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    """Send the service's logs to stderr as JSON lines."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("service")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
