"""The one recording path: each audited request leaves exactly one audit entry, committed with
the request's work in the request's unit of work.

Whether a request is audited comes from its route's declared policy (``action``); a request that
reaches no route (404, 405) or a route without a policy is audited when it is under the API or
OAuth prefixes. Handlers name the records they return with ``current_entry().returning(...)``;
path ids (``*_id``) become targets. Work stands only if the request succeeded (2xx); otherwise it
is rolled back and the entry alone is written. If the entry cannot be written the caller gets a
503 with no data (fail closed). A request refused over a rate limit is counted into its source's
summary entry instead (``rate_limits``), so a flood cannot grow the log without bound.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Session

from service.api import rate_limits
from service.api.access import route_policy
from service.api.problems import (
    DATABASE_UNAVAILABLE,
    Problem,
    cause_name,
    database_unavailable,
    problem_response,
)
from service.audit.append import append
from service.audit.entry import PendingEntry, outcome_of
from service.context import RECORD_ID_PATTERN, recordable_address
from service.database import db
from service.oauth import identified_client
from service.unit_of_work import end_without_transaction, unit_of_work

UNROUTED_PREFIXES = ("/api/", "/oauth/")
UNROUTED_ACTION = "request:unrouted"
log = logging.getLogger(__name__)


def audited_action() -> str | None:
    """Return the action this request is recorded as, or None if it is not audited."""
    policy = route_policy()
    if policy is not None:
        return policy.action  # None for health checks and server metadata
    if request.url_rule is not None or request.path.startswith(UNROUTED_PREFIXES):
        return UNROUTED_ACTION  # a route without a policy is refused, and that is recorded
    return None


def open_entry() -> None:
    """Open the pending entry of an audited request: action, request id, address, targets."""
    action = audited_action()
    if action is None:
        return
    entry = PendingEntry(
        action=action,
        request_id=g.request_id,
        source_address=recordable_address(request.remote_addr),
    )
    for name, value in (request.view_args or {}).items():
        if name.endswith("_id"):
            entry.target(name.removesuffix("_id"), recordable_id(str(value)))
    g.audit_entry = entry


def begin_work() -> None:
    """Note whether the request's route is read-only: on PostgreSQL its reads then run in
    autocommit, from its first statement, the token check (``access.presented_token``).

    A route declared ``read_only`` changes no record; it writes its audit entry and, at most,
    notifications it queued (an issuer told its warning was read). Running its reads outside a
    transaction spares the BEGIN and COMMIT round trips (about an eighth of a look-up's CPU);
    under READ COMMITTED, PostgreSQL's default isolation, which alertshare leaves as it is,
    each statement of a transaction takes its own snapshot anyway, so the reads see what they
    would have seen. Its writes are as whole as any request's: the audit append is one
    statement, and queued notifications end the autocommit so that they and the entry commit
    in one transaction (``close_request``). SQLite keeps its transaction: there BEGIN IMMEDIATE
    is what serialises appends. A record changed in such a request is refused
    (``_refuse_writes_when_read_only``). No connection is taken here: a request refused before
    its token is checked (a rate limit, no token) never touches the pool.
    """
    policy = route_policy()
    if policy is not None and policy.read_only:
        g.read_only = True


@event.listens_for(Session, "before_flush")
def _refuse_writes_when_read_only(session: Session, context: Any, instances: Any) -> None:
    # A route declared read-only that changes a record is a bug: in autocommit its change would
    # stand even if the request then failed. (Statements other than the audit append are
    # checked for every read-only route by tests/api/test_access_matrix.py.)
    if has_request_context() and g.get("read_only"):
        raise RuntimeError(f"{request.endpoint} is declared read-only but changes records")


def current_entry() -> PendingEntry:
    """Return this request's pending audit entry; raise if the request is not audited."""
    entry: PendingEntry | None = g.get("audit_entry") if has_request_context() else None
    if entry is None:
        raise RuntimeError("no audited request: declare an action on the route's policy")
    return entry


def recordable_id(value: str) -> str:
    """Return an id as the log can hold it: ours verbatim, anything else by its digest.

    A path id is whatever the caller typed; an over-long or odd one must not stop the entry
    being written (the request would then go unrecorded).
    """
    if RECORD_ID_PATTERN.fullmatch(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _complete(entry: PendingEntry, status: int) -> None:
    # The one place the caller is written onto the entry: the client that authenticated (or
    # tried to), and the acting context once the route's policy accepted it.
    client = identified_client()
    if client is not None:
        entry.agency_id, entry.client_id = client.agency_id, client.client_id
    caller = g.get("caller")
    if caller is not None:
        entry.practitioner, entry.purpose = caller.practitioner, caller.purpose
    entry.status, entry.outcome = status, outcome_of(status)
    if entry.outcome != "allowed":
        entry.returned.clear()


def close_request(response: Response) -> Response:
    """End the request's unit of work: its work and its entry commit together, once."""
    entry: PendingEntry | None = g.pop("audit_entry", None)
    if entry is not None and rate_limits.counted_in_summary(entry):
        entry = None  # refused over a rate limit: its source's summary entry records it
    if response.status_code >= 300:
        # Nothing a refused or failed request did may persist; only its audit entry does.
        db.session.rollback()
    elif g.get("autocommit"):
        end_without_transaction()  # what the reads queued commits with the entry
    stage = "work"  # what failed, if anything: the request's own writes, or its record
    try:
        with unit_of_work():
            if entry is not None:
                _complete(entry, response.status_code)
                if current_app.config["AUDIT"]:
                    db.session.flush()  # the request's own writes first: hold the head briefly
                    stage = "record"
                    append(entry)
    except Exception as error:  # the work or its record could not be kept: it must not stand
        unavailable = isinstance(error, DATABASE_UNAVAILABLE)
        if unavailable:  # a database down or a lock not granted in time: no traceback needed
            log.warning("the request's unit of work could not be committed (%s); request refused",
                        cause_name(error))  # fmt: skip
        else:
            log.exception("the request's unit of work could not be committed; request refused")
        if entry is not None:
            _record_refusal(entry)
        if unavailable:  # whichever stage: the database did not answer, so say when to retry
            return problem_response(database_unavailable())
        if stage == "record":
            return problem_response(
                Problem(
                    503,
                    "audit-unavailable",
                    "Service unavailable",
                    "The access could not be recorded in the audit log, so it was not allowed.",
                )
            )
        return problem_response(
            Problem(503, "unavailable", "Service unavailable", "The change was not saved.")
        )
    rate_limits.write_due_summaries()
    return response


def _record_refusal(entry: PendingEntry) -> None:
    """Try once more with a bare entry, so the refused request is at least on record."""
    bare = dataclasses.replace(entry, outcome="failed", status=503, targets={}, returned={})
    try:
        with unit_of_work():
            append(bare)
    except Exception:  # the log is unwritable: the 503 stands, and the log line says why
        log.error("the refusal could not be recorded either")


def init_app(app: Flask) -> None:
    """Open each request's entry first; close its unit of work after every other hook."""
    app.before_request(open_entry)
    app.before_request(begin_work)
    app.after_request(close_request)
