"""Rate limits: per OAuth client, or per source address, across the whole API.

A request presenting a live token to a protected route counts against its client
(``RATE_LIMIT_AUTHENTICATED``); every other request (the token endpoint, unrouted paths, an
invalid or expired token) against its source address (``RATE_LIMIT_ANONYMOUS``; behind
``TRUSTED_PROXIES`` the client's address; an IPv6 address by its /64), except introspection
and revocation, which a gateway calls for every request it passes on: they have a per-address
budget of their own (``RATE_LIMIT_INTROSPECTION``). Health probes are never limited: a prober
refused would take a healthy server out of service. A request whose token cannot be looked up
(the database failed) counts against no limit: it is refused with a 503 when its token is
checked.

One hook (``limit_request``) counts each request, after its audit entry is opened and before
its token is checked, with the ``limits`` library: the limits are parsed when the app is made,
and a request costs one fixed-window hit per limit of its scope. Over a limit the answer is a
429 problem with ``Retry-After``. An audited request refused so gets no entry of its own: it is
counted, per source and window, into one summary entry (``service.audit.refusals``), so a flood
cannot grow the log without bound and the log still accounts for every request.

Counts live in process memory (``memory://``, one process) or Redis (``redis://``, shared by
every process). In memory they are kept by ``MemoryCounters``, not by the library's
``MemoryStorage``, which starts a timer thread to expire its keys for every 10 ms in which a
request is counted: a thread started and ended for nearly every request under load. Ours
expires a window when its key is next used and sweeps the others out at most once a second,
without a thread. If Redis cannot be reached the limits are counted in each process's memory and
refusals are recorded one entry each; Redis is asked again after 1, 2, 4 ... 32 seconds (then
from 1 again), and counting returns there once it answers. A limiter that fails otherwise never
fails a request: the request is served uncounted and a warning logged, at most once a minute.
Counts in memory are written when the process exits normally (``write_open_summaries``); the
delivery worker writes summaries only of counts kept in Redis, the only ones it can see.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from service import metrics
from service.api.access import presented_token, route_policy
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
# Each scope's setting. The scope is part of its counters' keys, which are shaped as under
# Flask-Limiter (LIMITER/<prefix>/<source>/<scope>/<limit>): counts in a shared Redis carry over.
SCOPE_SETTINGS = {
    "client": "RATE_LIMIT_AUTHENTICATED",
    "address": "RATE_LIMIT_ANONYMOUS",
    "introspection": "RATE_LIMIT_INTROSPECTION",
}
LIMIT_SETTINGS = tuple(SCOPE_SETTINGS.values())
# A request left waiting on an unreachable Redis is a request not served: give up quickly
# (the limits are then counted in this process's memory).
REDIS_OPTIONS: dict[str, str | int] = {"socket_timeout": 1, "socket_connect_timeout": 1}
# While Redis does not answer, it is asked again after 1, 2, 4 ... 2**this seconds, then from 1
# again (Flask-Limiter's schedule, kept): a short outage ends soon, a long one costs a wait now
# and then.
STORAGE_CHECKS = 5
# How often a process looks for closed windows whose summary entries are due.
SUMMARY_CHECK_SECONDS = 1.0
# How many summary entries a request writes at most: the rest wait for later requests (or, with
# Redis, the worker), so no request is held up writing a backlog.
SUMMARIES_PER_REQUEST = 5
# How often in-memory counters look for windows that ended and were not used since.
SWEEP_SECONDS = 1.0
# A warning that could repeat on every request (a flood) is logged at most this often.
WARNING_EVERY_SECONDS = 60.0
_SOURCE = "alertshare.rate_limit_source"
_REFUSED = "alertshare.rate_limited"
# The source of a request whose token could not be checked (the database failed): no limit.
_UNCHECKED = "unchecked"

log = logging.getLogger(__name__)
Warn = Callable[..., None]


def limit_request() -> Response | None:
    """Count this request against the limit of its scope; refuse it (429) if it is over."""
    if request.blueprint in UNLIMITED_BLUEPRINTS:
        return None
    limits: RateLimits = current_app.extensions[EXTENSION]
    try:
        source = request_source()
        scope = _scope_of(source)
        if scope is None:
            return None
        identifiers = (*limits.key_prefix, source.source, scope)
        over = limits.counts.first_over(limits.scopes[scope], identifiers)
    except Exception as error:
        # A failing limiter must not take the service down with it.
        limits.warn("limiter", "a request could not be counted against its rate limit (%s): "
                    "it is served uncounted", type(error).__name__)  # fmt: skip
        return None
    if over is None:
        return None
    return _refused(limits, source, over, identifiers)


def _scope_of(source: Refusal) -> str | None:
    """Return the scope whose limit this request counts against; None for no limit."""
    if source.client_id is not None:
        return "client"
    if request.endpoint in TOKEN_CHECK_ENDPOINTS:  # public: their source is never a client
        return "introspection"
    if source.source == _UNCHECKED:
        return None
    return "address"  # unrouted paths too: they have no endpoint


def _refused(
    limits: RateLimits, source: Refusal, item: RateLimitItem, identifiers: Sequence[str]
) -> Response:
    """Answer a request over its limit: 429, and when to try again."""
    request.environ[_REFUSED] = True
    retry_after = retry_after_seconds(limits, item, identifiers)
    who = "client" if source.client_id is not None else "address"
    metrics.count_refusal(authenticated=who == "client")
    return problem_response(
        Problem(
            429, "too-many-requests", "Too many requests",
            f"Too many requests from this {who} (limit: {item}). "
            f"Retry after {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
    )  # fmt: skip


def retry_after_seconds(limits: RateLimits, item: RateLimitItem, identifiers: Sequence[str]) -> int:
    """Return the seconds until the window of ``item`` counted under ``identifiers`` resets; if
    its storage cannot say (it is asked again, and may just have failed), the whole window: a
    refusal must not become a 500."""
    try:
        reset_at = limits.counts.reset_time(item, identifiers)
    except Exception as error:
        limits.warn("window", "a refused request's window could not be read (%s): it is told "
                    "to retry after the whole window", type(error).__name__)  # fmt: skip
        return max(1, int(item.get_expiry()))
    return max(1, math.ceil(reset_at - time.time()))


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
        # The error's name only: a database error's text would repeat its statement.
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
    policy = route_policy()
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


class Counts:
    """Where the hits are counted: in the configured storage; while a Redis there does not
    answer, in this process's memory, until it answers again."""

    def __init__(self, storage_url: str, warn: Warn) -> None:
        shared = not storage_url.startswith("memory://")
        self.storage = (
            cast(Storage, storage_from_string(storage_url, **REDIS_OPTIONS))
            if shared
            else MemoryCounters()
        )
        self.main = FixedWindowRateLimiter(self.storage)
        # memory:// has nothing to fall back to.
        self.fallback = FixedWindowRateLimiter(MemoryCounters()) if shared else None
        self.current = self.main
        self._warn = warn
        self._checks = 0  # how often Redis was asked since it failed
        self._last_check = 0.0  # when, in monotonic seconds

    def first_over(
        self, items: Sequence[RateLimitItem], identifiers: Sequence[str]
    ) -> RateLimitItem | None:
        """Count a hit against each of ``items``, shortest window first; return the first one
        already at its limit (the longer ones are then not counted), or None."""
        if self.current is not self.main:
            self._return_when_answering()
        try:
            return _first_over(self.current, items, identifiers)
        except Exception as error:
            if self.fallback is None or self.current is self.fallback:
                raise
            self._fall_back(error)
            return _first_over(self.fallback, items, identifiers)

    def reset_time(self, item: RateLimitItem, identifiers: Sequence[str]) -> float:
        """Return when ``item``'s current window ends, in epoch seconds."""
        return self.current.get_window_stats(item, *identifiers).reset_time

    def _fall_back(self, error: Exception) -> None:
        assert self.fallback is not None
        self.current = self.fallback
        # This request has just waited for Redis: the next wait is a second away at the soonest.
        self._last_check = time.monotonic()
        self._warn("storage", "the rate-limit storage failed (%s): limits are counted in this "
                   "process's memory until it answers", type(error).__name__)  # fmt: skip

    def _return_when_answering(self) -> None:
        if self._check_due() and self.storage.check():
            self.current, self._checks = self.main, 0
            log.info("the rate-limit storage answers again: limits are counted there")

    def _check_due(self) -> bool:
        if self._checks > STORAGE_CHECKS:
            self._checks = 0
        now = time.monotonic()
        if now - self._last_check <= 2**self._checks:
            return False
        self._last_check, self._checks = now, self._checks + 1
        return True


class MemoryCounters(Storage):
    """Fixed-window counters in this process's memory, for ``FixedWindowRateLimiter``: as the
    library's ``MemoryStorage`` counts them, without its timer thread. ``clock`` tells the time
    in epoch seconds (a test's own clock)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}  # key: (count, when its window ends)
        self._lock = threading.Lock()  # a threaded server counts from several threads
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError  # as MemoryStorage's; nothing here raises it

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s count; a key without a current window opens one that
        ends ``expiry`` seconds from now. Return the new count."""
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            count, ends = self._current(key, now) or (0, now + expiry)
            self._windows[key] = (count + amount, ends)
            return count + amount

    def get(self, key: str) -> int:
        with self._lock:
            window = self._current(key, self._clock())
        return window[0] if window else 0

    def get_expiry(self, key: str) -> float:
        """Return when ``key``'s window ends; now if it has none."""
        now = self._clock()
        with self._lock:
            window = self._current(key, now)
        return window[1] if window else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        """Forget every count; return how many keys were held."""
        with self._lock:
            held = len(self._windows)
            self._windows.clear()
            return held

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def _current(self, key: str, now: float) -> tuple[int, float] | None:
        window = self._windows.get(key)
        if window is not None and window[1] <= now:
            del self._windows[key]
            return None
        return window

    def _sweep(self, now: float) -> None:
        # Keys of sources not seen again would otherwise be held for the life of the process.
        self._next_sweep = now + SWEEP_SECONDS
        ended = [key for key, (_, ends) in self._windows.items() if ends <= now]
        for key in ended:
            del self._windows[key]


def _first_over(
    limiter: FixedWindowRateLimiter, items: Sequence[RateLimitItem], identifiers: Sequence[str]
) -> RateLimitItem | None:
    for item in items:
        if not limiter.hit(item, *identifiers):
            return item
    return None


class RateLimits:
    """An app's limits by scope, the counts behind them, its tally of refusals, and when it
    next looks for due summaries."""

    def __init__(self, config: Mapping[str, Any], tally: RefusalTally) -> None:
        self.scopes = {scope: limit_items(str(config[setting]))
                       for scope, setting in SCOPE_SETTINGS.items()}  # fmt: skip
        prefix = str(config["RATE_LIMIT_KEY_PREFIX"])
        self.key_prefix = (prefix,) if prefix else ()
        self.counts = Counts(str(config["RATE_LIMIT_STORAGE"]), self.warn)
        self.tally = tally
        self.next_summary_check = 0.0
        self.next_warning: dict[str, float] = {}

    def warn(self, topic: str, message: str, *args: object) -> None:
        """Log a warning about ``topic`` unless one was logged in the last minute."""
        now = time.monotonic()
        if now >= self.next_warning.get(topic, 0.0):
            self.next_warning[topic] = now + WARNING_EVERY_SECONDS
            log.warning(message, *args)


def limit_items(setting: str) -> tuple[RateLimitItem, ...]:
    """Parse a limit setting (``10/second;600/minute``): each limit once, shortest window
    first."""
    return tuple(sorted(dict.fromkeys(parse_many(setting))))


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
    tally = tally_for(storage, prefix, int(config["RATE_LIMIT_SUMMARY_SECONDS"]),
                      **(REDIS_OPTIONS if shared else {}))  # fmt: skip
    app.extensions[EXTENSION] = RateLimits(config, tally)
    # The worker writes summaries from shared counts only: it cannot see a server's memory.
    app.extensions[TALLY_EXTENSION] = tally if shared else None
    app.before_request(limit_request)
    if not shared and not app.testing:
        # A test suite builds many apps on databases it deletes before exiting; tests call
        # write_open_summaries themselves.
        atexit.register(_write_at_exit, weakref.ref(app))
