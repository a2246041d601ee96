"""Schemas for incidents: what happened to a practitioner at a household."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, post_load, validate

from schemas import fields as domain
from schemas.base import InputSchema, StrictSchema, text
from schemas.household import HouseholdRefSchema
from service.incidents import IncidentReport
from service.vocabulary import CATEGORIES

CRIME_REFERENCE = text(64, allow_none=True, metadata={"example": "KE-26-112233"})


class IncidentReportSchema(InputSchema):
    """An incident as reported (inline in a warning, categories default to the warning's)."""

    # A crime reference only for an incident reported to the police.
    openapi_rules = {
        "anyOf": [
            {"properties": {"police_reported": {"const": True}}},
            {"properties": {"crime_reference": {"type": "null"}}},
        ]
    }
    occurred_on = domain.day(required=True, metadata={"description": "Not in the future"})
    categories = domain.codes(CATEGORIES)
    summary = text(500, required=True)
    description = text(5000, allow_none=True)
    police_reported = domain.StrictBoolean(required=True)
    crime_reference = CRIME_REFERENCE

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> IncidentReport:
        return IncidentReport(**{**data, "categories": tuple(data.get("categories", ()))})


class IncidentInputSchema(IncidentReportSchema):
    household = fields.Nested(HouseholdRefSchema, required=True)
    categories = domain.codes(CATEGORIES, at_least=1, required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Any:
        household = data.pop("household")
        return household, IncidentReport(**{**data, "categories": tuple(data["categories"])})


class IncidentQuerySchema(StrictSchema):
    household_id = domain.record_id(required=True)


class IncidentSchema(StrictSchema):
    id = fields.String(required=True)
    household_id = fields.String(required=True)
    agency_id = fields.String(required=True)
    occurred_on = fields.Date(required=True)
    categories = fields.List(fields.String(validate=validate.OneOf(CATEGORIES)), required=True)
    summary = fields.String(allow_none=True, required=True)
    description = fields.String(allow_none=True, required=True)
    police_reported = fields.Boolean(required=True)
    crime_reference = fields.String(allow_none=True, required=True)
    recorded_at = fields.AwareDateTime(required=True)


class IncidentListSchema(StrictSchema):
    items = fields.List(fields.Nested(IncidentSchema), required=True)
