"""The transactional outbox: events become rows in the unit of work of the change causing them.

A use case ``emit``s an event; nothing is written or sent then. When the session commits (the
unit of work's commit, ``service.unit_of_work``), ``write_pending`` turns each event into one
notification per recipient agency, and one delivery per webhook endpoint of that agency that
wants the event type, in the same transaction as the change and its audit entry. A rolled-back
unit leaves no event behind. An endpoint registered later gets no history: deliveries exist
only for the endpoints there were as the change was committing (read just before it).

Order: PostgreSQL hands out sequence numbers when rows are inserted, not when they commit, so a
feed reader could see number 11 committed while 10 is still in flight and then skip it for good.
Here notifications are inserted only while holding one transaction-scoped advisory lock, kept
to the commit: whoever inserts next commits next, and feed numbers are in commit order. (SQLite
transactions already run one at a time: every one begins IMMEDIATE.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, event, insert, select, text
from sqlalchemy.orm import Session, SessionTransaction

from service.database import db, utcnow
from service.models.encrypted import new_id
from service.models.involvement import Involvement
from service.models.notification import Delivery, Notification, Webhook, subscribed

PENDING = "alertshare.outbox.pending"
ONCE_DONE = "alertshare.outbox.once-done"
# Once-keys this process knows are committed, so that a repeated event (a practitioner reading
# the same warning again today) costs no query at all. The database stays the authority.
_committed_once: set[str] = set()
_ONCE_MEMORY = 100_000
# pg_advisory_xact_lock's key: any fixed 64-bit number no other code locks on.
OUTBOX_LOCK = 0x616C_6572_7473_6861  # "alertsha"


@dataclass(frozen=True)
class Involved:
    """Recipients decided as the unit of work commits: the agencies working with the household
    then, but ``but`` (the one that acted), and, when ``among`` is given, only those in it
    (a restricted warning's sharers). One query serves every such event of the unit."""

    household_id: str
    but: str
    among: frozenset[str] | None = None


@dataclass(frozen=True)
class Event:
    """Something recipient agencies are told: ids and a risk level, never content."""

    type: str
    recipients: frozenset[str] | Involved  # agency ids, or who works with the household
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


def has_pending(session: Session) -> bool:
    """Say whether the session holds events queued for its commit."""
    return bool(session.info.get(PENDING))


@contextmanager
def kept_across_rollback(session: Session) -> Iterator[None]:
    """Keep the session's queued events across a rollback inside the block.

    For a request whose reads ran outside a transaction (``service.api.recording``): it ends
    that, and its events are written in the transaction that follows, with its audit entry.
    """
    pending = session.info.pop(PENDING, None)
    try:
        yield
    finally:
        if pending:
            session.info[PENDING] = pending


def seen_once(event: Event) -> bool:
    """Say whether this process already knows every recipient's copy of ``event`` is written."""
    return (
        event.once_key is not None
        and isinstance(event.recipients, frozenset)
        and all(_once_key(event, agency) in _committed_once for agency in event.recipients)
    )


def write_pending(session: Session) -> int:
    """Write the session's queued events as notifications and deliveries (before commit);
    return how many notifications were written."""
    queued: list[Event] = session.info.pop(PENDING, [])
    if not queued:
        return 0
    # Statements of their own, on the connection (no ORM instances): every change that tells
    # anyone runs them, publishing a warning most of all. They see the unit's own changes, and
    # the lock is taken with no flush to come.
    session.flush()
    connection = session.connection()
    addressed, endpoints = _addressed(connection, queued)
    events = [(e, told) for e, told in addressed if told]
    if not events:
        return 0  # nobody to tell: no lock taken
    if connection.dialect.name == "postgresql":
        connection.execute(_LOCK_OUTBOX, {"key": OUTBOX_LOCK})
    unread = {agency for _, told in events for agency in told} - endpoints.keys()
    if unread:  # recipients named outright rather than as the household's agencies
        rows = connection.execute(_LIVE_WEBHOOKS, {"agencies": list(unread)})
        for webhook_id, agency_id, event_types in rows:
            endpoints.setdefault(agency_id, []).append((webhook_id, event_types))
    keys = [_once_key(e, agency) for e, told in events for agency in told if e.once_key]
    seen = set()
    if keys:  # read under the lock: a key committed by anyone before us is visible here
        once_keys = select(Notification.once_key).where(Notification.once_key.in_(keys))
        seen = set(connection.scalars(once_keys))
    session.info.setdefault(ONCE_DONE, set()).update(keys)  # written now, or before
    now = utcnow()
    notifications: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for e, told in events:
        for agency in sorted(told):
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
                {"id": new_id(), "notification_id": notification_id, "webhook_id": webhook_id,
                 "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now}
                for webhook_id, event_types in endpoints.get(agency, ())
                if subscribed(event_types, e.type)
            )  # fmt: skip
    # One statement per table however many agencies are told, whatever the events: every row
    # has the same columns (a notification's None is written as NULL).
    if notifications:
        connection.execute(_INSERT_NOTIFICATIONS, notifications)
    if deliveries:
        connection.execute(_INSERT_DELIVERIES, deliveries)
    return len(notifications)


# An agency's live webhook endpoints, in the order they were registered: (id, event types).
Endpoints = dict[str, list[tuple[str, str]]]


def _addressed(
    connection: Connection, events: list[Event]
) -> tuple[list[tuple[Event, frozenset[str]]], Endpoints]:
    """Name every event's recipients, reading who works with the households, and their live
    webhook endpoints, in one query; return them, and the endpoints of the agencies read."""
    households = {e.recipients.household_id for e in events if isinstance(e.recipients, Involved)}
    working: dict[str, set[str]] = defaultdict(set)
    endpoints: Endpoints = {}
    if households:
        rows = connection.execute(_WORKING_WITH, {"households": list(households)})
        for household_id, agency_id, webhook_id, event_types in rows:
            working[household_id].add(agency_id)
            hooks = endpoints.setdefault(agency_id, [])
            if webhook_id is not None and (webhook_id, event_types) not in hooks:
                hooks.append((webhook_id, event_types))  # once, whatever its households
    named = []
    for e in events:
        audience = e.recipients
        if isinstance(audience, Involved):
            agencies = working[audience.household_id] - {audience.but}
            if audience.among is not None:
                agencies &= audience.among
            audience = frozenset(agencies)
        named.append((e, audience))
    return named, endpoints


# Built once (compiled forms and cache keys reused): every change that tells anyone runs them.
_LOCK_OUTBOX = text("SELECT pg_advisory_xact_lock(:key)")
_INSERT_NOTIFICATIONS = insert(Notification)
_INSERT_DELIVERIES = insert(Delivery)
_LIVE = (Webhook.disabled_at.is_(None), Webhook.deleted_at.is_(None))
_LIVE_WEBHOOKS = (
    select(Webhook.id, Webhook.agency_id, Webhook.event_types)
    .where(Webhook.agency_id.in_(bindparam("agencies", expanding=True)), *_LIVE)
    .order_by(Webhook.created_at)
)
_WORKING_WITH = (
    select(Involvement.household_id, Involvement.agency_id, Webhook.id, Webhook.event_types)
    .outerjoin(Webhook, and_(Webhook.agency_id == Involvement.agency_id, *_LIVE))
    .where(
        Involvement.household_id.in_(bindparam("households", expanding=True)),
        Involvement.ended_at.is_(None),
    )
    .order_by(Webhook.created_at)
)


def _once_key(event: Event, agency_id: str) -> str:
    return f"{event.once_key}:{agency_id}"


# These hooks also fire when a savepoint is released or rolled back; only the transaction's
# own commit or rollback counts.


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    # Part of every commit (a unit of work's, or a test's own): the events go with the work.
    if not session.in_nested_transaction():
        write_pending(session)


@event.listens_for(Session, "after_soft_rollback")
def _forget_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    # Whatever rolled back, the events it caused did not happen. (A savepoint's rollback keeps
    # them: use cases emit after their savepoints, for what the savepoint protected.)
    if not previous_transaction.nested:
        session.info.pop(PENDING, None)
        session.info.pop(ONCE_DONE, None)


@event.listens_for(Session, "after_commit")
def _remember_once(session: Session) -> None:
    if session.in_nested_transaction():
        return
    done = session.info.pop(ONCE_DONE, None)
    if done:
        if len(_committed_once) + len(done) > _ONCE_MEMORY:
            _committed_once.clear()
        _committed_once.update(done)
