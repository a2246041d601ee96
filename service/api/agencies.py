"""The partnership directory: the calling client, and the agencies with their duty contacts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from schemas.agency import AgencyListSchema, AgencySchema, CallerSchema
from schemas.openapi import documented
from service import agencies
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.oauth.scopes import API_SCOPES

bp = Blueprint("agencies", __name__)


@bp.get("/me")
@protected(*API_SCOPES, action="caller:read")
@documented(response=CallerSchema)
def whoami() -> dict[str, Any]:
    """Describe the calling client: its agency, scopes and acting context.

    Use it to check an integration end to end before sending data.
    """
    caller = current_caller()
    current_entry().returning("agency", [caller.agency_id])
    body: dict[str, Any] = CallerSchema().dump(
        {
            "agency": agencies.get_agency(caller.agency_id),
            "client_id": caller.client_id,
            "scopes": sorted(caller.scopes),
            "practitioner": caller.practitioner,
            "purpose": caller.purpose,
        }
    )
    return body


@bp.get("/agencies")
@protected(*API_SCOPES, action="agency:list")
@documented(response=AgencyListSchema)
def list_agencies() -> dict[str, Any]:
    """List the partnership's active agencies and their duty contacts."""
    found = agencies.list_agencies()
    current_entry().returning("agency", [agency.id for agency in found])
    return {"items": AgencySchema(many=True).dump(found)}
