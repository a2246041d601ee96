"""The outbox's figures, read from the database when a scrape asks for them.

How many deliveries wait, how long the oldest has, and how many are dead letters are facts
about the database, not about one process: counting them as they change would need every app
server and worker to agree, and a gauge kept in memory goes stale when its process stops. A
query at scrape time (two indexed aggregates, every 15 s or so) is exact and costs nothing
between scrapes. A scrape that cannot reach the database leaves these series out (alert on
their absence) rather than failing the whole scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from service.database import db, utcnow
from service.models.notification import Delivery

log = logging.getLogger(__name__)
# A scrape must not hold a connection for long when the database is struggling.
QUERY_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class OutboxFigures:
    """The outbox at one moment: pending deliveries (and those due now), dead letters, ages."""

    pending: int
    due: int
    dead: int
    oldest_pending_age: float  # seconds since the oldest pending delivery was written
    oldest_due_wait: float  # seconds the longest-waiting due delivery has been due


def outbox_figures(now: datetime) -> OutboxFigures:
    """Read the outbox's figures at ``now`` in the current transaction."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}")
    by_status = {
        status: (count, oldest)
        for status, count, oldest in db.session.execute(
            select(Delivery.status, func.count(), func.min(Delivery.created_at))
            .where(Delivery.status.in_(("pending", "dead")))
            .group_by(Delivery.status)
        )
    }
    due, due_since = db.session.execute(
        select(func.count(), func.min(Delivery.next_attempt_at)).where(
            Delivery.status == "pending", Delivery.next_attempt_at <= now
        )
    ).one()
    pending, oldest = by_status.get("pending", (0, None))
    return OutboxFigures(
        pending=int(pending),
        due=int(due),
        dead=int(by_status.get("dead", (0, None))[0]),
        oldest_pending_age=_seconds_since(oldest, now),
        oldest_due_wait=_seconds_since(due_since, now),
    )


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0) if moment is not None else 0.0


_FAMILIES = (
    ("alertshare_outbox_pending", "Webhook deliveries waiting to be sent, due or in backoff."),
    ("alertshare_outbox_due", "Pending webhook deliveries whose time has come (the backlog)."),
    ("alertshare_dead_letters", "Webhook deliveries dead-lettered after the whole retry "
     "schedule, until replayed."),  # fmt: skip
    ("alertshare_outbox_oldest_pending_age_seconds",
     "Seconds since the oldest pending delivery was written (0 when none is pending)."),
    ("alertshare_outbox_due_wait_seconds",
     "Seconds the longest-waiting due delivery has been due (0 when none is): how far the "
     "delivery workers are behind."),
)  # fmt: skip


class OutboxCollector:
    """A Prometheus collector reading the outbox at each scrape, inside ``context`` (an app
    context: the database session is the scraping thread's own, removed afterwards)."""

    def __init__(self, context: Callable[[], AbstractContextManager[Any]]) -> None:
        self._context = context

    def describe(self) -> Iterator[Metric]:
        for name, documentation in _FAMILIES:
            yield GaugeMetricFamily(name, documentation)

    def collect(self) -> Iterator[Metric]:
        try:
            with self._context():
                try:
                    figures = outbox_figures(utcnow())
                finally:
                    db.session.remove()
        except Exception as error:  # the error's name only: its text could repeat a statement
            log.warning("outbox figures not read for a scrape (%s)", type(error).__name__)
            return
        values = (figures.pending, figures.due, figures.dead, figures.oldest_pending_age,
                  figures.oldest_due_wait)  # fmt: skip
        for (name, documentation), value in zip(_FAMILIES, values, strict=True):
            yield GaugeMetricFamily(name, documentation, value=value)
