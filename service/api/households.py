"""Households: look-up with the flag view, the household itself, its members, the briefing."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from schemas.briefing import BriefingSchema
from schemas.household import (
    HouseholdSchema,
    LookupResultSchema,
    LookupSchema,
    MemberChangesSchema,
    MemberInputSchema,
    MemberListSchema,
    MemberSchema,
)
from schemas.openapi import documented
from service import households
from service.api import documents
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.briefings import brief
from service.database import today
from service.involvements import accessible_household, require_household_access
from service.notifications import warnings_read
from service.oauth.scopes import HOUSEHOLDS_READ, INVOLVEMENTS_WRITE

bp = Blueprint("households", __name__, url_prefix="/households")


@bp.post("/lookup")
@protected(HOUSEHOLDS_READ, action="household:lookup", read_only=True)
@documented(request=LookupSchema, response=LookupResultSchema)
def look_up() -> dict[str, Any]:
    """Look a household up by UPRN, address or a person living there: the flag view.

    Any partner agency may see whether active warnings exist, the highest risk level, the
    categories and precautions (but not those of restricted warnings it may not read) and whom
    to call. No names, narrative or addresses. A look-up never creates a household.
    """
    query = documents.load(LookupSchema, request.get_json())
    agency_id = current_caller().agency_id
    person = query.get("person", {})
    matches = households.look_up(
        agency_id, today(), uprn=query.get("uprn"), address=query.get("address"), **person
    )
    current_entry().returning("household", [match.household_id for match in matches])
    return documents.dump(LookupResultSchema, {
        "matches": [
            {"household_id": m.household_id, "matched_by": m.matched_by, "involved": m.involved,
             "flag": documents.flag(m.flag)}
            for m in matches
        ]
    })  # fmt: skip


@bp.get("/<household_id>")
@protected(HOUSEHOLDS_READ, action="household:read", read_only=True)
@documented(response=HouseholdSchema)
def read_household(household_id: str) -> dict[str, Any]:
    """Read a household your agency works with (or has warned about): UPRN and address."""
    household, _ = accessible_household(current_caller().agency_id, household_id)
    current_entry().returning("household", [household.id])
    return documents.dump(HouseholdSchema, documents.household(household))


@bp.get("/<household_id>/members")
@protected(HOUSEHOLDS_READ, action="member:list", read_only=True)
@documented(response=MemberListSchema)
def list_members(household_id: str) -> dict[str, Any]:
    """List who lives in the household."""
    require_household_access(current_caller().agency_id, household_id)
    members = households.list_members(household_id)
    current_entry().returning("member", [m.id for m in members])
    return documents.dump(MemberListSchema, {"items": [documents.member(m) for m in members]})


@bp.post("/<household_id>/members")
@protected(INVOLVEMENTS_WRITE, action="member:create")
@documented(request=MemberInputSchema, response=MemberSchema, status=201)
def add_member(household_id: str) -> tuple[dict[str, Any], int]:
    """Add someone living in the household (agencies working with it)."""
    details = documents.load(MemberInputSchema, request.get_json())
    household, _ = accessible_household(current_caller().agency_id, household_id)
    person = households.add_member(household, **details)
    current_entry().returning("member", [person.id])
    return documents.dump(MemberSchema, documents.member(person)), 201


@bp.patch("/<household_id>/members/<member_id>")
@protected(INVOLVEMENTS_WRITE, action="member:update")
@documented(request=MemberChangesSchema, response=MemberSchema)
def correct_member(household_id: str, member_id: str) -> dict[str, Any]:
    """Correct a member's details."""
    changes = documents.load(MemberChangesSchema, request.get_json())
    require_household_access(current_caller().agency_id, household_id)
    person = households.correct_member(households.get_member(household_id, member_id), changes)
    current_entry().returning("member", [person.id])
    return documents.dump(MemberSchema, documents.member(person))


@bp.get("/<household_id>/briefing")
@protected(HOUSEHOLDS_READ, action="household:briefing", read_only=True)
@documented(response=BriefingSchema)
def briefing(household_id: str) -> dict[str, Any]:
    """The pre-visit briefing: who lives there, what happened, what precautions to take, who
    else is involved, and the questions to ask yourself before you go."""
    value = brief(household_id, current_caller().agency_id, today())
    warnings_read(value.warnings, current_caller().agency_id, today())
    entry = current_entry()
    entry.returning("household", [household_id])
    entry.returning("member", [m.id for m in value.members])
    entry.returning("warning", [w.id for w in value.warnings + value.flagged])
    entry.returning("incident", [i.id for w in value.warnings for i in w.incidents])
    entry.returning("involvement", [i.id for i in value.other_agencies])
    return documents.dump(BriefingSchema, documents.briefing(value, today()))
