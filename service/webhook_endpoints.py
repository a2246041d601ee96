"""Use cases for an agency's webhook endpoints: register (the secret shown once), list, delete,
rotate the secret with an overlap, send a test event, list deliveries and replay one.

Every endpoint is its agency's alone: another agency's is not found. The address is checked when
it is registered (``service.webhooks.addresses``) and again by the worker before every delivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlalchemy import select, update

from service.database import db, utcnow
from service.errors import Conflict, InvalidInput, NotFound
from service.models.encrypted import new_id
from service.models.notification import Delivery, Notification, Webhook
from service.webhooks.addresses import IPNetwork, UnsafeTarget, check_url
from service.webhooks.signing import generate_secret

MAX_ENDPOINTS = 10  # per agency: enough for a primary and a standby in each environment
REPLAYABLE = ("dead", "failed")


def register_webhook(
    agency_id: str,
    url: str,
    event_types: Sequence[str],
    *,
    production: bool,
    allowed: Iterable[IPNetwork] = (),
) -> tuple[Webhook, str]:
    """Register an endpoint; return it and its signing secret (which is never shown again).
    ``allowed``: the networks production may call besides public addresses (``check_url``)."""
    try:
        check_url(url, production=production, allowed=allowed)
    except UnsafeTarget as refused:
        raise InvalidInput(
            "The webhook URL is refused.", errors={"url": [refused.reason]}
        ) from None
    if len(list_webhooks(agency_id)) >= MAX_ENDPOINTS:
        raise Conflict(f"Your agency already has {MAX_ENDPOINTS} webhook endpoints.")
    secret = generate_secret()
    webhook = Webhook(
        agency_id=agency_id, url=url, event_types=" ".join(event_types), created_at=utcnow(),
        secret=secret,
    )  # fmt: skip
    db.session.add(webhook)
    return webhook, secret


def list_webhooks(agency_id: str) -> list[Webhook]:
    query = select(Webhook).where(Webhook.agency_id == agency_id, Webhook.deleted_at.is_(None))
    return list(db.session.scalars(query.order_by(Webhook.created_at)))


def get_webhook(webhook_id: str, agency_id: str) -> Webhook:
    """Return the agency's own endpoint; another agency's, or a deleted one, is not found."""
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None or webhook.agency_id != agency_id or webhook.deleted_at is not None:
        raise NotFound("No such webhook endpoint of your agency.")
    return webhook


def delete_webhook(webhook: Webhook) -> None:
    """Stop sending to the endpoint; what was still due to it is marked failed, not lost from
    view (the agency's feed has every event)."""
    now = utcnow()
    webhook.deleted_at = now
    due = select(Delivery.id).where(Delivery.webhook_id == webhook.id, Delivery.status == "pending")
    # Locked in id order, as the worker locks what it records: neither waits on the other.
    ids = list(db.session.scalars(due.order_by(Delivery.id).with_for_update()))
    if ids:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.status == "pending")
            .values(status="failed", last_error="endpoint deleted", finished_at=now)
            .execution_options(synchronize_session=False)
        )


def rotate_secret(webhook: Webhook, overlap: timedelta) -> str:
    """Give the endpoint a new secret; the old one also signs for ``overlap`` (so the receiver
    can switch without missing a delivery). Return the new secret, shown once."""
    secret = generate_secret()
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_until = utcnow() + overlap
    webhook.secret = secret
    return secret


def send_test(webhook: Webhook) -> Delivery:
    """Queue a signed test event to this endpoint only (the worker sends it)."""
    if webhook.disabled_at is not None:
        raise Conflict("This endpoint is disabled; register it again to use it.")
    now = utcnow()
    notification = Notification(
        id=new_id(), agency_id=webhook.agency_id, type="webhook.test", subject_id=webhook.id,
        created_at=now,
    )  # fmt: skip
    delivery = Delivery(
        id=new_id(), notification_id=notification.id, webhook_id=webhook.id, status="pending",
        attempts=0, created_at=now, next_attempt_at=now,
    )  # fmt: skip
    db.session.add(notification)
    db.session.flush()  # the row the delivery refers to goes first
    db.session.add(delivery)
    return delivery


def list_deliveries(
    webhook: Webhook, status: str | None, limit: int
) -> list[tuple[Delivery, Notification]]:
    """Return the endpoint's deliveries, newest first (``dead`` ones: the dead letters)."""
    query = (
        select(Delivery, Notification)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Delivery.webhook_id == webhook.id)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    query = query.order_by(Delivery.created_at.desc(), Delivery.id).limit(limit)
    return [(d, n) for d, n in db.session.execute(query)]


def replay_delivery(webhook: Webhook, delivery_id: str) -> tuple[Delivery, Notification]:
    """Send a dead-lettered or failed delivery again, from a fresh retry schedule (same event
    id, so a receiver that did get it can tell)."""
    row = db.session.execute(
        select(Delivery, Notification)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Delivery.id == delivery_id, Delivery.webhook_id == webhook.id)
    ).first()
    if row is None:
        raise NotFound("No such delivery to this endpoint.")
    delivery, notification = row
    if delivery.status not in REPLAYABLE:
        raise Conflict(f"Only {' or '.join(REPLAYABLE)} deliveries can be replayed.")
    if webhook.disabled_at is not None:
        raise Conflict("This endpoint is disabled; register it again to use it.")
    delivery.status, delivery.attempts = "pending", 0
    delivery.first_attempt_at = delivery.finished_at = None
    delivery.next_attempt_at = utcnow()
    delivery.locked_until = delivery.locked_by = None
    return delivery, notification
