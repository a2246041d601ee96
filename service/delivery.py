"""Use cases of the delivery worker: claim due webhook deliveries, send each, record the result.

The outbox (``service.outbox``) leaves one ``pending`` delivery per notification and webhook
endpoint. A worker ``claim_jobs`` a batch (a lease: ``locked_by`` and ``locked_until``, and what
each delivery sends, committed before anything is sent), then ``send``s each with no
transaction open, and ``record``s the answers, a few at a time, in one unit of work with an
audit entry each. Delivery is at least once: a worker killed after sending but before
recording leaves a lease that expires, and another worker sends again with the same
``webhook-id`` (the notification id), which receivers use to drop the duplicate.

Statuses: ``pending`` (due at ``next_attempt_at``), ``delivered``, ``failed`` (the receiver or
its endpoint refused for good: 4xx, 410, disabled, an unsafe address) and ``dead`` (retried
through the whole schedule). A replay makes a delivery ``pending`` again with ``attempts`` 0,
``first_attempt_at`` None and ``next_attempt_at`` now; the next claim takes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from service.audit.append import append_all
from service.audit.entry import PendingEntry
from service.crypto import DecryptionError
from service.database import db, utcnow
from service.models.notification import Delivery, Notification, Webhook
from service.notifications import case_references, payload
from service.outbox import Event, emit
from service.unit_of_work import unit_of_work
from service.webhooks.addresses import CheckedTarget, IPNetwork, UnsafeTarget, check_url
from service.webhooks.schedule import DEFAULT_SCHEDULE, delay_after_failure
from service.webhooks.signing import sign
from service.webhooks.transport import Attempt, KeptConnections, deliver

AUDIT_CLIENT = "alertshare-worker"
AUDIT_ACTION = "delivery:attempt"
_TEXT_CHARS = 300  # the width of last_error
# Seconds a lease must have left beyond the send's own timeout when sending starts.
RECORD_SECONDS = 2.0
# How old the claim's reading of an endpoint may be when sending; older is read again.
ENDPOINT_FRESH_SECONDS = 1.0
# At most this long to resolve a receiver's name (getaddrinfo itself has no time limit).
RESOLVE_SECONDS = 2.0
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


@dataclass(frozen=True)
class AttemptReport:
    """What one ``attempt`` did, for the worker's log: ids and figures, never contents.

    ``outcome``: ``delivered``, ``retry`` (scheduled again), ``dead`` (schedule exhausted),
    ``failed`` (refused for good), ``gone`` (410: the endpoint is now disabled), or ``skipped``
    (nothing sent: the delivery is no longer pending or no longer leased to this worker).
    ``recorded`` is False when the lease was lost while sending, so another worker owns it.
    """

    delivery_id: str
    outcome: str
    notification_id: str | None = None
    webhook_id: str | None = None
    status: int | None = None
    attempts: int = 0
    elapsed_ms: int = 0
    error: str | None = None
    recorded: bool = True


@dataclass(frozen=True)
class Job:
    """One leased delivery, ready to send: plain values read in the claim's transaction."""

    delivery_id: str
    notification_id: str
    webhook_id: str
    agency_id: str
    url: str
    body: bytes
    leased_until: datetime
    # The endpoint as the claim read it: why not to send to it (or None), the signing secrets.
    endpoint: tuple[str | None, tuple[str, ...]]
    read_at: datetime

    def may_send(self, now: datetime, timeout: float) -> bool:
        """Say whether the lease outlasts a send started now and its recording; past that,
        another worker may claim the delivery while this one is still sending it."""
        budget = RESOLVE_SECONDS + timeout + RECORD_SECONDS
        return now + timedelta(seconds=budget) < self.leased_until


def parse_schedule(text: str | Sequence[float] | None) -> tuple[float, ...]:
    """Return a retry schedule from ``DELIVERY_SCHEDULE`` (comma-separated seconds)."""
    if text is None or text == "":
        return DEFAULT_SCHEDULE
    if not isinstance(text, str):
        steps = tuple(float(step) for step in text)
    else:
        steps = tuple(float(step) for step in text.split(",") if step.strip())
    if not steps or any(step <= 0 for step in steps):
        raise ValueError("a delivery schedule needs one or more positive numbers of seconds")
    return steps


def claim_jobs(worker_id: str, batch: int, lease_seconds: float, now: datetime) -> list[Job]:
    """Lease up to ``batch`` due deliveries to ``worker_id``, oldest due first, and read what
    each sends, in one unit of work committed before anything is sent.

    Due: pending, ``next_attempt_at`` reached, and no live lease. PostgreSQL skips rows another
    worker's claim holds (``SKIP LOCKED``); SQLite needs nothing more, since each of its
    transactions begins IMMEDIATE and so runs alone. One transaction per batch, not per
    delivery: the round trips, not the CPU, bound a single worker's rate.
    """
    until = now + timedelta(seconds=lease_seconds)
    with unit_of_work():
        return _jobs(_claim(worker_id, batch, until, now), until, now)


def _claim(worker_id: str, batch: int, until: datetime, now: datetime) -> list[str]:
    query = (
        select(Delivery.id)
        .where(
            Delivery.status == "pending",
            Delivery.next_attempt_at <= now,
            or_(Delivery.locked_until.is_(None), Delivery.locked_until < now),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.session.scalars(query))
    if ids:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(locked_until=until, locked_by=worker_id)
            .execution_options(synchronize_session=False)
        )
    return ids


def release(worker_id: str, delivery_ids: Sequence[str]) -> int:
    """Give back leases not used (a worker stopping mid-batch), so any worker may claim them
    at once rather than when the lease runs out; return how many were released."""
    if not delivery_ids:
        return 0
    with unit_of_work():
        result = db.session.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(delivery_ids),
                Delivery.locked_by == worker_id,
                Delivery.status == "pending",
            )
            .values(locked_until=None, locked_by=None)
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Sent:
    """What happened to one job: the receiver's answer (``result``), or why nothing was sent
    (``refusal``). Recorded later, with others, by ``record``."""

    job: Job
    result: Attempt | None
    refusal: str | None = None
    at: datetime = field(default_factory=utcnow)


def send(
    job: Job,
    *,
    production: bool,
    allowed: Iterable[IPNetwork] = (),
    timeout: float = 5.0,
    recheck: bool = False,
    connections: KeptConnections | None = None,
) -> Sent:
    """Check the endpoint, sign and POST ``job``'s body; write nothing (see ``record``). No
    transaction is open while the receiver is called.

    ``allowed``: the networks production may reach besides public addresses
    (``ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS``, see ``check_url``).

    ``recheck``: the batch has already sent to this endpoint (its answer may have disabled it).
    ``connections``: the worker's kept connections, reused where the checked address is the same.
    """
    # An endpoint disabled (a 410 to an earlier delivery of the batch), deleted or re-keyed
    # since the claim must not be sent the old way: read it again unless the claim's reading is
    # fresh and nothing has been sent to it since.
    refusal, secrets = job.endpoint
    if recheck or (utcnow() - job.read_at).total_seconds() > ENDPOINT_FRESH_SECONDS:
        refusal, secrets = _endpoint_now(job.webhook_id)
    if refusal is not None:
        return Sent(job, None, refusal)
    try:
        target: CheckedTarget = _check_in_time(job.url, production, tuple(allowed))
    except UnsafeTarget as unsafe:
        if unsafe.transient:
            return Sent(job, Attempt("retry", None, unsafe.reason, "", None, 0))
        return Sent(job, None, f"unsafe endpoint: {unsafe.reason}")
    # A fresh timestamp and signature on every attempt; the id stays the notification's.
    headers = sign(secrets, job.notification_id, utcnow(), job.body)
    return Sent(job, deliver(target, job.body, headers, timeout=timeout, connections=connections))


def _endpoint_now(webhook_id: str) -> tuple[str | None, tuple[str, ...]]:
    """Read the endpoint afresh (see ``_endpoint``)."""
    with unit_of_work():
        query = select(Webhook).where(Webhook.id == webhook_id)
        return _endpoint(
            db.session.scalars(query.execution_options(populate_existing=True)).one(), utcnow()
        )


def _endpoint(webhook: Webhook, now: datetime) -> tuple[str | None, tuple[str, ...]]:
    """Why not to send to the endpoint (or None), and the secrets that sign now."""
    if webhook.deleted_at is not None or webhook.disabled_at is not None:
        return "endpoint disabled", ()
    try:
        return None, tuple(webhook.signing_secrets(now))
    except DecryptionError:  # the attempt's error says so; retrying would not help
        return "the endpoint's signing secret cannot be opened", ()


def _check_in_time(url: str, production: bool, allowed: tuple[IPNetwork, ...]) -> CheckedTarget:
    """``check_url`` with a deadline on the name look-up; a slow resolver counts as one that
    does not answer (retried later), so a lease is never outrun."""
    future = _resolver.submit(check_url, url, production=production, allowed=allowed)
    try:
        return future.result(timeout=RESOLVE_SECONDS)
    except FuturesTimeout:
        raise UnsafeTarget("the host name did not resolve in time", transient=True) from None


def _jobs(ids: list[str], leased_until: datetime, now: datetime) -> list[Job]:
    """Read what each delivery sends: two queries however many there are."""
    if not ids:
        return []
    rows = db.session.execute(
        select(Delivery, Notification, Webhook)
        .join(Notification, Notification.id == Delivery.notification_id)
        .join(Webhook, Webhook.id == Delivery.webhook_id)
        .where(Delivery.id.in_(ids))
    )
    found = {delivery.id: (notification, webhook) for delivery, notification, webhook in rows}
    references = case_references(
        {(n.agency_id, n.household_id) for n, _ in found.values() if n.household_id}
    )
    jobs = []
    for delivery_id in ids:  # in claim order: oldest due first
        notification, webhook = found[delivery_id]
        reference = references.get((notification.agency_id, notification.household_id or ""))
        body = json.dumps(
            payload(notification, reference), separators=(",", ":"), default=_json_value
        ).encode("utf-8")
        jobs.append(
            Job(
                delivery_id=delivery_id,
                notification_id=notification.id,
                webhook_id=webhook.id,
                agency_id=webhook.agency_id,
                url=webhook.url,
                body=body,
                leased_until=leased_until,
                endpoint=_endpoint(webhook, now),
                read_at=now,
            )
        )
    return jobs


def record(
    sent: Sequence[Sent], worker_id: str, schedule: Sequence[float] = DEFAULT_SCHEDULE
) -> list[AttemptReport]:
    """Record attempts (and refusals to make one) in one unit of work, each with its audit
    entry: one commit for several deliveries, so workers hold the audit chain's head briefly.
    The deliveries' changes are written first and the entries appended last, together: the
    head is taken only for the end of the transaction."""
    reports, entries = [], []
    with unit_of_work():
        rows = db.session.scalars(
            select(Delivery)
            .where(Delivery.id.in_([s.job.delivery_id for s in sent]))
            .order_by(Delivery.id)  # one lock order for every worker
            .with_for_update()
        )
        found = {delivery.id: delivery for delivery in rows}
        for item in sent:
            report, entry = _record_one(found[item.job.delivery_id], item, worker_id, schedule)
            reports.append(report)
            if entry is not None:
                entries.append(entry)
        db.session.flush()
        append_all(entries)
    return reports


def _record_one(
    delivery: Delivery, sent: Sent, worker_id: str, schedule: Sequence[float]
) -> tuple[AttemptReport, PendingEntry | None]:
    """Apply ``sent`` to ``delivery`` if the lease is still ours; return the report and the
    audit entry to append (None for a refusal to send a delivery no longer ours)."""
    job, result = sent.job, sent.result
    status = result.status if result is not None else None
    error = (result.error if result is not None else sent.refusal) or None
    # Still ours: a lease that ran out and was taken over belongs to the other worker, which
    # records its own attempt; ours is then only audited.
    ours = delivery.locked_by == worker_id and delivery.status == "pending"
    outcome: str = "failed" if result is None else result.outcome
    if ours:
        outcome = _apply(delivery, job, result, error, outcome, sent.at, schedule)
    entry = None
    if result is not None or ours:
        entry = PendingEntry(
            action=AUDIT_ACTION, agency_id=None, client_id=AUDIT_CLIENT, status=status or 0,
            outcome="allowed" if outcome == "delivered" else "failed",
        )  # fmt: skip
        entry.target("delivery", job.delivery_id)
        entry.target("notification", job.notification_id)
        entry.target("webhook", job.webhook_id)
    report = AttemptReport(
        delivery_id=job.delivery_id,
        outcome=outcome,
        notification_id=job.notification_id,
        webhook_id=job.webhook_id,
        status=status,
        attempts=delivery.attempts,
        elapsed_ms=result.elapsed_ms if result is not None else 0,
        error=error,
        recorded=ours,
    )
    return report, entry


def _apply(
    delivery: Delivery,
    job: Job,
    result: Attempt | None,
    error: str | None,
    outcome: str,
    now: datetime,
    schedule: Sequence[float],
) -> str:
    """Set the delivery's fields for ``result`` and return the final outcome."""
    delivery.locked_until = None
    delivery.locked_by = None
    delivery.last_error = error[:_TEXT_CHARS] if error else None
    if result is None:  # nothing was sent: not an attempt, a refusal to make one
        delivery.status, delivery.finished_at = "failed", now
        return "failed"
    delivery.attempts += 1
    if delivery.first_attempt_at is None:
        delivery.first_attempt_at = now
    delivery.last_status = result.status
    if outcome == "delivered":
        delivery.status, delivery.finished_at = "delivered", now
    elif outcome == "retry":
        elapsed = (now - delivery.first_attempt_at).total_seconds()
        wait = delay_after_failure(
            delivery.attempts, elapsed=elapsed, retry_after=result.retry_after, schedule=schedule
        )
        if wait is None:
            delivery.status, delivery.finished_at = "dead", now
            outcome = "dead"
        else:
            delivery.next_attempt_at = now + timedelta(seconds=wait)
    elif outcome == "gone":
        delivery.status, delivery.finished_at = "failed", now
        _disable(job, now)
    else:
        delivery.status, delivery.finished_at = "failed", now
    return outcome


def _disable(job: Job, now: datetime) -> None:
    """The receiver answered 410: stop calling the endpoint, and tell its agency in its feed."""
    webhook = db.session.get(Webhook, job.webhook_id)
    if webhook is None or webhook.disabled_at is not None:
        return
    webhook.disabled_at = now
    webhook.disabled_reason = "the receiver answered 410 Gone"
    emit(Event("webhook.disabled", frozenset({job.agency_id}), subject_id=job.webhook_id))


def _json_value(value: Any) -> str:
    """JSON for what ``payload`` holds beyond JSON's own types: ISO 8601 times, in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()  # as the API and the feed write times
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} in a webhook")
