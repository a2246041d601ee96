"""Notifications: the feed an agency polls (or is sent by webhook), acknowledgements, settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, request

from schemas.notification import (
    FeedPageSchema,
    FeedQuerySchema,
    NotificationListSchema,
    NotificationSchema,
    SettingsSchema,
    UnacknowledgedQuerySchema,
)
from schemas.openapi import documented
from service import notifications
from service.api import documents
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.oauth.scopes import HOUSEHOLDS_READ, NOTIFICATIONS_MANAGE

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


def _record(items: list[notifications.FeedItem]) -> None:
    entry = current_entry()
    entry.returning("notification", [item.notification.id for item in items])
    entry.returning("household", [i.notification.household_id for i in items
                                  if i.notification.household_id])  # fmt: skip
    entry.returning("warning", [i.notification.warning_id for i in items
                                if i.notification.warning_id])  # fmt: skip


@bp.get("")
@protected(HOUSEHOLDS_READ, action="notification:list")
@documented(query=FeedQuerySchema, response=FeedPageSchema)
def feed() -> dict[str, Any]:
    """Your agency's events, oldest first, after the cursor you were given; poll with `next`.

    Numbers follow commit order, so polling from `next` never misses an event. Each event holds
    ids, a risk level and your own case reference; fetch the detail through the API.
    """
    query = documents.load(FeedQuerySchema, request.args)
    after = int(query.get("after", "0"))
    items = notifications.feed(current_caller().agency_id, after, query["limit"])
    _record(items)
    next_cursor = str(items[-1].notification.seq) if items else str(after)
    return documents.dump(
        FeedPageSchema, {"items": [documents.notification(i) for i in items], "next": next_cursor}
    )


@bp.get("/unacknowledged")
@protected(HOUSEHOLDS_READ, action="notification:unacknowledged")
@documented(query=UnacknowledgedQuerySchema, response=NotificationListSchema)
def unacknowledged() -> dict[str, Any]:
    """Warnings published to your agency that nobody has acknowledged in time (default 24 h):
    for a duty manager to chase."""
    query = documents.load(UnacknowledgedQuerySchema, request.args)
    hours = query.get("older_than_hours", current_app.config["UNACKNOWLEDGED_AFTER_HOURS"])
    items = notifications.unacknowledged(
        current_caller().agency_id, timedelta(hours=hours), query["limit"]
    )
    _record(items)
    return documents.dump(
        NotificationListSchema, {"items": [documents.notification(i) for i in items]}
    )


@bp.post("/<notification_id>/ack")
@protected(HOUSEHOLDS_READ, action="notification:ack")
@documented(response=NotificationSchema)
def acknowledge(notification_id: str) -> dict[str, Any]:
    """Record that you (the acting practitioner) have read this notification. The first
    acknowledgement stands; acknowledging again changes nothing."""
    caller = current_caller()
    assert caller.practitioner is not None  # the route's policy requires the acting context
    item = notifications.acknowledge(notification_id, caller.agency_id, caller.practitioner)
    _record([item])
    return documents.dump(NotificationSchema, documents.notification(item))


@bp.put("/settings")
@protected(NOTIFICATIONS_MANAGE, action="notification:settings")
@documented(request=SettingsSchema, response=SettingsSchema)
def settings() -> dict[str, Any]:
    """Choose whether your agency is told when another agency reads one of its warnings."""
    body = documents.load(SettingsSchema, request.get_json())
    chosen = notifications.set_warning_accessed(
        current_caller().agency_id, body["warning_accessed"]
    )
    return documents.dump(SettingsSchema, {"warning_accessed": chosen.warning_accessed})


@bp.get("/settings")
@protected(NOTIFICATIONS_MANAGE, HOUSEHOLDS_READ, action="notification:settings-read")
@documented(response=SettingsSchema)
def read_settings() -> dict[str, Any]:
    """Your agency's notification settings."""
    chosen = notifications.settings_of(current_caller().agency_id)
    return documents.dump(SettingsSchema, {"warning_accessed": chosen.warning_accessed})
