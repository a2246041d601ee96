"""Involvements: "my agency is working with this family" (which unlocks the detail)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from schemas.involvement import (
    EndInvolvementSchema,
    InvolvementInputSchema,
    InvolvementListSchema,
    InvolvementQuerySchema,
    InvolvementSchema,
)
from schemas.openapi import documented
from service import involvements
from service.api import documents
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.households import resolve_household
from service.oauth.scopes import HOUSEHOLDS_READ, INVOLVEMENTS_WRITE

bp = Blueprint("involvements", __name__, url_prefix="/involvements")


@bp.post("")
@protected(INVOLVEMENTS_WRITE, action="involvement:create")
@documented(request=InvolvementInputSchema, response=InvolvementSchema, status=201, errors=(409,))
def declare_involvement() -> tuple[dict[str, Any], int]:
    """Declare that your agency works with a household (registering the household if new).

    The other agencies working with it will be told; you can then read its detail.
    """
    body = documents.load(InvolvementInputSchema, request.get_json())
    agency_id = current_caller().agency_id
    household = resolve_household(body["household"], agency_id)
    involvement = involvements.register_involvement(
        household, agency_id, case_reference=body["case_reference"],
        lead_practitioner=body["lead_practitioner"]["name"],
        lead_contact=body["lead_practitioner"]["contact"],
        contact_route=body.get("contact_route"),
    )  # fmt: skip
    entry = current_entry()
    entry.returning("involvement", [involvement.id])
    entry.returning("household", [household.id])
    return documents.dump(InvolvementSchema, documents.involvement(involvement)), 201


@bp.post("/<involvement_id>/end")
@protected(INVOLVEMENTS_WRITE, action="involvement:end")
@documented(request=EndInvolvementSchema, response=InvolvementSchema, errors=(409,))
def end_involvement(involvement_id: str) -> dict[str, Any]:
    """End your agency's involvement with a household."""
    body = documents.load(EndInvolvementSchema, request.get_json())
    involvement = involvements.end_involvement(
        involvement_id, current_caller().agency_id, body["reason"]
    )
    current_entry().returning("household", [involvement.household_id])
    return documents.dump(InvolvementSchema, documents.involvement(involvement))


@bp.get("")
@protected(INVOLVEMENTS_WRITE, HOUSEHOLDS_READ, action="involvement:list", read_only=True)
@documented(query=InvolvementQuerySchema, response=InvolvementListSchema)
def list_involvements() -> dict[str, Any]:
    """List your own agency's involvements (newest first, at most 500), optionally with one
    household."""
    query = documents.load(InvolvementQuerySchema, request.args)
    found = involvements.list_involvements(current_caller().agency_id, query.get("household_id"))
    entry = current_entry()
    entry.returning("involvement", [i.id for i in found])
    entry.returning("household", [i.household_id for i in found])
    return documents.dump(
        InvolvementListSchema, {"items": [documents.involvement(i) for i in found]}
    )
