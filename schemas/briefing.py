"""The pre-visit briefing document."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.base import StrictSchema
from schemas.household import HouseholdSchema, IssuerSchema, MemberSchema
from schemas.warning import PRECAUTION_CODES, WarningSchema
from service.vocabulary import CATEGORIES, RISK_LEVELS


class BriefingMemberSchema(MemberSchema):
    is_child = fields.Boolean(required=True)


class FlaggedWarningSchema(StrictSchema):
    """A restricted warning the caller may not read: that it exists, how serious, whom to call."""

    risk_level = fields.String(required=True, validate=validate.OneOf(RISK_LEVELS))
    issuing_agency = fields.Nested(IssuerSchema, required=True)
    review_overdue = fields.Boolean(required=True)


class PrecautionLineSchema(StrictSchema):
    code = fields.String(required=True, validate=validate.OneOf(PRECAUTION_CODES))
    advice = fields.String(required=True)


class OtherAgencySchema(StrictSchema):
    agency = fields.Nested(IssuerSchema, required=True)
    lead_practitioner = fields.String(allow_none=True, required=True)
    lead_contact = fields.String(allow_none=True, required=True)
    contact_route = fields.String(allow_none=True, required=True)


class IncidentCountsSchema(StrictSchema):
    since = fields.Date(required=True)
    agencies = fields.Integer(required=True, metadata={"description": "Agencies that recorded"})
    by_category = fields.Dict(
        keys=fields.String(validate=validate.OneOf(CATEGORIES)), values=fields.Integer(),
        required=True,
    )  # fmt: skip
    withheld = fields.Integer(
        required=True,
        metadata={"description": "Incidents counted without categories: restricted from you"},
    )
    cumulative_prompt = fields.String(allow_none=True, required=True)


class BriefingSchema(StrictSchema):
    household = fields.Nested(HouseholdSchema, required=True)
    members = fields.List(fields.Nested(BriefingMemberSchema), required=True)
    children_prompt = fields.String(allow_none=True, required=True)
    warnings = fields.List(fields.Nested(WarningSchema), required=True)
    restricted_warnings = fields.List(fields.Nested(FlaggedWarningSchema), required=True)
    precautions = fields.List(fields.Nested(PrecautionLineSchema), required=True)
    other_agencies = fields.List(fields.Nested(OtherAgencySchema), required=True)
    checklist = fields.List(fields.String(), required=True)
    incidents_last_12_months = fields.Nested(IncidentCountsSchema, required=True)
