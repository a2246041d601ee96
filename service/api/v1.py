"""The /api/v1 blueprint: the hooks every JSON API route shares, and the resources under it.

Each resource has its own module and blueprint (``agencies``, ``audit``, ``openapi``...), nested
here so that every one of them gets these hooks.
"""

from __future__ import annotations

from flask import Blueprint, request

from service.api import (
    agencies,
    audit,
    households,
    incidents,
    involvements,
    notifications,
    openapi,
    warnings,
    webhooks,
)
from service.api.problems import Problem

PREFIX = "/api/v1"
BODY_METHODS = {"POST", "PUT", "PATCH"}
bp = Blueprint("api_v1", __name__, url_prefix=PREFIX)


@bp.before_request
def require_json_body() -> None:
    """Refuse request bodies that are not JSON (a POST that needs none may send none)."""
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if request.method in BODY_METHODS and has_body and not request.is_json:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            "Send the request body as application/json.",
        )


for resource in (
    agencies, audit, households, incidents, involvements, notifications, openapi, warnings,
    webhooks,
):  # fmt: skip
    bp.register_blueprint(resource.bp)
