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
