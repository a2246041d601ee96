"""Operational endpoints: liveness and readiness.

Readiness appends a probe entry to the audit log (and rolls it back), which takes the chain
head every audited write takes. /readyz is public and never rate limited, so its answer is kept
for ``READINESS_SECONDS`` per process (a flood of probes costs one probe per few seconds), and
the probe waits for the head at most ``PROBE_LOCK_TIMEOUT_MS``: whoever holds the head longer
is writing the log, which is what readiness asks, so the answer is "ready". On PostgreSQL the
wait is ``lock_timeout``; on SQLite, where the head is the database's one write lock, taken at
BEGIN, the probe's connection gets a short ``busy_timeout`` for the probe (a per-connection
setting, restored before the connection returns to the pool).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from alembic.runtime.migration import MigrationContext
from flask import Blueprint, Flask, current_app
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from service.api.access import public
from service.api.problems import Problem
from service.audit.append import append
from service.audit.entry import PendingEntry
from service.database import db
from service.migrate import heads

bp = Blueprint("ops", __name__)
# How long a process keeps its readiness answer.
READINESS_SECONDS = 5.0
# Long enough for a slow statement, short enough that a polled probe never holds a worker.
PROBE_TIMEOUT_MS = 2000
# How long the probe waits for the chain head before taking its holder as proof of life.
PROBE_LOCK_TIMEOUT_MS = 500
_READINESS = "alertshare.readiness"
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout
NOT_REACHABLE = "The database is not reachable."
NOT_AT_HEAD = "Database migrations are not at head."
AUDIT_UNWRITABLE = "The audit log cannot be written."

log = logging.getLogger(__name__)


@dataclass
class _Readiness:
    """A process's last readiness answer: None (ready) or why not, and when it was found."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    checked_at: float = -math.inf
    not_ready: str | None = None


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
    reason = readiness(current_app)
    if reason is not None:
        raise Problem(503, "not-ready", "Not ready", reason)
    return {"status": "ready"}


def readiness(app: Flask) -> str | None:
    """Return why ``app`` is not ready, or None; probed at most once per ``READINESS_SECONDS``
    (callers arriving during a probe wait for its answer)."""
    state: _Readiness = app.extensions.setdefault(_READINESS, _Readiness())
    with state.lock:
        if time.monotonic() - state.checked_at >= READINESS_SECONDS:
            state.not_ready = _probe()
            state.checked_at = time.monotonic()
        return state.not_ready


def _probe() -> str | None:
    try:
        with _probe_connection() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
            if current != set(heads()):
                return NOT_AT_HEAD
            if current_app.config["AUDIT"]:
                return _probe_audit_append()
    except Exception as error:  # any failure to reach the database means "not ready"
        if _waited_for_the_head(error):
            return None
        log.warning("not ready: the database is not reachable (%s)", type(error).__name__)
        return NOT_REACHABLE
    return None


def _probe_audit_append() -> str | None:
    """Append an entry exactly as an audited request does (it is rolled back): None if the log
    takes it, or while another transaction holds the head; otherwise why not."""
    try:
        # With a target, so the references table is written too, as most requests write it.
        append(PendingEntry(action="ops:readiness", targets={"probe": ["readyz"]}))
    except Exception as error:  # whatever stops the append stops every audited request
        if _waited_for_the_head(error):
            return None
        log.warning("not ready: the audit log cannot be written (%s)", type(error).__name__)
        return AUDIT_UNWRITABLE
    return None


@contextmanager
def _probe_connection() -> Iterator[Connection]:
    """Yield a connection of its own, in a transaction the session's work runs in, whose waits
    for locks are short; the transaction is rolled back: nothing is recorded."""
    with db.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        restore = _short_busy_timeout(connection) if sqlite else None
        try:
            # The session's transaction on this connection (on SQLite, BEGIN IMMEDIATE: the
            # write lock, waited for as briefly as set above).
            db.session.connection(bind_arguments={"bind": connection})
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {PROBE_TIMEOUT_MS}")
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {PROBE_LOCK_TIMEOUT_MS}")
            yield connection
        finally:
            db.session.rollback()
            if restore is not None:
                _driver(connection).execute(f"PRAGMA busy_timeout = {restore}")


def _short_busy_timeout(connection: Connection) -> int:
    """Set the SQLite connection's busy timeout to the probe's; return the one it had."""
    driver = _driver(connection)  # the driver itself: no transaction begins
    previous = int(driver.execute("PRAGMA busy_timeout").fetchone()[0])
    driver.execute(f"PRAGMA busy_timeout = {PROBE_LOCK_TIMEOUT_MS}")
    return previous


def _driver(connection: Connection) -> Any:
    return connection.connection.driver_connection


def _waited_for_the_head(error: Exception) -> bool:
    """Say whether ``error`` is the probe giving up waiting for a lock another holds."""
    if not isinstance(error, DBAPIError):
        return False
    original = error.orig
    if isinstance(original, sqlite3.OperationalError):
        return original.sqlite_errorcode == sqlite3.SQLITE_BUSY
    return getattr(original, "sqlstate", None) == _LOCK_NOT_AVAILABLE
