"""Schemas for households: how a request names one, look-ups and the flag view, members."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from schemas import fields as domain
from schemas.base import (
    AT_LEAST_ONE_PROPERTY,
    EXACTLY_ONE_PROPERTY,
    InputSchema,
    StrictSchema,
    only,
    text,
)
from service.households import Address, HouseholdRef
from service.vocabulary import CATEGORIES, PRECAUTIONS, RISK_LEVELS

ROLES = ("adult", "child")


class AddressSchema(InputSchema):
    line1 = domain.searchable(200, required=True)
    line2 = text(200, allow_none=True)
    town = text(100, allow_none=True)
    postcode = domain.postcode(required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Address:
        return Address(**data)


def _exactly_one(data: dict[str, Any], names: tuple[str, ...]) -> None:
    given = [name for name in names if data.get(name) is not None]
    if len(given) != 1:
        raise ValidationError(f"Give exactly one of: {', '.join(names)}.", "_schema")


class HouseholdRefSchema(InputSchema):
    """A household, named by its id, its UPRN, or its address."""

    openapi_rules = EXACTLY_ONE_PROPERTY
    household_id = domain.record_id()
    uprn = fields.String(validate=domain.UPRN)
    address = fields.Nested(AddressSchema)

    @validates_schema
    def one_name(self, data: dict[str, Any], **kwargs: Any) -> None:
        _exactly_one(data, ("household_id", "uprn", "address"))

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> HouseholdRef:
        return HouseholdRef(**data)


class PersonQuerySchema(InputSchema):
    openapi_rules = {"oneOf": [only("family_name", "date_of_birth"), only("nhs_number")]}
    family_name = domain.searchable(100)
    date_of_birth = domain.day()
    nhs_number = domain.nhs_number()

    @validates_schema
    def one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        by_name = data.get("family_name") is not None and data.get("date_of_birth") is not None
        by_number = data.get("nhs_number") is not None
        if by_name == by_number or (by_number and len(data) > 1):
            raise ValidationError(
                "Give family_name and date_of_birth, or nhs_number alone.", "_schema"
            )


class LookupSchema(InputSchema):
    openapi_rules = EXACTLY_ONE_PROPERTY
    uprn = fields.String(validate=domain.UPRN)
    address = fields.Nested(AddressSchema)
    person = fields.Nested(PersonQuerySchema)

    @validates_schema
    def one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        _exactly_one(data, ("uprn", "address", "person"))


class IssuerSchema(StrictSchema):
    agency_id = fields.String(required=True)
    name = fields.String(required=True)
    duty_contact = fields.String(required=True)


class FlagSchema(StrictSchema):
    active_warnings = fields.Boolean(required=True)
    risk_level = fields.String(allow_none=True, required=True, validate=validate.OneOf(RISK_LEVELS))
    categories = fields.List(fields.String(validate=validate.OneOf(CATEGORIES)), required=True)
    precautions = fields.List(
        fields.String(validate=validate.OneOf(list(PRECAUTIONS))), required=True
    )
    review_overdue = fields.Boolean(required=True)
    issuers = fields.List(fields.Nested(IssuerSchema), required=True)


class MatchSchema(StrictSchema):
    household_id = fields.String(required=True)
    matched_by = fields.String(
        required=True, validate=validate.OneOf(("uprn", "address", "person"))
    )
    involved = fields.Boolean(required=True, metadata={"description": "Is your agency involved?"})
    flag = fields.Nested(FlagSchema, required=True)


class LookupResultSchema(StrictSchema):
    matches = fields.List(fields.Nested(MatchSchema), required=True)


class MemberInputSchema(InputSchema):
    given_name = text(100, required=True)
    family_name = domain.searchable(100, required=True)
    date_of_birth = domain.day(allow_none=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    relationship = text(100, allow_none=True)
    nhs_number = domain.nhs_number(allow_none=True)


class MemberChangesSchema(InputSchema):
    openapi_rules = AT_LEAST_ONE_PROPERTY
    given_name = text(100)
    family_name = domain.searchable(100)
    date_of_birth = domain.day(allow_none=True)
    role = fields.String(validate=validate.OneOf(ROLES))
    relationship = text(100, allow_none=True)
    nhs_number = domain.nhs_number(allow_none=True)

    @validates_schema
    def something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Change at least one field.", "_schema")


class MemberSchema(StrictSchema):
    id = fields.String(required=True)
    given_name = fields.String(required=True)
    family_name = fields.String(required=True)
    date_of_birth = fields.Date(allow_none=True, required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    relationship = fields.String(allow_none=True, required=True)
    nhs_number = fields.String(allow_none=True, required=True)


class MemberListSchema(StrictSchema):
    items = fields.List(fields.Nested(MemberSchema), required=True)


class AddressOutSchema(StrictSchema):
    line1 = fields.String(allow_none=True, required=True)
    line2 = fields.String(allow_none=True, required=True)
    town = fields.String(allow_none=True, required=True)
    postcode = fields.String(allow_none=True, required=True)


class HouseholdSchema(StrictSchema):
    id = fields.String(required=True)
    uprn = fields.String(allow_none=True, required=True)
    address = fields.Nested(AddressOutSchema, required=True)
