"""Incidents: recorded on their own too, because low-level abuse adds up across agencies."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from schemas.incident import (
    IncidentInputSchema,
    IncidentListSchema,
    IncidentQuerySchema,
    IncidentSchema,
)
from schemas.openapi import documented
from service import incidents
from service.api import documents
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.database import today
from service.errors import NotFound
from service.households import find_household
from service.involvements import is_involved, require_household_access
from service.oauth.scopes import HOUSEHOLDS_READ, WARNINGS_WRITE
from service.warnings import household_record, readable_incidents

bp = Blueprint("incidents", __name__, url_prefix="/incidents")


@bp.post("")
@protected(WARNINGS_WRITE, action="incident:create")
@documented(request=IncidentInputSchema, response=IncidentSchema, status=201)
def record_incident() -> tuple[dict[str, Any], int]:
    """Record an incident a practitioner of your agency suffered at a household you work with."""
    ref, report = documents.load(IncidentInputSchema, request.get_json())
    agency_id = current_caller().agency_id
    household = find_household(ref)
    if household is None or not is_involved(agency_id, household.id):
        raise NotFound("No such household among those your agency works with.")
    incident = incidents.report_incident(household, agency_id, report, today())
    entry = current_entry()
    entry.returning("incident", [incident.id])
    entry.returning("household", [household.id])
    return documents.dump(IncidentSchema, documents.incident(incident)), 201


@bp.get("")
@protected(HOUSEHOLDS_READ, action="incident:list", read_only=True)
@documented(query=IncidentQuerySchema, response=IncidentListSchema)
def list_incidents() -> dict[str, Any]:
    """List the incidents at a household you work with, newest first: every agency's, but
    those resting only on a restricted warning you may not read."""
    household_id = documents.load(IncidentQuerySchema, request.args)["household_id"]
    entry = current_entry()
    entry.target("household", household_id)  # named even when refused: probes are on record
    agency_id = current_caller().agency_id
    involved_now = require_household_access(agency_id, household_id)
    found, _ = readable_incidents(household_record(household_id), agency_id, involved_now)
    entry.returning("incident", [i.id for i in found])
    return documents.dump(IncidentListSchema, {"items": [documents.incident(i) for i in found]})
