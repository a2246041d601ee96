"""Schemas for involvements: an agency declaring it works with a household."""

from __future__ import annotations

from marshmallow import fields

from schemas import fields as domain
from schemas.base import InputSchema, StrictSchema, text
from schemas.household import HouseholdRefSchema


class LeadPractitionerSchema(InputSchema):
    name = text(100, required=True)
    contact = text(200, required=True, metadata={"description": "Phone or email"})


class InvolvementInputSchema(InputSchema):
    household = fields.Nested(HouseholdRefSchema, required=True)
    case_reference = text(64, required=True, metadata={"example": "CSC-REF-88431"})
    lead_practitioner = fields.Nested(LeadPractitionerSchema, required=True)
    contact_route = text(500, allow_none=True, metadata={"example": "duty desk first"})


class EndInvolvementSchema(InputSchema):
    reason = text(1000, required=True)


class InvolvementQuerySchema(StrictSchema):
    household_id = domain.record_id()


class LeadPractitionerOutSchema(StrictSchema):
    name = fields.String(allow_none=True, required=True)
    contact = fields.String(allow_none=True, required=True)


class InvolvementSchema(StrictSchema):
    id = fields.String(required=True)
    household_id = fields.String(required=True)
    agency_id = fields.String(required=True)
    case_reference = fields.String(allow_none=True, required=True)
    lead_practitioner = fields.Nested(LeadPractitionerOutSchema, required=True)
    contact_route = fields.String(allow_none=True, required=True)
    started_at = fields.AwareDateTime(required=True)
    ended_at = fields.AwareDateTime(allow_none=True, required=True)
    ended_reason = fields.String(allow_none=True, required=True)


class InvolvementListSchema(StrictSchema):
    items = fields.List(fields.Nested(InvolvementSchema), required=True)
