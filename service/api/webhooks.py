"""Webhook endpoints: where an agency's events are sent, signed per Standard Webhooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, request

from schemas.notification import (
    DeliveryListSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    RotateSecretSchema,
    WebhookCreatedSchema,
    WebhookInputSchema,
    WebhookListSchema,
    WebhookSchema,
)
from schemas.openapi import documented
from service import webhook_endpoints
from service.api import documents
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.oauth.scopes import NOTIFICATIONS_MANAGE

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def _returning(*webhook_ids: str) -> None:
    current_entry().returning("webhook", list(webhook_ids))


def _returning_deliveries(shown: list[tuple[str, str]]) -> None:
    """Name each delivery shown and the notification it carries."""
    entry = current_entry()
    entry.returning("delivery", [delivery_id for delivery_id, _ in shown])
    entry.returning("notification", [notification_id for _, notification_id in shown])


@bp.post("")
@protected(NOTIFICATIONS_MANAGE, action="webhook:create")
@documented(request=WebhookInputSchema, response=WebhookCreatedSchema, status=201, errors=(409,))
def register() -> tuple[dict[str, Any], int]:
    """Register an endpoint for your agency's events. The signing secret (`whsec_...`) is in
    this response only: keep it to verify each delivery's `webhook-signature`."""
    body = documents.load(WebhookInputSchema, request.get_json())
    webhook, secret = webhook_endpoints.register_webhook(
        current_caller().agency_id, body["url"], body.get("event_types", []),
        production=current_app.config["ENV"] == "production",
        allowed=current_app.config["WEBHOOK_ALLOWED_NETWORKS"],
    )  # fmt: skip
    _returning(webhook.id)
    return documents.dump(
        WebhookCreatedSchema, {**documents.webhook(webhook), "secret": secret}
    ), 201


@bp.get("")
@protected(NOTIFICATIONS_MANAGE, action="webhook:list")
@documented(response=WebhookListSchema)
def list_webhooks() -> dict[str, Any]:
    """Your agency's endpoints (never their secrets)."""
    found = webhook_endpoints.list_webhooks(current_caller().agency_id)
    _returning(*(w.id for w in found))
    return documents.dump(WebhookListSchema, {"items": [documents.webhook(w) for w in found]})


@bp.get("/<webhook_id>")
@protected(NOTIFICATIONS_MANAGE, action="webhook:read")
@documented(response=WebhookSchema)
def read(webhook_id: str) -> dict[str, Any]:
    """One of your agency's endpoints."""
    webhook = webhook_endpoints.get_webhook(webhook_id, current_caller().agency_id)
    _returning(webhook.id)
    return documents.dump(WebhookSchema, documents.webhook(webhook))


@bp.delete("/<webhook_id>")
@protected(NOTIFICATIONS_MANAGE, action="webhook:delete")
@documented(status=204)
def delete(webhook_id: str) -> tuple[str, int]:
    """Stop sending to this endpoint (deliveries still due are marked failed)."""
    webhook = webhook_endpoints.get_webhook(webhook_id, current_caller().agency_id)
    webhook_endpoints.delete_webhook(webhook)
    return "", 204


@bp.post("/<webhook_id>/rotate-secret")
@protected(NOTIFICATIONS_MANAGE, action="webhook:rotate-secret")
@documented(request=RotateSecretSchema, response=WebhookCreatedSchema)
def rotate_secret(webhook_id: str) -> dict[str, Any]:
    """A new signing secret, shown once; the old one also signs until `previous_secret_until`
    (default 24 hours), so both verify while your receiver switches."""
    body = documents.load(RotateSecretSchema, request.get_json())
    webhook = webhook_endpoints.get_webhook(webhook_id, current_caller().agency_id)
    secret = webhook_endpoints.rotate_secret(webhook, timedelta(hours=body["overlap_hours"]))
    _returning(webhook.id)
    return documents.dump(WebhookCreatedSchema, {**documents.webhook(webhook), "secret": secret})


@bp.post("/<webhook_id>/test")
@protected(NOTIFICATIONS_MANAGE, action="webhook:test")
@documented(response=DeliverySchema, status=202, errors=(409,))
def send_test(webhook_id: str) -> tuple[dict[str, Any], int]:
    """Queue a signed `webhook.test` event to this endpoint; follow its delivery to see your
    receiver's answer."""
    webhook = webhook_endpoints.get_webhook(webhook_id, current_caller().agency_id)
    delivery = webhook_endpoints.send_test(webhook)
    _returning_deliveries([(delivery.id, delivery.notification_id)])
    return documents.dump(DeliverySchema, documents.delivery(delivery, "webhook.test")), 202


@bp.get("/<webhook_id>/deliveries")
@protected(NOTIFICATIONS_MANAGE, action="webhook:deliveries")
@documented(query=DeliveryQuerySchema, response=DeliveryListSchema)
def deliveries(webhook_id: str) -> dict[str, Any]:
    """Deliveries to this endpoint, newest first; `status=dead` lists the dead letters."""
    query = documents.load(DeliveryQuerySchema, request.args)
    webhook = webhook_endpoints.get_webhook(webhook_id, current_caller().agency_id)
    found = webhook_endpoints.list_deliveries(webhook, query.get("status"), query["limit"])
    _returning_deliveries([(d.id, d.notification_id) for d, _ in found])
    return documents.dump(
        DeliveryListSchema, {"items": [documents.delivery(d, n.type) for d, n in found]}
    )


@bp.post("/<webhook_id>/deliveries/<delivery_id>/replay")
@protected(NOTIFICATIONS_MANAGE, action="webhook:replay")
@documented(response=DeliverySchema, status=202, errors=(409,))
def replay(webhook_id: str, delivery_id: str) -> tuple[dict[str, Any], int]:
    """Send a dead-lettered (or failed) delivery again, same event id, fresh schedule."""
    webhook = webhook_endpoints.get_webhook(webhook_id, current_caller().agency_id)
    delivery, notification = webhook_endpoints.replay_delivery(webhook, delivery_id)
    _returning_deliveries([(delivery.id, delivery.notification_id)])
    return documents.dump(DeliverySchema, documents.delivery(delivery, notification.type)), 202
