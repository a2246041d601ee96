"""The API's own description: the OpenAPI 3.1 document, built from the routes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from schemas.openapi import build_openapi
from service.api.access import public
from service.oauth import issuer_url

API_PREFIX = "/api/v1"
bp = Blueprint("openapi", __name__)


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
        if rule.rule.startswith(API_PREFIX) and rule.rule != f"{API_PREFIX}/openapi.json"
    ]
    return build_openapi(rules, issuer_url(), current_app.config["MAX_CONTENT_LENGTH"])
