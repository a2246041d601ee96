"""Use cases for telling agencies: which events a change causes and to whom, the feed each agency
reads (or is sent by webhook), and acknowledging what it read.

Who is told follows the need-to-know rule: the agencies working with the household now, never
the one that acted; for a restricted warning only those it is shared with. What they are told is
thin (``payload``): ids, a risk level and the recipient's own case reference.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, select, tuple_
from sqlalchemy.exc import IntegrityError

from service.database import db, utcnow
from service.errors import NotFound
from service.models.incident import Incident
from service.models.involvement import Involvement
from service.models.notification import (
    Acknowledgement,
    AgencyNotificationSettings,
    Notification,
)
from service.models.warning import WarningMarker, WarningRow
from service.outbox import Event, Involved, emit, seen_once

# A warning's change (as its versions name it) and the event it is announced as.
_WARNING_EVENTS = {
    "published": "warning.published",
    "updated": "warning.updated",
    "withdrawn": "warning.withdrawn",
    "closed": "warning.closed",
}
FEED_LIMIT = 500


def warning_changed(warning: WarningMarker, change: str) -> None:
    """Announce a warning's new version (a review announces itself as an update or a close) to
    the agencies working with the household but its issuer; for a restricted warning, only
    those of them it is shared with."""
    if change == "reviewed":
        change = "closed" if warning.status == "inactive" else "updated"
    among = frozenset(warning.shared_with) if warning.handling == "restricted" else None
    emit(Event(_WARNING_EVENTS[change],
               Involved(warning.household_id, but=warning.issuing_agency_id, among=among),
               household_id=warning.household_id, warning_id=warning.id,
               risk_level=warning.risk_level))  # fmt: skip


def involvement_added(household_id: str, agency_id: str) -> None:
    """Tell the other agencies working with the household that one more now is (joint work;
    and a self-declared involvement is never silent)."""
    emit(Event("involvement.added", Involved(household_id, but=agency_id),
               household_id=household_id, subject_id=agency_id))  # fmt: skip


def incident_recorded(incident: Incident) -> None:
    """Tell the other agencies working with the household an incident was recorded there."""
    emit(Event("incident.recorded", Involved(incident.household_id, but=incident.agency_id),
               household_id=incident.household_id, subject_id=incident.id))  # fmt: skip


def warnings_read(warnings: Iterable[WarningMarker | WarningRow], reader: str, today: date) -> None:
    """Tell each issuer that another agency read its warning's detail: once per reader agency,
    warning and day, unless the issuer has turned this off."""
    told = [
        (w.issuing_agency_id, Event(
            "warning.accessed", frozenset({w.issuing_agency_id}), household_id=w.household_id,
            warning_id=w.id, subject_id=reader, risk_level=w.risk_level,
            once_key=f"warning.accessed:{w.id}:{reader}:{today.isoformat()}"))
        for w in warnings if w.issuing_agency_id != reader
    ]  # fmt: skip
    told = [(issuer, e) for issuer, e in told if not seen_once(e)]  # a re-read: no query
    if not told:
        return
    issuers = {issuer for issuer, _ in told}
    off = set(db.session.scalars(
        select(AgencyNotificationSettings.agency_id).where(
            AgencyNotificationSettings.agency_id.in_(issuers),
            AgencyNotificationSettings.warning_accessed.is_(False),
        )
    ))  # fmt: skip
    for issuer, event in told:
        if issuer not in off:
            emit(event)


def announce_reviews_due(today: date, limit: int = 500) -> list[str]:
    """Tell issuers of active warnings whose review date has passed: once per warning and date.

    Returns the warnings announced (the worker's scheduler calls this until there are none).
    """
    # Announced already for the current review date: a review since would have updated it.
    announced = exists().where(
        Notification.type == "warning.review_due",
        Notification.warning_id == WarningMarker.id,
        Notification.created_at >= WarningMarker.updated_at,
    )
    query = select(WarningMarker).where(
        WarningMarker.status == "active", WarningMarker.review_by < today, ~announced
    )
    due = list(db.session.scalars(query.order_by(WarningMarker.review_by).limit(limit)))
    for warning in due:
        once_key = f"warning.review_due:{warning.id}:{warning.review_by.isoformat()}"
        emit(Event("warning.review_due", frozenset({warning.issuing_agency_id}),
                   household_id=warning.household_id, warning_id=warning.id,
                   risk_level=warning.risk_level, once_key=once_key))  # fmt: skip
    return [warning.id for warning in due]


# --- what a notification says ------------------------------------------------------------------


def case_references(pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Return each (agency, household) pair's own case reference, where the agency works with
    the household now and gave one: one query for a whole feed page or delivery batch."""
    if not pairs:
        return {}
    query = select(Involvement).where(
        tuple_(Involvement.agency_id, Involvement.household_id).in_(sorted(pairs)),
        Involvement.ended_at.is_(None),
    )
    return {
        (i.agency_id, i.household_id): i.case_reference
        for i in db.session.scalars(query)
        if i.case_reference
    }


def payload(notification: Notification, case_reference: str | None) -> dict[str, Any]:
    """The event as sent and listed: ids, a risk level and the recipient's own case reference;
    never names, addresses, narrative, or a restricted warning's categories."""
    if notification.type.startswith("webhook."):
        data: dict[str, Any] = {"webhook_id": notification.subject_id}
        return {"id": notification.id, "type": notification.type,
                "timestamp": notification.created_at, "data": data}  # fmt: skip
    data = {"household_id": notification.household_id}
    if notification.warning_id is not None:
        data["warning_id"] = notification.warning_id
        data["risk_level"] = notification.risk_level
    if notification.type == "incident.recorded":
        data["incident_id"] = notification.subject_id
    elif notification.type in ("involvement.added", "warning.accessed"):
        data["agency_id"] = notification.subject_id
    data["case_reference"] = case_reference
    return {
        "id": notification.id,
        "type": notification.type,
        "timestamp": notification.created_at,
        "data": data,
    }


# --- the feed ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    notification: Notification
    acknowledgement: Acknowledgement | None
    case_reference: str | None


def feed(agency_id: str, after: int, limit: int) -> list[FeedItem]:
    """Return the agency's notifications numbered after ``after``, oldest first."""
    query = (
        select(Notification, Acknowledgement)
        .outerjoin(Acknowledgement, Acknowledgement.notification_id == Notification.id)
        .where(
            Notification.agency_id == agency_id,
            Notification.seq > after,
            Notification.type != "webhook.test",  # a receiver check, not news
        )
        .order_by(Notification.seq)
        .limit(min(limit, FEED_LIMIT))
    )
    return _items(agency_id, [(n, a) for n, a in db.session.execute(query)])


def unacknowledged(agency_id: str, older_than: timedelta, limit: int) -> list[FeedItem]:
    """Return the agency's ``warning.published`` notifications nobody has acknowledged within
    ``older_than``: for a duty manager to chase."""
    query = (
        select(Notification, Acknowledgement)
        .outerjoin(Acknowledgement, Acknowledgement.notification_id == Notification.id)
        .where(
            Notification.agency_id == agency_id,
            Notification.type == "warning.published",
            Notification.created_at <= utcnow() - older_than,
            Acknowledgement.id.is_(None),
        )
        .order_by(Notification.seq)
        .limit(min(limit, FEED_LIMIT))
    )
    return _items(agency_id, [(n, a) for n, a in db.session.execute(query)])


def _items(
    agency_id: str, rows: list[tuple[Notification, Acknowledgement | None]]
) -> list[FeedItem]:
    references = case_references({(agency_id, n.household_id) for n, _ in rows if n.household_id})
    return [FeedItem(n, ack, references.get((agency_id, n.household_id or ""))) for n, ack in rows]


def acknowledge(notification_id: str, agency_id: str, practitioner: str) -> FeedItem:
    """Record that the agency's practitioner read the notification; a second acknowledgement
    keeps the first (who read it first is what a duty manager needs)."""
    row = db.session.execute(
        select(Notification, Acknowledgement)
        .outerjoin(Acknowledgement, Acknowledgement.notification_id == Notification.id)
        .where(Notification.id == notification_id, Notification.agency_id == agency_id)
    ).first()
    if row is None:
        raise NotFound("No such notification for your agency.")
    notification, acknowledgement = row
    if acknowledgement is None:
        acknowledgement = Acknowledgement(
            notification_id=notification.id, acknowledged_at=utcnow(), practitioner=practitioner
        )
        try:
            with db.session.begin_nested():  # two practitioners at once: the first stands
                db.session.add(acknowledgement)
        except IntegrityError:
            acknowledgement = db.session.scalars(
                select(Acknowledgement).where(Acknowledgement.notification_id == notification.id)
            ).one()
    (item,) = _items(agency_id, [(notification, acknowledgement)])
    return item


@dataclass(frozen=True)
class RecipientState:
    agency_id: str
    notified_at: datetime
    acknowledgement: Acknowledgement | None


def acknowledgements_of(warning: WarningMarker) -> list[RecipientState]:
    """Which agencies were told the warning was published, and which have acknowledged it."""
    query = (
        select(Notification, Acknowledgement)
        .outerjoin(Acknowledgement, Acknowledgement.notification_id == Notification.id)
        .where(Notification.warning_id == warning.id, Notification.type == "warning.published")
        .order_by(Notification.seq)
    )
    return [RecipientState(n.agency_id, n.created_at, ack) for n, ack in db.session.execute(query)]


def set_warning_accessed(agency_id: str, enabled: bool) -> AgencyNotificationSettings:
    """Turn on or off ``warning.accessed`` events about the agency's own warnings."""
    settings = db.session.get(AgencyNotificationSettings, agency_id)
    if settings is None:
        settings = AgencyNotificationSettings(agency_id=agency_id)
        db.session.add(settings)
    settings.warning_accessed = enabled
    return settings


def settings_of(agency_id: str) -> AgencyNotificationSettings:
    return db.session.get(AgencyNotificationSettings, agency_id) or AgencyNotificationSettings(
        agency_id=agency_id, warning_accessed=True
    )
