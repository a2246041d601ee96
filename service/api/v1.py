"""The /api/v1 blueprint: the caller, the partnership directory and the API description."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from schemas.agency import AgencyListSchema, AgencySchema, CallerSchema
from schemas.openapi import build_openapi, documented
from service import agencies
from service.api.access import current_caller, protected, public
from service.audit.request import current_entry
from service.oauth.scopes import API_SCOPES
from service.oauth.server import issuer_url
from service.problems import Problem

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
BODY_METHODS = {"POST", "PUT", "PATCH"}


@bp.before_request
def require_json_body() -> None:
    """Refuse request bodies that are not JSON."""
    if request.method in BODY_METHODS and not request.is_json:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            "Send the request body as application/json.",
        )


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


@bp.get("/openapi.json")
@public(action="api:describe")
def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 description of this API."""
    rules = [
        (
            rule.rule,
            set(rule.methods or ()) - {"HEAD", "OPTIONS"},
            current_app.view_functions[rule.endpoint],
        )
        for rule in current_app.url_map.iter_rules()
        if rule.rule.startswith(bp.url_prefix or "") and rule.endpoint != "api_v1.openapi_document"
    ]
    return build_openapi(rules, issuer_url())
