"""Schemas for agencies and the calling client."""

from marshmallow import fields

from schemas.base import StrictSchema


class AgencySchema(StrictSchema):
    id = fields.String(required=True, metadata={"description": "Agency slug"})
    name = fields.String(required=True)
    agency_type = fields.String(required=True)
    duty_contact = fields.String(required=True, metadata={"description": "Duty desk to call"})


class AgencyListSchema(StrictSchema):
    items = fields.List(fields.Nested(AgencySchema), required=True)


class CallerSchema(StrictSchema):
    agency = fields.Nested(AgencySchema, required=True)
    client_id = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    practitioner = fields.String(required=True)
    purpose = fields.String(required=True)
