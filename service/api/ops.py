"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from service.api.access import public
from service.api.problems import Problem
from service.migrate import schema_is_current

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@public()
def healthz() -> dict[str, Any]:
    """Say the process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
@public()
def readyz() -> dict[str, Any]:
    """Say whether the database answers and its schema is at the migration head."""
    try:
        current = schema_is_current()
    except Exception as error:  # any failure to reach the database means "not ready"
        raise Problem(503, "not-ready", "Not ready", "The database is not reachable.") from error
    if not current:
        raise Problem(503, "not-ready", "Not ready", "Database migrations are not at head.")
    return {"status": "ready"}
