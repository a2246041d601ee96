"""Rate limits (Flask-Limiter): per OAuth client, or per source address, across the whole API.

A request presenting a live token to a protected route counts against its client
(``RATE_LIMIT_AUTHENTICATED``); every other request (the token, introspection and revocation
endpoints, unrouted paths, an invalid or expired token) against its source address
(``RATE_LIMIT_ANONYMOUS``; behind ``TRUSTED_PROXIES`` the client's address). Health probes are
never limited: a prober refused would take a healthy server out of service.

Over a limit the answer is a 429 problem with ``Retry-After``. An audited request refused so
gets no entry of its own: it is counted, per source and window, into one summary entry
(``service.audit.refusals``), so a flood cannot grow the log without bound and the log still
accounts for every request. Counts live beside the limits: in process memory (``memory://``,
one process) or Redis (``redis://``, shared by every process). If Redis cannot be reached the
limits fall back to each process's memory and refusals are recorded one entry each.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import parse_many

from service.api.access import policy_of, presented_token
from service.api.problems import Problem, problem_response
from service.audit.entry import PendingEntry
from service.audit.refusal_tally import Refusal, RefusalTally, tally_for
from service.audit.refusals import TALLY_EXTENSION, write_closed_windows
from service.config import ConfigError
from service.context import recordable_address
from service.database import utcnow

EXTENSION = "alertshare.rate_limits"
STORAGE_SCHEMES = ("memory://", "redis://", "rediss://", "redis+unix://")
UNLIMITED_BLUEPRINTS = frozenset({"ops"})  # liveness and readiness probes
# A request left waiting on an unreachable Redis is a request not served: give up quickly
# (the limiter then falls back to this process's memory).
REDIS_OPTIONS: dict[str, str | int] = {"socket_timeout": 1, "socket_connect_timeout": 1}
# How often a process looks for closed windows whose summary entries are due.
SUMMARY_CHECK_SECONDS = 1.0
_SOURCE = "alertshare.rate_limit_source"
_REFUSED = "alertshare.rate_limited"

log = logging.getLogger(__name__)


@dataclass
class RateLimits:
    """An app's limiter, its tally of refusals, and when it next looks for due summaries."""

    limiter: Limiter
    tally: RefusalTally
    next_summary_check: float = 0.0


def settings_problem(config: Mapping[str, Any]) -> str | None:
    """Return why the rate-limit settings cannot work at all (in any mode), or None."""
    for key in ("RATE_LIMIT_AUTHENTICATED", "RATE_LIMIT_ANONYMOUS"):
        try:
            parse_many(str(config[key]))
        except ValueError:
            return f"ALERTSHARE_{key} must be a limit such as 600/minute (or 10/second;600/minute)"
    if not str(config["RATE_LIMIT_STORAGE"]).startswith(STORAGE_SCHEMES):
        return "ALERTSHARE_RATE_LIMIT_STORAGE must be memory:// or a redis:// URL"
    if int(config["RATE_LIMIT_SUMMARY_SECONDS"]) < 1:
        return "ALERTSHARE_RATE_LIMIT_SUMMARY_SECONDS must be at least 1"
    return None


def rate_limit_problems(config: Mapping[str, Any]) -> list[str]:
    """List why the rate-limit settings must not run in production (no database needed).

    In-memory counts are per process: with several workers each would allow the whole limit,
    unless a gateway in front enforces the limits (``RATE_LIMITS_BY_GATEWAY``).
    """
    problem = settings_problem(config)
    if problem:
        return [problem]
    workers = int(config.get("WORKERS") or 1)
    in_memory = str(config["RATE_LIMIT_STORAGE"]).startswith("memory://")
    if in_memory and workers > 1 and not config.get("RATE_LIMITS_BY_GATEWAY"):
        return [
            f"ALERTSHARE_RATE_LIMIT_STORAGE is memory:// but {workers} workers serve, each with "
            "its own counts: use redis://..., or set ALERTSHARE_RATE_LIMITS_BY_GATEWAY=true if "
            "a gateway enforces the limits"
        ]
    return []


def request_source() -> Refusal:
    """Return whom this request counts against: its client, when it presents a live token to a
    protected route; otherwise its source address. Worked out once per request."""
    environ = request.environ
    if _SOURCE not in environ:
        environ[_SOURCE] = _source()
    source: Refusal = environ[_SOURCE]
    return source


def _source() -> Refusal:
    address = recordable_address(request.remote_addr)
    view = current_app.view_functions.get(request.endpoint or "")
    policy = policy_of(view) if view is not None else None
    bearer = request.headers.get("Authorization", "").startswith("Bearer ")
    if policy is not None and not policy.public and bearer:
        token = presented_token()
        if not isinstance(token, OAuth2Error):
            client = token.client
            return Refusal(f"client:{client.client_id}", address, client.client_id,
                           client.agency_id)  # fmt: skip
    return Refusal(f"address:{address or 'unknown'}", address)


def _source_key() -> str:
    return request_source().source


def _by_client() -> bool:
    return request_source().client_id is not None


def _by_address() -> bool:
    return not _by_client()


def _unlimited() -> bool:
    return request.blueprint in UNLIMITED_BLUEPRINTS


def _refused(error: RateLimitExceeded) -> Response:
    """Answer a request over its limit: 429, and when to try again."""
    request.environ[_REFUSED] = True
    limits: RateLimits = current_app.extensions[EXTENSION]
    breached = limits.limiter.current_limit
    reset_at = breached.window.reset_time if breached is not None else time.time() + 1
    retry_after = max(1, math.ceil(reset_at - time.time()))
    who = "client" if _by_client() else "address"
    return problem_response(
        Problem(
            429, "too-many-requests", "Too many requests",
            f"Too many requests from this {who} (limit: {error.limit.limit}). "
            f"Retry after {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
    )  # fmt: skip


def counted_in_summary(entry: PendingEntry) -> bool:
    """Count this request in its source's refusal summary if a rate limit refused it; return
    whether it was counted (then it needs no entry of its own).

    If the count cannot be kept (Redis unreachable) the refusal is not counted and is recorded
    like any other request: the log loses nothing.
    """
    if not request.environ.get(_REFUSED) or not current_app.config["AUDIT"]:
        return False
    refusal = replace(request_source(), request_id=entry.request_id)
    try:
        current_app.extensions[EXTENSION].tally.record(refusal, utcnow())
    except Exception as error:  # one line each: a flood must not flood the log with tracebacks
        log.warning("a refusal could not be counted (%s); it is recorded on its own", error)
        return False
    return True


def write_due_summaries() -> None:
    """Write the summary entries of closed windows, looking at most once a second per process;
    a failure is logged and the windows are written by a later call."""
    limits: RateLimits = current_app.extensions[EXTENSION]
    now = time.monotonic()
    if now < limits.next_summary_check:
        return
    limits.next_summary_check = now + SUMMARY_CHECK_SECONDS
    try:
        write_closed_windows(limits.tally)
    except Exception as error:
        # The error's name only: a database error's text would repeat its statement.
        log.warning("refusal summaries not written now (%s); kept", type(error).__name__)


def init_app(app: Flask) -> None:
    """Limit every request after its audit entry is opened and before its token is checked."""
    config = app.config
    problem = settings_problem(config)
    if problem:
        raise ConfigError(problem)
    storage, prefix = str(config["RATE_LIMIT_STORAGE"]), str(config["RATE_LIMIT_KEY_PREFIX"])
    shared = not storage.startswith("memory://")
    authenticated, anonymous = (
        str(config[key]) for key in ("RATE_LIMIT_AUTHENTICATED", "RATE_LIMIT_ANONYMOUS")
    )
    limiter = Limiter(
        _source_key,
        application_limits=[
            ApplicationLimit(limit_provider=authenticated, scope="client", exempt_when=_by_address),
            ApplicationLimit(limit_provider=anonymous, scope="address", exempt_when=_by_client),
        ],
        storage_uri=storage,
        storage_options=dict(REDIS_OPTIONS) if shared else {},
        strategy="fixed-window",
        key_prefix=prefix,
        # Unrouted paths have no endpoint, which Flask-Limiter would leave unlimited.
        request_identifier=lambda: request.endpoint or "unrouted",
        headers_enabled=False,
        # A failing limiter must not take the service down with it.
        swallow_errors=True,
        in_memory_fallback_enabled=shared,
    )
    limiter.request_filter(_unlimited)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _refused)
    tally = tally_for(storage, prefix, int(config["RATE_LIMIT_SUMMARY_SECONDS"]),
                      **(REDIS_OPTIONS if shared else {}))  # fmt: skip
    app.extensions[EXTENSION] = RateLimits(limiter, tally)
    app.extensions[TALLY_EXTENSION] = tally
