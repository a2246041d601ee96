"""The delivery worker's loop: claim due deliveries, attempt them, and run the periodic jobs.

Any number of workers may run against one PostgreSQL database (claims skip each other's rows);
on SQLite one is enough. SIGTERM or SIGINT stops the loop gracefully: the delivery being sent is
finished and recorded, the rest of the batch is released for any worker, and ``run`` returns 0.
A worker killed outright leaves leases that expire (``lease`` seconds), after which any worker
sends those deliveries again with the same ``webhook-id``.

Periodic jobs, in the same loop: every minute the review-due announcements
(``announce_reviews_due``) and the summary entries of closed windows of rate-limit refusals
(``write_closed_windows``), and every ``checkpoint_every`` seconds a signed audit checkpoint
when the chain has grown since the newest one (also written to ``checkpoint_dir`` when given).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import func, select

from service import delivery, metrics
from service.audit.append import append, current_head_seq
from service.audit.entry import PendingEntry
from service.audit.refusals import TALLY_EXTENSION, write_closed_windows
from service.audit.verification import create_checkpoint
from service.database import db, today, utcnow
from service.keys import active_keys
from service.metrics.exposition import process_registry, serving
from service.metrics.outbox import OutboxCollector
from service.models.audit import AuditCheckpoint
from service.notifications import announce_reviews_due
from service.unit_of_work import unit_of_work
from service.webhooks.transport import KeptConnections

log = logging.getLogger(__name__)
T = TypeVar("T")

REVIEWS_EVERY = 60.0  # seconds between review-due scans
# Attempts recorded together: up to this many, none waiting longer than this.
RECORD_EVERY = 20
RECORD_WITHIN_SECONDS = 0.5


def default_worker_id() -> str:
    """Return a name unique to this process (``locked_by`` holds 64 characters)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


class _Stop:
    """Set by SIGTERM/SIGINT; waits on it wake at once, so a stopping worker does not sleep."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> None:
        self.event.wait(max(seconds, 0.0))


def run(
    app: Flask,
    *,
    worker_id: str,
    batch: int = 20,
    lease: float = 60.0,
    poll: float = 1.0,
    once: bool = False,
    checkpoint_every: float = 900.0,
    checkpoint_dir: str | None = None,
) -> int:
    """Deliver until stopped by SIGTERM/SIGINT (or, with ``once``, until nothing is due);
    return the exit code (0)."""
    stop = _Stop()
    previous = _install(stop)
    # METRICS_BIND: this worker's own figures and the outbox's, read at each scrape.
    registry = process_registry(OutboxCollector(app.app_context))
    try:
        with serving(app.config.get("METRICS_BIND"), registry), app.app_context():
            return _loop(app, stop, worker_id, batch, lease, poll, once, checkpoint_every,
                         checkpoint_dir)  # fmt: skip
    finally:
        _restore(previous)


def _loop(
    app: Flask,
    stop: _Stop,
    worker_id: str,
    batch: int,
    lease: float,
    poll: float,
    once: bool,
    checkpoint_every: float,
    checkpoint_dir: str | None,
) -> int:
    production = app.config["ENV"] == "production"
    allowed = app.config["WEBHOOK_ALLOWED_NETWORKS"]
    schedule = delivery.parse_schedule(app.config.get("DELIVERY_SCHEDULE"))
    timeout = float(app.config.get("DELIVERY_TIMEOUT", 5.0))
    directory = Path(checkpoint_dir) if checkpoint_dir else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    log.info("worker started", extra={"worker": worker_id})
    connections = KeptConnections()
    next_reviews = next_checkpoint = time.monotonic()
    try:
        while not stop.requested:
            now = time.monotonic()
            if now >= next_reviews:
                _periodic(_announce_reviews, "reviews")
                # Rate-limit refusals counted in shared storage (Redis) by the app servers.
                tally = app.extensions.get(TALLY_EXTENSION)
                _periodic(partial(write_closed_windows, tally), "refusal summaries")
                next_reviews = now + REVIEWS_EVERY
            if checkpoint_every > 0 and now >= next_checkpoint:
                _periodic(lambda: _checkpoint(directory), "checkpoint")
                next_checkpoint = now + checkpoint_every
            claimed = _guarded(partial(delivery.claim_jobs, worker_id, batch, lease, utcnow()))
            sent_to: set[str] = set()  # endpoints this batch has called
            unrecorded: list[delivery.Sent] = []
            for index, job in enumerate(claimed or ()):
                again = job.webhook_id in sent_to
                if unrecorded and (again or _due(unrecorded)):
                    # Record first: a 410 from this endpoint must be on record before it is
                    # read again, and no answer waits long (the batch's lease covers it).
                    _record(unrecorded, worker_id, schedule)
                # Stopping, or too little lease left for this send (slow receivers ate it):
                # hand the rest back rather than risk a second worker sending them too.
                if stop.requested or not job.may_send(utcnow(), timeout):
                    rest = [j.delivery_id for j in claimed[index:]]  # type: ignore[index]
                    _guarded(partial(delivery.release, worker_id, rest))
                    break
                sent = _guarded(partial(delivery.send, job, production=production, timeout=timeout,
                                        allowed=allowed, recheck=again,
                                        connections=connections))  # fmt: skip
                sent_to.add(job.webhook_id)
                if sent is not None:
                    unrecorded.append(sent)
            if unrecorded:
                _record(unrecorded, worker_id, schedule)
            if claimed is None:  # the database failed us: wait, then try again
                stop.wait(poll)
            elif not claimed:
                if once:
                    break
                stop.wait(poll)
    finally:
        connections.close()
        db.session.remove()
        db.engine.dispose()
    log.info("worker stopped", extra={"worker": worker_id})
    return 0


def _due(unrecorded: list[delivery.Sent]) -> bool:
    """Whether the answers waiting to be recorded should be recorded now: several of them (one
    commit, and one turn at the audit chain's head, for all), or one waiting a while."""
    waited = (utcnow() - unrecorded[0].at).total_seconds()
    return len(unrecorded) >= RECORD_EVERY or waited > RECORD_WITHIN_SECONDS


def _record(unrecorded: list[delivery.Sent], worker_id: str, schedule: Sequence[float]) -> None:
    reports = _guarded(partial(delivery.record, list(unrecorded), worker_id, schedule))
    if reports is None and len(unrecorded) > 1:
        # One answer that cannot be recorded must not lose the others (a 410 among them).
        reports = []
        for sent in unrecorded:
            reports.extend(_guarded(partial(delivery.record, [sent], worker_id, schedule)) or ())
    for report in reports or ():
        _log_attempt(report)
        metrics.count_delivery(report.outcome)
    unrecorded.clear()


def _guarded(step: Callable[[], T]) -> T | None:
    """Run one step of the loop; a failure (a database fail-over, a row that cannot be read)
    is logged and rolled back, and the loop goes on. A delivery whose recording failed keeps
    its lease, so it is sent again once the lease runs out."""
    try:
        return step()
    except Exception:
        db.session.rollback()
        log.exception("a delivery step failed; the worker carries on")
        return None


def _periodic(job: Callable[[], Any], name: str) -> None:
    # A failing periodic job (a database blip) must not stop deliveries; it runs again later.
    try:
        job()
    except Exception:
        db.session.rollback()
        log.exception(f"the worker's periodic {name} failed; it runs again later")


def _announce_reviews(batches: int = 20) -> int:
    """Announce overdue reviews, a batch per unit of work with its audit entry (the warnings
    named, nothing else); at most ``batches`` batches a turn, so deliveries are not starved."""
    total = 0
    for _ in range(batches):
        with unit_of_work():
            announced = announce_reviews_due(today())
            if announced:
                entry = PendingEntry(action="warning:review-due", client_id=delivery.AUDIT_CLIENT)
                entry.target("warning", *announced)
                append(entry)
        total += len(announced)
        if not announced:
            break
    return total


def _checkpoint(directory: Path | None) -> int | None:
    """Sign a checkpoint if the chain grew since the newest one; return its seq, or None."""
    with unit_of_work():
        head = current_head_seq()
        newest = db.session.scalar(select(func.max(AuditCheckpoint.seq)))
        if head == 0 or (newest is not None and newest >= head):
            return None
        checkpoint = create_checkpoint(active_keys().keyring.signing_key)
    if directory is not None:
        document = json.dumps(checkpoint.to_json(), indent=2)
        (directory / f"checkpoint-{checkpoint.seq:012d}.json").write_text(document + "\n")
    log.info("audit checkpoint signed", extra={"seq": checkpoint.seq})
    return checkpoint.seq


def _log_attempt(report: delivery.AttemptReport) -> None:
    # Ids, outcome and figures only: never the body, the URL or the receiver's answer.
    log.info("delivery attempt", extra={
        "delivery": report.delivery_id, "notification": report.notification_id,
        "webhook": report.webhook_id, "outcome": report.outcome, "attempts": report.attempts,
        "recorded": report.recorded, "status": report.status, "duration_ms": report.elapsed_ms,
    })  # fmt: skip


Handler = Callable[[int, FrameType | None], Any] | int | None


def _install(stop: _Stop) -> dict[int, Handler]:
    previous: dict[int, Handler] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # signals reach the main thread only; a threaded caller stops otherwise
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, stop)
    return previous


def _restore(previous: dict[int, Handler]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
