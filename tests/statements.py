"""The SQL statements an app's engine executes: to count them per request (no N+1) and to
check what a read-only route runs, and whether outside a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from flask import Flask
from sqlalchemy import event

from service.database import db


class Executed(NamedTuple):
    sql: str
    autocommit: bool  # ran outside any transaction (psycopg's own flag; SQLite: never)


@contextmanager
def executed_statements(app: Flask) -> Iterator[list[Executed]]:
    """Collect every statement the app's engine executes inside the block, in order."""
    executed: list[Executed] = []

    def note(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Python 3.11's sqlite3 has no such flag: SQLite keeps its transaction.
        autocommit = getattr(connection.connection.dbapi_connection, "autocommit", False) is True
        executed.append(Executed(statement, autocommit))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", note)
