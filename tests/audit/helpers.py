"""Reading the audit log back in tests."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from sqlalchemy import select

from service.database import db
from service.models.audit import AuditEntry


def audit_entries(app: Flask) -> list[dict[str, Any]]:
    """Return every audit entry as a dict, in seq order."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        return [
            {**row.chained_fields(), "targets": json.loads(row.targets),
             "returned": json.loads(row.returned)}
            for row in rows
        ]  # fmt: skip


def last_entry(app: Flask) -> dict[str, Any]:
    return audit_entries(app)[-1]
