"""What alertshare measures, in Prometheus terms: the metrics and the one call that records each.

Labels hold route templates, methods, statuses and fixed outcomes, never a path, an id or
anything else a caller chooses: ids are personal-adjacent and unbounded, and a label per value
would grow without limit. Recording is one counter increment and one histogram observation per
request (in gunicorn's multiprocess mode, a few writes to a memory-mapped file); nothing here
touches the database. The outbox's figures are read at scrape time instead
(``service.metrics.outbox``), and served with these by ``service.metrics.exposition``.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Histogram

# A method outside these is a client's invention: counted as "other" so it cannot add series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "(unmatched)"  # no route: a 404, or a method the path does not take
REFUSAL_KINDS = ("anonymous", "authenticated")
DELIVERY_OUTCOMES = ("delivered", "retry", "dead", "failed", "gone")

HTTP_REQUESTS = Counter(
    "alertshare_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "alertshare_http_request_duration_seconds",
    "Time from a request's first hook to its response, audit commit included.",
    ["route", "method"],
)
AUDIT_APPEND_SECONDS = Histogram(
    "alertshare_audit_append_seconds",
    "Time to append to the audit chain (one entry, or one batch of the delivery worker's), "
    "waiting for the chain head included.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RATE_LIMIT_REFUSALS = Counter(
    "alertshare_rate_limit_refusals",
    "Requests refused with 429 over a rate limit: per source address (anonymous) or per OAuth "
    "client (authenticated).",
    ["kind"],
)
DELIVERIES = Counter(
    "alertshare_deliveries",
    "Webhook delivery attempts recorded by this delivery worker, by outcome.",
    ["outcome"],
)

# Known label values start at 0, so that rate() and increase() see the first event too.
for _kind in REFUSAL_KINDS:
    RATE_LIMIT_REFUSALS.labels(kind=_kind)
for _outcome in DELIVERY_OUTCOMES:
    DELIVERIES.labels(outcome=_outcome)


def observe_request(route: str | None, method: str, status: int, seconds: float | None) -> None:
    """Count one answered request under its route template (None: no route matched)."""
    route = route or UNMATCHED_ROUTE
    method = method if method in METHODS else "other"
    count, duration = _request_series(route, method, status)
    count.inc()
    if seconds is not None:
        duration.observe(seconds)


@functools.cache
def _request_series(route: str, method: str, status: int) -> tuple[Any, Any]:
    # A labelled series is looked up by its label values under a lock: once per route, method
    # and status is enough (they are finitely many: route templates, not paths).
    return HTTP_REQUESTS.labels(route, method, str(status)), HTTP_REQUEST_SECONDS.labels(
        route, method
    )


def count_refusal(authenticated: bool) -> None:
    """Count one request refused over a rate limit."""
    RATE_LIMIT_REFUSALS.labels("authenticated" if authenticated else "anonymous").inc()


def count_delivery(outcome: str) -> None:
    """Count one recorded delivery attempt (``delivery.AttemptReport.outcome``)."""
    DELIVERIES.labels(outcome).inc()
