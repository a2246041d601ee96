"""The auditors' API: who accessed what, when and why, and is the log intact."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from schemas.audit import (
    AccessReportSchema,
    EventPageSchema,
    EventQuerySchema,
    ExportQuerySchema,
    VerificationSchema,
)
from schemas.openapi import documented
from service.api import documents
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.audit.access_report import access_report
from service.audit.checkpoint import public_key_from_private
from service.audit.events import EventFilter, find_events
from service.audit.export import FORMATS, event_document, export_lines
from service.audit.unusual import Event
from service.audit.verification import verify_with_stored_checkpoints
from service.context import Caller
from service.errors import NotFound
from service.involvements import is_involved
from service.keys import active_keys
from service.oauth.scopes import AUDIT_READ, AUDIT_READ_ALL

bp = Blueprint("audit", __name__, url_prefix="/audit")


def _viewer(caller: Caller) -> str | None:
    """Return the agency whose view applies, or None for the partnership's audit lead."""
    return None if caller.has_scope(AUDIT_READ_ALL) else caller.agency_id


def _filters(args: dict[str, Any]) -> EventFilter:
    names = EventFilter.__dataclass_fields__
    return EventFilter(**{k: v for k, v in args.items() if k in names})


def _bulk_threshold() -> int:
    return int(current_app.config["UNUSUAL_READS_PER_HOUR"])


def _find_and_record(args: dict[str, Any]) -> tuple[list[Event], int | None]:
    """Find the caller's page of events and name them all in this request's audit entry."""
    events, cursor = find_events(
        _filters(args), _viewer(current_caller()), before_seq=args.get("cursor"),
        limit=args["limit"], bulk_threshold=_bulk_threshold(),
    )  # fmt: skip
    current_entry().returning("audit_entry", [str(e.entry.seq) for e in events])
    return events, cursor


@bp.get("/events")
@protected(AUDIT_READ, AUDIT_READ_ALL, action="audit:search")
@documented(query=EventQuerySchema, response=EventPageSchema)
def list_events() -> dict[str, Any]:
    """List audit entries, newest first, filtered; follow next_cursor for older ones.

    With audit:read an agency sees the entries it made and those about households it works
    with; with audit:read:all, everything.
    """
    events, cursor = _find_and_record(documents.load(EventQuerySchema, request.args))
    return {"items": [event_document(e) for e in events], "next_cursor": cursor}


@bp.get("/events/export")
@protected(AUDIT_READ, AUDIT_READ_ALL, action="audit:export")
@documented(
    query=ExportQuerySchema,
    media_types=tuple(FORMATS.values()),
    headers={
        "X-Total-Count": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        "X-Next-Cursor": {"schema": {"type": "string", "pattern": "^[0-9]+$"}},
    },
)
def export_events() -> Response:
    """Export matching entries as JSON Lines or CSV, newest first, up to `limit` rows.

    X-Total-Count is the number of rows in this response; X-Next-Cursor, when present, is the
    `cursor` for the next (older) batch.
    """
    args = documents.load(ExportQuerySchema, request.args)
    # Read, and record as returned, within the audited transaction; only rendering streams.
    events, cursor = _find_and_record(args)
    rendered = [event_document(e) for e in events]  # before the commit expires the rows
    response = Response(export_lines(rendered, args["format"]), mimetype=FORMATS[args["format"]])
    response.headers["X-Total-Count"] = str(len(events))
    if cursor is not None:
        response.headers["X-Next-Cursor"] = str(cursor)
    response.headers["Content-Disposition"] = f"attachment; filename=audit.{args['format']}"
    return response


@bp.get("/households/<household_id>/access-report")
@protected(AUDIT_READ, AUDIT_READ_ALL, action="audit:access-report")
@documented(response=AccessReportSchema)
def household_access_report(household_id: str) -> dict[str, Any]:
    """Everyone who accessed a household's record, by agency and practitioner.

    For subject access requests and for spotting browsing without need. With audit:read the
    caller's agency must be (or have been) involved with the household.
    """
    caller = current_caller()
    if _viewer(caller) is not None and not is_involved(caller.agency_id, household_id, ever=True):
        raise NotFound("No such household among those your agency works with.")
    lines, seqs = access_report(household_id, _bulk_threshold())
    current_entry().returning("audit_entry", [str(seq) for seq in seqs])
    return {"household_id": household_id, "accessed_by": [line.as_dict() for line in lines]}


@bp.get("/verify")
@protected(AUDIT_READ_ALL, action="audit:verify")
@documented(response=VerificationSchema)
def verify() -> dict[str, Any]:
    """Walk the whole hash chain, against the latest signed checkpoint, and report."""
    public_key = public_key_from_private(active_keys().keyring.signing_key)
    report, checkpoint_seq = verify_with_stored_checkpoints(public_key)
    return {**report.to_json(), "checkpoint_seq": checkpoint_seq}
