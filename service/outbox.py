"""The transactional outbox: events become rows in the unit of work of the change causing them.

A use case ``emit``s an event; nothing is written or sent then. When the unit of work commits
(``service.unit_of_work``), ``write_pending`` turns each event into one notification per
recipient agency, and one delivery per webhook endpoint of that agency that wants the event
type, in the same transaction as the change and its audit entry. A rolled-back unit leaves no
event behind. An endpoint registered later gets no history: deliveries exist only for the
endpoints there were when the event committed.

Order: PostgreSQL hands out sequence numbers when rows are inserted, not when they commit, so a
feed reader could see number 11 committed while 10 is still in flight and then skip it for good.
Here notifications are inserted only while holding one transaction-scoped advisory lock, kept
to the commit: whoever inserts next commits next, and feed numbers are in commit order. (SQLite
transactions already run one at a time: every one begins IMMEDIATE.)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session

from service.database import db, utcnow
from service.models.encrypted import new_id
from service.models.notification import Delivery, Notification, Webhook

PENDING = "alertshare.outbox.pending"
ONCE_DONE = "alertshare.outbox.once-done"
# Once-keys this process knows are committed, so that a repeated event (a practitioner reading
# the same warning again today) costs no query at all. The database stays the authority.
_committed_once: set[str] = set()
_ONCE_MEMORY = 100_000
# pg_advisory_xact_lock's key: any fixed 64-bit number no other code locks on.
OUTBOX_LOCK = 0x616C_6572_7473_6861  # "alertsha"


@dataclass(frozen=True)
class Event:
    """Something recipient agencies are told: ids and a risk level, never content."""

    type: str
    recipients: frozenset[str]  # agency ids
    household_id: str | None = None
    warning_id: str | None = None
    subject_id: str | None = None  # the incident or involvement the event is about
    risk_level: str | None = None
    # Events that happen at most once carry a key; a recipient's notification is written only
    # if no notification has carried that key before.
    once_key: str | None = None


def emit(event: Event) -> None:
    """Queue ``event`` to be written when the current unit of work commits."""
    if event.recipients:
        db.session.info.setdefault(PENDING, []).append(event)


def seen_once(event: Event) -> bool:
    """Say whether this process already knows every recipient's copy of ``event`` is written."""
    return event.once_key is not None and all(
        _once_key(event, agency) in _committed_once for agency in event.recipients
    )


def write_pending(session: Session) -> int:
    """Write the session's queued events as notifications and deliveries (before commit);
    return how many notifications were written."""
    events: list[Event] = session.info.pop(PENDING, [])
    if not events:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": OUTBOX_LOCK})
    agencies = {agency for e in events for agency in e.recipients}
    endpoints: dict[str, list[Webhook]] = defaultdict(list)
    live = select(Webhook).where(
        Webhook.agency_id.in_(agencies), Webhook.disabled_at.is_(None), Webhook.deleted_at.is_(None)
    )
    for webhook in session.scalars(live.order_by(Webhook.created_at)):
        endpoints[webhook.agency_id].append(webhook)
    keys = [_once_key(e, agency) for e in events for agency in e.recipients if e.once_key]
    seen = set()
    if keys:  # read under the lock: a key committed by anyone before us is visible here
        seen = set(
            session.scalars(select(Notification.once_key).where(Notification.once_key.in_(keys)))
        )
    session.info.setdefault(ONCE_DONE, set()).update(keys)  # written now, or before
    now = utcnow()
    notifications: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for e in events:
        for agency in sorted(e.recipients):
            once_key = _once_key(e, agency) if e.once_key else None
            if once_key is not None:
                if once_key in seen:
                    continue
                seen.add(once_key)
            notification_id = new_id()
            notifications.append({
                "id": notification_id, "agency_id": agency, "type": e.type,
                "household_id": e.household_id, "warning_id": e.warning_id,
                "subject_id": e.subject_id, "risk_level": e.risk_level, "once_key": once_key,
                "created_at": now,
            })  # fmt: skip
            deliveries.extend(
                {"id": new_id(), "notification_id": notification_id, "webhook_id": webhook.id,
                 "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now}
                for webhook in endpoints[agency] if webhook.receives(e.type)
            )  # fmt: skip
    # Bulk inserts: one statement per table however many agencies are told.
    if notifications:
        session.execute(insert(Notification), notifications)
    if deliveries:
        session.execute(insert(Delivery), deliveries)
    return len(notifications)


def _once_key(event: Event, agency_id: str) -> str:
    return f"{event.once_key}:{agency_id}"


@event.listens_for(Session, "after_soft_rollback")
def _forget_pending(session: Session, previous_transaction: object) -> None:
    # Whatever rolled back, the events it caused did not happen.
    session.info.pop(PENDING, None)
    session.info.pop(ONCE_DONE, None)


@event.listens_for(Session, "after_commit")
def _remember_once(session: Session) -> None:
    done = session.info.pop(ONCE_DONE, None)
    if done:
        if len(_committed_once) + len(done) > _ONCE_MEMORY:
            _committed_once.clear()
        _committed_once.update(done)
