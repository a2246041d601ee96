"""Rate limits (Flask-Limiter): per OAuth client, or per source address, across the whole API.

A request presenting a live token to a protected route counts against its client
(``RATE_LIMIT_AUTHENTICATED``); every other request (the token endpoint, unrouted paths, an
invalid or expired token) against its source address (``RATE_LIMIT_ANONYMOUS``; behind
``TRUSTED_PROXIES`` the client's address; an IPv6 address by its /64), except introspection
and revocation, which a gateway calls for every request it passes on: they have a per-address
budget of their own (``RATE_LIMIT_INTROSPECTION``). Health probes are never limited: a prober
refused would take a healthy server out of service. Working out whom a request counts against
never fails: if the token cannot be looked up, the request counts against its address.

Over a limit the answer is a 429 problem with ``Retry-After``. An audited request refused so
gets no entry of its own: it is counted, per source and window, into one summary entry
(``service.audit.refusals``), so a flood cannot grow the log without bound and the log still
accounts for every request. Counts live beside the limits: in process memory (``memory://``,
one process) or Redis (``redis://``, shared by every process). If Redis cannot be reached the
limits fall back to each process's memory and refusals are recorded one entry each. Counts in
memory are written when the process exits normally (``write_open_summaries``); the delivery
worker writes summaries only of counts kept in Redis, the only ones it can see.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import math
import sys
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from limits import RateLimitItem, parse_many

from service import metrics
from service.api.access import policy_of, presented_token
from service.api.problems import Problem, problem_response
from service.audit.entry import PendingEntry
from service.audit.refusal_tally import (
    CLOSING_GRACE_SECONDS,
    MemoryTally,
    Refusal,
    RefusalTally,
    TallyUnavailable,
    tally_for,
)
from service.audit.refusals import TALLY_EXTENSION, write_closed_windows
from service.config import ConfigError
from service.context import recordable_address
from service.database import utcnow
from service.oauth.server import BearerClient

EXTENSION = "alertshare.rate_limits"
STORAGE_SCHEMES = ("memory://", "redis://", "rediss://", "redis+unix://")
UNLIMITED_BLUEPRINTS = frozenset({"ops"})  # liveness and readiness probes
# Called by resource servers and gateways for the requests they pass on (RATE_LIMIT_INTROSPECTION).
TOKEN_CHECK_ENDPOINTS = frozenset({"oauth.introspect_token", "oauth.revoke_token"})
LIMIT_SETTINGS = ("RATE_LIMIT_AUTHENTICATED", "RATE_LIMIT_ANONYMOUS", "RATE_LIMIT_INTROSPECTION")
# A request left waiting on an unreachable Redis is a request not served: give up quickly
# (the limiter then falls back to this process's memory).
REDIS_OPTIONS: dict[str, str | int] = {"socket_timeout": 1, "socket_connect_timeout": 1}
# How often a process looks for closed windows whose summary entries are due.
SUMMARY_CHECK_SECONDS = 1.0
# How many summary entries a request writes at most: the rest wait for later requests (or, with
# Redis, the worker), so no request is held up writing a backlog.
SUMMARIES_PER_REQUEST = 5
# A warning that could repeat on every request (a flood) is logged at most this often.
WARNING_EVERY_SECONDS = 60.0
_SOURCE = "alertshare.rate_limit_source"
_REFUSED = "alertshare.rate_limited"
# The source of a request whose token could not be checked (the database failed): no limit.
_UNCHECKED = "unchecked"

log = logging.getLogger(__name__)


@dataclass
class RateLimits:
    """An app's limiter, its tally of refusals, and when it next looks for due summaries."""

    limiter: Limiter
    tally: RefusalTally
    next_summary_check: float = 0.0
    next_warning: dict[str, float] = field(default_factory=dict)

    def warn(self, topic: str, message: str, *args: object) -> None:
        """Log a warning about ``topic`` unless one was logged in the last minute."""
        now = time.monotonic()
        if now >= self.next_warning.get(topic, 0.0):
            self.next_warning[topic] = now + WARNING_EVERY_SECONDS
            log.warning(message, *args)


def settings_problem(config: Mapping[str, Any]) -> str | None:
    """Return why the rate-limit settings cannot work at all (in any mode), or None."""
    for key in LIMIT_SETTINGS:
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
    limits: RateLimits = current_app.extensions[EXTENSION]
    try:
        client = _token_client()
    except Exception as error:
        # Flask-Limiter would swallow the error and skip every limit (and, with Redis, take
        # its storage for dead): the request counts against its address instead. The error's
        # name only: a database error's text would repeat its statement.
        limits.warn("source", "a request's token could not be looked up for its rate limit "
                    "(%s): no limit counts it; the request itself fails with a 503",
                    type(error.__cause__ or error).__name__)  # fmt: skip
        # The database, not the client, failed: counting such requests against their address
        # would answer a whole gateway's or NAT's clients 429 for a minute after the outage,
        # hiding its cause. They are refused with a 503 when the token is checked.
        return Refusal(_UNCHECKED, address)
    if client is not None:
        return Refusal(f"client:{client.client_id}", address, client.client_id,
                       client.agency_id)  # fmt: skip
    if address is None:
        limits.warn("address", "a request without a usable source address (see "
                    "ALERTSHARE_TRUSTED_PROXIES) is counted, with every other such request, "
                    "under one shared limit")  # fmt: skip
    return Refusal(f"address:{address_bucket(address)}", address)


def _token_client() -> BearerClient | None:
    """Return the client of the live token this request presents to a protected route."""
    view = current_app.view_functions.get(request.endpoint or "")
    policy = policy_of(view) if view is not None else None
    bearer = request.headers.get("Authorization", "").startswith("Bearer ")
    if policy is None or policy.public or not bearer:
        return None
    token = presented_token()
    return None if isinstance(token, OAuth2Error) else token.client


def address_bucket(address: str | None) -> str:
    """Return what a source address is counted as: an IPv4 address itself, an IPv6 address by
    its /64 (one host commonly holds a whole /64, and could otherwise take a fresh address
    for each request), and ``unknown`` for no address."""
    if address is None:
        return "unknown"
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return address


def _source_key() -> str:
    return request_source().source


def _by_client() -> bool:
    return request_source().client_id is not None


def _by_address() -> bool:
    return not _by_client()


def _checks_tokens() -> bool:
    return request.endpoint in TOKEN_CHECK_ENDPOINTS


def _anonymous_exempt() -> bool:
    return _by_client() or _checks_tokens() or request_source().source == _UNCHECKED


def _introspection_exempt() -> bool:
    return not _checks_tokens()


def _unlimited() -> bool:
    return request.blueprint in UNLIMITED_BLUEPRINTS


def _refused(error: RateLimitExceeded) -> Response:
    """Answer a request over its limit: 429, and when to try again."""
    request.environ[_REFUSED] = True
    limits: RateLimits = current_app.extensions[EXTENSION]
    retry_after = retry_after_seconds(limits, limits.limiter.current_limit, error.limit.limit)
    who = "client" if _by_client() else "address"
    metrics.count_refusal(authenticated=who == "client")
    return problem_response(
        Problem(
            429, "too-many-requests", "Too many requests",
            f"Too many requests from this {who} (limit: {error.limit.limit}). "
            f"Retry after {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
    )  # fmt: skip


def retry_after_seconds(
    limits: RateLimits, breached: RequestLimit | None, limit: RateLimitItem
) -> int:
    """Return the seconds until ``breached``'s window resets; if its storage cannot say (it is
    asked again, and may just have failed), the whole window: a refusal must not become a 500.
    """
    try:
        reset_at = breached.window.reset_time if breached is not None else None
    except Exception as error:
        limits.warn("window", "a refused request's window could not be read (%s): it is told "
                    "to retry after the whole window", type(error).__name__)  # fmt: skip
        reset_at = None
    if reset_at is None:
        return max(1, int(limit.get_expiry()))
    return max(1, math.ceil(reset_at - time.time()))


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
    except TallyUnavailable:
        return False  # Redis failed moments ago, and the tally said so then
    except Exception as error:  # one line each: a flood must not flood the log with tracebacks
        log.warning("a refusal could not be counted (%s); it is recorded on its own", error)
        return False
    return True


def write_due_summaries() -> None:
    """Write the summary entries of up to ``SUMMARIES_PER_REQUEST`` closed windows, looking at
    most once a second per process; a failure is logged and the windows are written later."""
    limits: RateLimits = current_app.extensions[EXTENSION]
    now = time.monotonic()
    if now < limits.next_summary_check:
        return
    limits.next_summary_check = now + SUMMARY_CHECK_SECONDS
    try:
        write_closed_windows(limits.tally, limit=SUMMARIES_PER_REQUEST)
    except Exception as error:
        # The error's name only: a database error's text would repeat its statement.
        limits.warn("summaries", "refusal summaries not written now (%s); kept",
                    type(error).__name__)  # fmt: skip


def write_open_summaries(app: Flask) -> int:
    """Write a summary entry for every window of refusals counted in this process's memory,
    closed or not; return how many refusals they record. Counts in Redis outlive the process
    and are left to the others (and the worker)."""
    limits: RateLimits = app.extensions[EXTENSION]
    tally = limits.tally
    if not isinstance(tally, MemoryTally):
        return 0
    # A moment by which every window open now has closed.
    ahead = timedelta(seconds=tally.window_seconds + CLOSING_GRACE_SECONDS + 1)
    with app.app_context():
        return write_closed_windows(tally, utcnow() + ahead, limit=sys.maxsize)


def _write_at_exit(app_ref: weakref.ref[Flask]) -> None:
    """Write the in-memory counts as the process exits normally (best effort: a killed process
    loses them, as it loses its limits)."""
    app = app_ref()
    if app is None:
        return
    try:
        written = write_open_summaries(app)
    except Exception as error:
        log.warning("refusals counted in memory could not be written at exit (%s); they are "
                    "lost", type(error).__name__)  # fmt: skip
        return
    if written:
        log.info("wrote the summaries of %d refusals counted in memory at exit", written)


def init_app(app: Flask) -> None:
    """Limit every request after its audit entry is opened and before its token is checked."""
    config = app.config
    problem = settings_problem(config)
    if problem:
        raise ConfigError(problem)
    storage, prefix = str(config["RATE_LIMIT_STORAGE"]), str(config["RATE_LIMIT_KEY_PREFIX"])
    shared = not storage.startswith("memory://")
    authenticated, anonymous, introspection = (str(config[key]) for key in LIMIT_SETTINGS)
    limiter = Limiter(
        _source_key,
        application_limits=[
            ApplicationLimit(limit_provider=authenticated, scope="client", exempt_when=_by_address),
            ApplicationLimit(
                limit_provider=anonymous, scope="address", exempt_when=_anonymous_exempt
            ),
            ApplicationLimit(
                limit_provider=introspection,
                scope="introspection",
                exempt_when=_introspection_exempt,
            ),
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
    # The worker writes summaries from shared counts only: it cannot see a server's memory.
    app.extensions[TALLY_EXTENSION] = tally if shared else None
    if not shared and not app.testing:
        # A test suite builds many apps on databases it deletes before exiting; tests call
        # write_open_summaries themselves.
        atexit.register(_write_at_exit, weakref.ref(app))
