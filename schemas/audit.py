"""Schemas of the auditors' API."""

from datetime import UTC, datetime
from typing import Any

from marshmallow import fields, validate

from schemas.base import StrictSchema
from schemas.fields import QueryBoolean, QueryInteger, Rfc3339DateTime
from service.audit.chain import CHAINED_FIELD_TYPES
from service.audit.entry import OUTCOMES

IN_RANGE = validate.Range(
    min=datetime(2000, 1, 1, tzinfo=UTC), max=datetime(9000, 1, 1, tzinfo=UTC),
    error="Must be between 2000 and 9000.",
)  # fmt: skip


class EventQuerySchema(StrictSchema):
    household_id = fields.String()
    warning_id = fields.String()
    agency_id = fields.String()
    practitioner = fields.String()
    action = fields.String(metadata={"description": "e.g. household:read"})
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))
    since = Rfc3339DateTime(
        validate=IN_RANGE, metadata={"description": "Inclusive, ISO 8601 with zone"}
    )
    until = Rfc3339DateTime(
        validate=IN_RANGE, metadata={"description": "Exclusive, ISO 8601 with zone"}
    )
    unusual = QueryBoolean(
        load_default=False,
        metadata={"description": "Only reads without involvement, emergency reads, bulk browsing"},
    )
    cursor = QueryInteger(
        validate=validate.Range(min=1, max=2**63 - 1), metadata={"description": "next_cursor"}
    )
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=500))


class ExportQuerySchema(EventQuerySchema):
    format = fields.String(load_default="jsonl", validate=validate.OneOf(("jsonl", "csv")))
    limit = QueryInteger(load_default=10_000, validate=validate.Range(min=1, max=10_000))


def _event_field(json_type: str) -> fields.Field[Any]:
    if json_type == "int":
        return fields.Integer(required=True)
    if json_type == "ids":
        return fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)
    return fields.String(required=True, allow_none=json_type == "str|null")


# An audit entry as auditors see it, derived from the one definition of an entry's fields.
EventSchema = StrictSchema.from_dict(
    {
        **{name: _event_field(CHAINED_FIELD_TYPES[name]) for name in CHAINED_FIELD_TYPES},
        "hash": fields.String(required=True, metadata={"description": "SHA-256, hex"}),
        "flags": fields.List(fields.String(), required=True),
    },
    name="EventSchema",
)


class EventPageSchema(StrictSchema):
    items = fields.List(fields.Nested(EventSchema), required=True)
    next_cursor = fields.Integer(allow_none=True, required=True)


class AccessLineSchema(StrictSchema):
    agency_id = fields.String(allow_none=True)
    practitioner = fields.String(allow_none=True)
    purposes = fields.List(fields.String())
    actions = fields.List(fields.String())
    first_access = fields.String()
    last_access = fields.String()
    accesses = fields.Integer()
    flags = fields.List(fields.String())


class AccessReportSchema(StrictSchema):
    household_id = fields.String(required=True)
    accessed_by = fields.List(fields.Nested(AccessLineSchema), required=True)


class VerificationSchema(StrictSchema):
    ok = fields.Boolean(required=True)
    checked = fields.Integer(required=True)
    head_seq = fields.Integer(allow_none=True)
    head_hash = fields.String(allow_none=True)
    first_bad_seq = fields.Integer(allow_none=True)
    problem = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)
    checkpoint_seq = fields.Integer(allow_none=True)
