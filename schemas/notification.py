"""Schemas for notifications: the feed, acknowledgements, webhook endpoints and deliveries."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas import fields as domain
from schemas.base import InputSchema, StrictSchema
from service.models.notification import DELIVERY_STATUSES, EVENT_TYPES

# What an endpoint can ask for (a test event is sent only when asked for, to one endpoint).
SUBSCRIBABLE = tuple(t for t in EVENT_TYPES if t != "webhook.test")


class EventDataSchema(StrictSchema):
    household_id = fields.String(allow_none=True)
    warning_id = fields.String()
    risk_level = fields.String(validate=validate.OneOf(("low", "medium", "high")), allow_none=True)
    incident_id = fields.String()
    agency_id = fields.String(metadata={"description": "The other agency the event is about"})
    webhook_id = fields.String()
    case_reference = fields.String(
        allow_none=True, metadata={"description": "Your own case reference, if you have one"}
    )


class AcknowledgedSchema(StrictSchema):
    practitioner = fields.String(required=True)
    at = fields.AwareDateTime(required=True)


class NotificationSchema(StrictSchema):
    id = fields.String(required=True, metadata={"description": "Stable event id (webhook-id)"})
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = fields.AwareDateTime(required=True)
    data = fields.Nested(EventDataSchema, required=True)
    acknowledged = fields.Nested(AcknowledgedSchema, allow_none=True, required=True)


class FeedQuerySchema(StrictSchema):
    after = fields.String(
        validate=validate.Regexp(r"^[0-9]{1,18}$"),
        metadata={"description": "The `next` cursor of the previous page"},
    )
    limit = domain.QueryInteger(load_default=100, validate=validate.Range(min=1, max=500))


class FeedPageSchema(StrictSchema):
    items = fields.List(fields.Nested(NotificationSchema), required=True)
    next = fields.String(required=True, metadata={"description": "Cursor to poll with next"})


class UnacknowledgedQuerySchema(StrictSchema):
    older_than_hours = domain.QueryInteger(validate=validate.Range(min=0, max=24 * 90))
    limit = domain.QueryInteger(load_default=100, validate=validate.Range(min=1, max=500))


class NotificationListSchema(StrictSchema):
    items = fields.List(fields.Nested(NotificationSchema), required=True)


class RecipientAcknowledgementSchema(StrictSchema):
    agency_id = fields.String(required=True)
    notified_at = fields.AwareDateTime(required=True)
    acknowledged_at = fields.AwareDateTime(allow_none=True, required=True)


class AcknowledgementListSchema(StrictSchema):
    items = fields.List(fields.Nested(RecipientAcknowledgementSchema), required=True)


class SettingsSchema(InputSchema):
    warning_accessed = domain.StrictBoolean(
        required=True,
        metadata={"description": "Tell us when another agency reads one of our warnings"},
    )


class WebhookInputSchema(InputSchema):
    url = fields.Url(
        required=True, schemes={"https", "http"}, require_tld=False,
        validate=validate.Length(max=2048),
        metadata={"description": "https only in production; never a private address"},
    )  # fmt: skip
    event_types = domain.codes(
        SUBSCRIBABLE, metadata={"description": "Only these events (empty or absent: all)"}
    )


class RotateSecretSchema(InputSchema):
    overlap_hours = fields.Integer(
        load_default=24, validate=validate.Range(min=0, max=168), strict=True,
        metadata={"description": "How long the old secret also signs"},
    )  # fmt: skip


class WebhookSchema(StrictSchema):
    id = fields.String(required=True)
    url = fields.String(required=True)
    event_types = fields.List(fields.String(), required=True)
    created_at = fields.AwareDateTime(required=True)
    disabled_at = fields.AwareDateTime(allow_none=True, required=True)
    disabled_reason = fields.String(allow_none=True, required=True)
    previous_secret_until = fields.AwareDateTime(allow_none=True, required=True)


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(
        required=True, metadata={"description": "Shown once: verify signatures with it"}
    )


class WebhookListSchema(StrictSchema):
    items = fields.List(fields.Nested(WebhookSchema), required=True)


class DeliveryQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    limit = domain.QueryInteger(load_default=100, validate=validate.Range(min=1, max=500))


class DeliverySchema(StrictSchema):
    id = fields.String(required=True)
    notification_id = fields.String(required=True)
    event_type = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATUSES))
    attempts = fields.Integer(required=True)
    created_at = fields.AwareDateTime(required=True)
    next_attempt_at = fields.AwareDateTime(allow_none=True, required=True)
    last_status = fields.Integer(allow_none=True, required=True)
    last_error = fields.String(allow_none=True, required=True)
    finished_at = fields.AwareDateTime(allow_none=True, required=True)


class DeliveryListSchema(StrictSchema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)
