"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from service.api.access import public
from service.api.problems import Problem
from service.audit.append import append
from service.audit.entry import PendingEntry
from service.database import db
from service.migrate import schema_is_current

bp = Blueprint("ops", __name__)
# Long enough for a busy chain head, short enough that a polled probe never holds a worker.
PROBE_TIMEOUT_MS = 2000


@bp.get("/healthz")
@public()
def healthz() -> dict[str, Any]:
    """Say the process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
@public()
def readyz() -> dict[str, Any]:
    """Say whether the database answers, its schema is at the migration head, and the audit
    log takes entries (without them every audited route answers 503)."""
    try:
        current = schema_is_current()
    except Exception as error:  # any failure to reach the database means "not ready"
        raise Problem(503, "not-ready", "Not ready", "The database is not reachable.") from error
    if not current:
        raise Problem(503, "not-ready", "Not ready", "Database migrations are not at head.")
    if current_app.config["AUDIT"]:
        try:
            probe_audit_append()
        except Exception as error:  # whatever stops the append stops every audited request
            detail = "The audit log cannot be written."
            raise Problem(503, "not-ready", "Not ready", detail) from error
    return {"status": "ready"}


def probe_audit_append() -> None:
    """Append an entry exactly as an audited request does, then roll it back: raise if the log
    cannot be written (privilege revoked, table missing or locked); nothing is recorded."""
    try:
        connection = db.session.connection()
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {PROBE_TIMEOUT_MS}")
        # With a target, so the references table is written too, as most requests write it.
        append(PendingEntry(action="ops:readiness", targets={"probe": ["readyz"]}))
    finally:
        db.session.rollback()
