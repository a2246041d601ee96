"""The unit of work: everything done inside one commits together, once, or not at all.

A request (``service.api.recording``), a CLI command and a worker job each run inside exactly one
unit of work; use cases never commit. Nothing is sent to the outside world before the commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import service.outbox  # noqa: F401  (its events are written as part of every commit)
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
    work's first statement; a rollback ends it."""
    session = db.session
    if session.get_bind().dialect.name != "postgresql":
        return False
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True
