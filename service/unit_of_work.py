"""The unit of work: everything done inside one commits together, once, or not at all.

A request (``service.api.recording``), a CLI command and a worker job each run inside exactly one
unit of work; use cases never commit. Nothing is sent to the outside world before the commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service import outbox  # its events are written as part of every commit
from service.database import db


@contextmanager
def unit_of_work() -> Iterator[None]:
    """Commit ``db.session`` when the block ends normally; roll it back if the block raises."""
    session = db.session
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def begin_without_transaction() -> bool:
    """Run the session's next statements outside any transaction where that is safe, and say
    whether they will: on PostgreSQL, for work that changes no record (its audit entry is one
    statement, whole by itself; see ``service.api.recording.begin_work``). Call it before the
    work's first statement; ``end_without_transaction`` or a rollback ends it."""
    session = db.session
    if session.get_bind().dialect.name != "postgresql":
        return False
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


def end_without_transaction() -> None:
    """End work begun by ``begin_without_transaction`` if it queued events (notifications): the
    next statements then run in a transaction, so that the events and what follows (the audit
    entry) commit together. Nothing read is undone; the events are kept."""
    session = db.session()
    if outbox.has_pending(session):
        with outbox.kept_across_rollback(session):
            session.rollback()
