"""Request ids, the one log line and the metrics of each request, and the headers every response
carries."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request

from service import metrics

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
request_log = logging.getLogger("service.request")


def start_request() -> None:
    """Give the request an id (the caller's, when well-formed) and note when and where it came."""
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = supplied if _REQUEST_ID_PATTERN.fullmatch(supplied) else uuid.uuid4().hex
    if not current_app.config.get("ISSUER"):  # development: the issuer is the request's host
        g.request_host_url = request.host_url
    g.started = time.perf_counter()


def finish_response(response: Response) -> Response:
    """Add the common headers and log the outcome (the path only: never query strings)."""
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    started = g.get("started")
    seconds = time.perf_counter() - started if started is not None else None
    # By the route's template, never the path: path ids are unbounded and personal-adjacent.
    rule = request.url_rule.rule if request.url_rule is not None else None
    metrics.observe_request(rule, request.method, response.status_code, seconds)
    request_log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((seconds or 0.0) * 1000, 1),
        },
    )
    return response


def init_app(app: Flask) -> None:
    """Register first, so the id exists for every later hook and the log sees the final response."""
    app.before_request(start_request)
    app.after_request(finish_response)
