"""Reading the audit log back in tests."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import select

from service.database import db
from service.models.audit import AuditEntry


def audit_entries(app: Flask) -> list[dict[str, Any]]:
    """Return every audit entry as a dict, in seq order."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        return [row.as_dict() for row in rows]


def last_entry(app: Flask) -> dict[str, Any]:
    return audit_entries(app)[-1]


def generate_private_key() -> bytes:
    """Return a new raw 32-byte Ed25519 private key."""
    return Ed25519PrivateKey.generate().private_bytes_raw()
