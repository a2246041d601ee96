"""RFC 9457 problem details: the one shape of every error the API returns."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, g, json
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from service.crypto import CryptoError
from service.errors import DomainError

PROBLEM_TYPE_BASE = "urn:alertshare:problem:"
MEDIA_TYPE = "application/problem+json"
# Seconds a client is asked to wait when the database did not answer.
DATABASE_RETRY_AFTER = 5
# A database down, unreachable or failing over, a lock not granted within lock_timeout, no
# pooled connection free in time: the request can be retried shortly.
DATABASE_UNAVAILABLE = (OperationalError, PoolTimeout)

log = logging.getLogger(__name__)


class Problem(Exception):
    """An HTTP problem raised from the web layer (authentication, context headers...)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})


def problem_response(problem: Problem) -> Response:
    """Render ``problem`` as an ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors:
        body["errors"] = problem.errors
    request_id = g.get("request_id")
    if request_id:
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=problem.status, mimetype=MEDIA_TYPE)
    response.headers.update(problem.headers)
    return response


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into ``{"field.sub": [messages]}``."""
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "_schema": messages}
    flat: dict[str, list[str]] = {}
    items = messages.items() if isinstance(messages, dict) else enumerate(messages)
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def from_validation_error(error: ValidationError) -> Problem:
    """Build the 400 problem naming every invalid field."""
    errors = _flatten(error.messages)
    fields = ", ".join(sorted(errors))
    return Problem(
        400, "validation-error", "Your request is not valid", f"Invalid: {fields}", errors=errors
    )


def from_oauth_error(error: OAuth2Error) -> Problem:
    """Build the 401/403 problem for a failed bearer-token check."""
    if error.status_code == 403:
        scope = getattr(error, "required_scope", "")  # space-delimited, any one of them will do
        wanted = " or ".join(scope.split())
        detail = f"This request needs the scope {wanted}." if scope else "Insufficient scope."
        header = f'Bearer error="insufficient_scope", scope="{scope}"'
        return Problem(
            403,
            "insufficient-scope",
            "Insufficient scope",
            detail,
            headers={"WWW-Authenticate": header},
        )
    detail = "The access token is missing, expired, revoked or not valid."
    header = 'Bearer realm="alertshare", error="invalid_token"'
    return Problem(
        401, "invalid-token", "Unauthorized", detail, headers={"WWW-Authenticate": header}
    )


def from_http_exception(error: HTTPException) -> Problem:
    """Build the problem for a routing or protocol error (404, 405, 413, 415...)."""
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
    return Problem(
        status,
        error.name.lower().replace(" ", "-"),
        error.name,
        error.description or error.name,
        headers=headers,
    )


def internal_error() -> Problem:
    """Build the generic 500 problem: nothing about the cause, only the request id."""
    return Problem(
        500,
        "internal-error",
        "Internal server error",
        "The server could not complete the request. Quote the request id to support.",
    )


def cause_name(error: BaseException) -> str:
    """The name of what went wrong under a SQLAlchemy error (its driver's exception), for a log
    line: never the error's text, which repeats the SQL."""
    return type(getattr(error, "orig", None) or error).__name__


def database_unavailable() -> Problem:
    """Build the 503 for a database that did not answer, or a lock not granted in time."""
    return Problem(
        503,
        "database-unavailable",
        "Service unavailable",
        "The database did not answer in time. Nothing was changed; try again shortly.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def register_problem_handlers(app: Flask) -> None:
    """Make every error, expected or not, leave as a problem response."""

    @app.errorhandler(Problem)
    def _problem(error: Problem) -> Response:
        return problem_response(error)

    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return problem_response(
            Problem(error.status, error.slug, error.title, error.detail, errors=error.errors)
        )

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError) -> Response:
        return problem_response(from_validation_error(error))

    @app.errorhandler(OAuth2Error)
    def _oauth(error: OAuth2Error) -> Response:
        return problem_response(from_oauth_error(error))

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        return problem_response(from_http_exception(error))

    @app.errorhandler(CryptoError)
    def _crypto(error: CryptoError) -> Response:
        # The message names table, record and field only; the caller learns nothing more.
        log.error("cannot decrypt: %s", error, extra={"error_type": type(error).__name__})
        return problem_response(internal_error())

    def _database(error: Exception) -> Response:
        # A database down, unreachable, failing over or a lock_timeout: the request failed fast
        # and its transaction rolled back. The error's name only (its text repeats the SQL).
        log.warning("database unavailable", extra={"error_type": cause_name(error)})
        return problem_response(database_unavailable())

    for unavailable in DATABASE_UNAVAILABLE:
        app.register_error_handler(unavailable, _database)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # The traceback goes to the log, never to the caller; the request id joins the two.
        log.exception("unhandled error", extra={"error_type": type(error).__name__})
        return problem_response(internal_error())
