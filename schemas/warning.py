"""Schemas for warnings: publishing, changing, reviewing, reading and listing them."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from schemas import fields as domain
from schemas.base import AT_LEAST_ONE_PROPERTY, InputSchema, StrictSchema, only, text
from schemas.household import HouseholdRefSchema, IssuerSchema
from schemas.incident import IncidentReportSchema, IncidentSchema
from service.models.warning import HANDLINGS, STATUSES
from service.vocabulary import CATEGORIES, PRECAUTIONS, RISK_LEVELS
from service.warnings import SubjectInformed

PRECAUTION_CODES = list(PRECAUTIONS)


class PersonOfConcernSchema(InputSchema):
    """A member of the household by id, or a person named (not, or not yet, a member)."""

    openapi_rules = {
        "oneOf": [
            only("member_id"),
            {"required": ["family_name"], "not": {"required": ["member_id"]}},
        ]
    }
    member_id = domain.record_id()
    given_name = text(100)
    family_name = text(100)

    @validates_schema
    def one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        named = "given_name" in data or "family_name" in data
        if ("member_id" in data) == named or (named and "family_name" not in data):
            raise ValidationError(
                "Give member_id, or family_name (and optionally given_name).", "_schema"
            )


class SubjectInformedSchema(InputSchema):
    openapi_rules = {
        "oneOf": [
            only("informed_on", informed=True),
            only("reason_withheld", "recheck_on", informed=False),
        ]
    }
    informed = domain.StrictBoolean(required=True)
    informed_on = domain.day()
    reason_withheld = text(1000)
    recheck_on = domain.day()

    @validates_schema
    def consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]]
        if data["informed"]:
            errors = {n: ["Only when not informed."] for n in ("reason_withheld", "recheck_on")
                      if n in data}  # fmt: skip
            if "informed_on" not in data:
                errors["informed_on"] = ["Required when the subject was informed."]
        else:
            errors = {n: ["Required when not informed."] for n in ("reason_withheld", "recheck_on")
                      if n not in data}  # fmt: skip
            if "informed_on" in data:
                errors["informed_on"] = ["Only when informed."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> SubjectInformed:
        return SubjectInformed(**data)


class _WarningContentSchema(InputSchema):
    categories = domain.codes(CATEGORIES, at_least=1)
    risk_level = fields.String(validate=validate.OneOf(RISK_LEVELS))
    persons_of_concern = fields.List(
        fields.Nested(PersonOfConcernSchema), validate=validate.Length(max=20)
    )
    precautions = domain.codes(PRECAUTION_CODES)
    handling = fields.String(validate=validate.OneOf(HANDLINGS))
    shared_with = domain.ids(50, metadata={"description": "Agency ids (restricted handling)"})
    children_in_household = domain.StrictBoolean()
    subject_informed = fields.Nested(SubjectInformedSchema)
    review_by = domain.day(
        metadata={"description": "After today, at most 12 months ahead; default by category"}
    )


class WarningInputSchema(_WarningContentSchema):
    openapi_rules = {
        "allOf": [
            {  # at least one incident in all, reported with the warning or recorded before
                "anyOf": [
                    {"required": [name], "properties": {name: {"minItems": 1}}}
                    for name in ("incidents", "incident_ids")
                ]
            },
            {  # shared_with only for restricted handling
                "anyOf": [
                    {"required": ["handling"], "properties": {"handling": {"const": "restricted"}}},
                    {"properties": {"shared_with": {"maxItems": 0}}},
                ]
            },
        ]
    }
    household = fields.Nested(HouseholdRefSchema, required=True)
    categories = domain.codes(CATEGORIES, at_least=1, required=True)
    risk_level = fields.String(required=True, validate=validate.OneOf(RISK_LEVELS))
    children_in_household = domain.StrictBoolean(required=True)
    subject_informed = fields.Nested(SubjectInformedSchema, required=True)
    incidents = fields.List(fields.Nested(IncidentReportSchema), validate=validate.Length(max=20))
    incident_ids = domain.ids(50)


class WarningChangesSchema(_WarningContentSchema):
    openapi_rules = AT_LEAST_ONE_PROPERTY

    @validates_schema
    def something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Change at least one field.", "_schema")


class ReasonSchema(InputSchema):
    reason = text(1000, required=True)


class ReviewSchema(InputSchema):
    openapi_rules = {
        "oneOf": [only("review_by", outcome="continue"), only("reason", outcome="close")]
    }
    outcome = fields.String(required=True, validate=validate.OneOf(("continue", "close")))
    review_by = domain.day()
    reason = text(1000)

    @validates_schema
    def consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        needs, refuses = ("review_by", "reason") if data["outcome"] == "continue" else (
            "reason", "review_by")  # fmt: skip
        errors = {}
        if needs not in data:
            errors[needs] = [f"Required when the outcome is {data['outcome']}."]
        if refuses in data:
            errors[refuses] = [f"Not with the outcome {data['outcome']}."]
        if errors:
            raise ValidationError(errors)


class WarningQuerySchema(StrictSchema):
    """Query parameters (``status`` is a filter here, not a server-owned field)."""

    household_id = domain.record_id()
    status = fields.String(validate=validate.OneOf(STATUSES))
    issued_by = fields.String(validate=validate.OneOf(("mine",)))
    review_due_before = domain.day()
    cursor = fields.String(validate=validate.Length(min=1, max=200))
    limit = domain.QueryInteger(load_default=50, validate=validate.Range(min=1, max=200))


class PersonOfConcernOutSchema(StrictSchema):
    member_id = fields.String(allow_none=True, required=True)
    given_name = fields.String(allow_none=True, required=True)
    family_name = fields.String(allow_none=True, required=True)


class SubjectInformedOutSchema(StrictSchema):
    informed = fields.Boolean(required=True)
    informed_on = fields.Date(allow_none=True, required=True)
    reason_withheld = fields.String(allow_none=True, required=True)
    recheck_on = fields.Date(allow_none=True, required=True)


class WarningSchema(StrictSchema):
    id = fields.String(required=True)
    household_id = fields.String(required=True)
    issuing_agency = fields.Nested(IssuerSchema, required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    version = fields.Integer(required=True)
    risk_level = fields.String(required=True, validate=validate.OneOf(RISK_LEVELS))
    categories = fields.List(fields.String(validate=validate.OneOf(CATEGORIES)), required=True)
    precautions = fields.List(
        fields.String(validate=validate.OneOf(PRECAUTION_CODES)), required=True
    )
    persons_of_concern = fields.List(fields.Nested(PersonOfConcernOutSchema), required=True)
    handling = fields.String(required=True, validate=validate.OneOf(HANDLINGS))
    shared_with = fields.List(fields.String(), required=True)
    children_in_household = fields.Boolean(required=True)
    subject_informed = fields.Nested(SubjectInformedOutSchema, required=True)
    review_by = fields.Date(required=True)
    review_overdue = fields.Boolean(required=True)
    status_reason = fields.String(allow_none=True, required=True)
    incidents = fields.List(fields.Nested(IncidentSchema), required=True)
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


class WarningPageSchema(StrictSchema):
    items = fields.List(fields.Nested(WarningSchema), required=True)
    next = fields.String(allow_none=True, required=True, metadata={"description": "cursor"})


class WarningVersionSchema(StrictSchema):
    version = fields.Integer(required=True)
    change = fields.String(required=True)
    changed_by = fields.String(required=True)
    changed_at = fields.AwareDateTime(required=True)
    warning = fields.Dict(required=True, metadata={"description": "The warning at this version"})


class WarningVersionListSchema(StrictSchema):
    items = fields.List(fields.Nested(WarningVersionSchema), required=True)
