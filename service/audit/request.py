"""The audit entry of the request being served (Flask's request context holds it)."""

from __future__ import annotations

from flask import g

from service.audit.log import PendingEntry


def current_entry() -> PendingEntry:
    """Return this request's pending audit entry (a detached one outside audited requests)."""
    entry = g.get("audit_entry")
    return entry if entry is not None else PendingEntry(action="untracked")
