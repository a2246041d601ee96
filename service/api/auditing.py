"""The one recording path: every API and token request leaves exactly one audit entry.

Handlers add the ids they return (``current_entry().returning(...)``); path ids such as
``household_id`` become targets automatically, and the action comes from the route's policy.
A successful request's work and its entry commit together; if the entry cannot be written the
work is rolled back and the caller gets a 503 with no data (fail closed). A failed or denied
request's work is rolled back and its entry is written in a transaction of its own.
"""

from __future__ import annotations

import hashlib
import logging

from flask import Flask, Response, current_app, g, request

from service.api.access import policy_of
from service.audit.log import PendingEntry, append
from service.context import RECORD_ID_PATTERN, recordable_address
from service.database import db
from service.problems import Problem, problem_response

AUDITED_PREFIXES = ("/api/", "/oauth/")
UNROUTED_ACTION = "request:unrouted"
log = logging.getLogger(__name__)


def _outcome(status: int) -> str:
    if status < 300:
        return "allowed"
    return "denied" if status in (401, 403, 404) else "failed"


def begin_entry() -> None:
    """Open the pending entry for an audited request: action, request id, path targets."""
    if not request.path.startswith(AUDITED_PREFIXES):
        return
    view = current_app.view_functions.get(request.endpoint or "")
    policy = policy_of(view) if view is not None else None
    action = policy.action if policy is not None and policy.action else UNROUTED_ACTION
    entry = PendingEntry(
        action=action,
        request_id=g.request_id,
        source_address=recordable_address(request.remote_addr),
    )
    for name, value in (request.view_args or {}).items():
        if name.endswith("_id"):
            entry.target(name.removesuffix("_id"), recordable_id(str(value)))
    g.audit_entry = entry


def recordable_id(value: str) -> str:
    """Return an id as the log can hold it: ours verbatim, anything else by its digest.

    A path id is whatever the caller typed; an over-long or odd one must not stop the entry
    being written (the request would then go unrecorded).
    """
    if RECORD_ID_PATTERN.fullmatch(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def finish_entry(response: Response) -> Response:
    """Write the entry with the request's outcome; fail closed if it cannot be written."""
    entry: PendingEntry | None = g.pop("audit_entry", None)
    if entry is None:
        return response
    caller = g.get("caller")
    if caller is not None:
        entry.agency_id, entry.client_id = caller.agency_id, caller.client_id
        entry.practitioner, entry.purpose = caller.practitioner, caller.purpose
    entry.status, entry.outcome = response.status_code, _outcome(response.status_code)
    if entry.outcome != "allowed":
        # Nothing a refused or failed request did may persist; only its audit entry does.
        db.session.rollback()
        entry.returned.clear()
    try:
        if current_app.config["AUDIT"]:
            db.session.flush()  # the request's own writes first: the chain head is held briefly
            append(entry)
        db.session.commit()
    except Exception:  # any failure to record means the request must not stand
        db.session.rollback()
        log.exception("audit entry could not be written; request refused")
        _record_refusal(entry)
        return problem_response(
            Problem(
                503,
                "audit-unavailable",
                "Service unavailable",
                "The access could not be recorded in the audit log, so it was not allowed.",
            )
        )
    return response


def _record_refusal(entry: PendingEntry) -> None:
    """Try once more with a bare entry, so the refused request is at least on record."""
    bare = PendingEntry(
        action=entry.action, outcome="failed", status=503, agency_id=entry.agency_id,
        client_id=entry.client_id, practitioner=entry.practitioner, purpose=entry.purpose,
        request_id=entry.request_id, source_address=entry.source_address,
    )  # fmt: skip
    try:
        append(bare)
        db.session.commit()
    except Exception:  # the log is unwritable: the 503 stands, and the log line says why
        db.session.rollback()


def init_app(app: Flask) -> None:
    """Register the recording hooks (after logging's, so the log sees the final response)."""
    app.before_request(begin_entry)
    app.after_request(finish_entry)
