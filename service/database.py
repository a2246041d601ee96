"""The SQLAlchemy handle, the declarative base, writing new records by statement rather than
the session's flush (``insert_new``), and engine settings per dialect."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Insert,
    MetaData,
    Table,
    bindparam,
    event,
    exc,
    insert,
    inspect,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached
from sqlalchemy.pool import Pool
from sqlalchemy.types import TypeDecorator

# Stable constraint names let Alembic migrations name what they create and drop.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    def stored_values(self) -> dict[str, Any]:
        """The column values of a new record, by column, for a statement that inserts the record
        itself rather than the session's flush (``insert_new``). A column not set takes its
        Python default (a value, or a function of no arguments), or NULL if it has no default
        at all, and the record is given it too, as a flush would: it then holds what was
        written. One with a server default or a SQL default is left to the database. Not for a
        loaded record (what the ORM has not loaded is not in it), nor for one whose key the
        database generates (an integer primary key): the record must know its key."""
        values = {}
        for attribute in inspect(type(self)).column_attrs:
            column = attribute.columns[0]
            if attribute.key not in self.__dict__:
                if column is self.__table__.autoincrement_column:  # type: ignore[attr-defined]
                    raise ValueError(f"{type(self).__name__}: its key comes from the database")
                default = column.default
                if default is None and column.server_default is None:
                    setattr(self, attribute.key, None)
                elif default is not None and default.is_scalar:
                    setattr(self, attribute.key, default.arg)
                elif default is not None and default.is_callable:
                    setattr(self, attribute.key, default.arg(None))
                else:
                    continue
            values[column.key] = getattr(self, attribute.key)
        return values


db = SQLAlchemy(model_class=Base)


# A row of a table that has no model (an association table's), by column.
TableRow = tuple[Table, dict[str, Any]]
# Up to this many rows, PostgreSQL gets them in one statement (a statement built per shape,
# kept for the next write of that shape); more, and each table's rows go in one of their own.
ONE_STATEMENT_ROWS = 8


def insert_new(*records: Base, rows: Sequence[TableRow] = ()) -> None:
    """Write new records, and rows of association tables (a warning's links to its incidents),
    rather than by the session's flush, whose bookkeeping (states, dependency sorting,
    relationship sync) costs more than the writing on the busiest write there is, publishing
    a warning. Give them in order, parents first, links last.

    Relationships are not followed: set the foreign keys, give every related record, and give
    as ``rows`` the association rows of every many-to-many collection set on them (the session
    takes what the records hold as written). The session is flushed first, so that a parent
    new in this unit of work (a household) is written before them. The records then join the
    session as if a flush had written them: changed later in the unit of work, they are updated
    by its flush. Not inside a savepoint that may roll back: the session would keep them."""
    for record in records:
        if not inspect(record).transient:
            raise ValueError(f"not a new record, or already in a session: {record!r}")
    session = db.session
    session.flush()
    written = [(record.__table__, record.stored_values()) for record in records]
    _insert_rows(session.connection(), [*written, *rows])  # type: ignore[list-item]
    for record in records:  # all first: adding one cascades to the others it refers to
        make_transient_to_detached(record)
    session.add_all(records)


def _insert_rows(connection: Connection, rows: list[TableRow]) -> None:
    if not rows:
        return
    if connection.dialect.name == "postgresql" and len(rows) <= ONE_STATEMENT_ROWS:
        # One statement, one round trip (a third of the CPU of a statement per row): each
        # row's INSERT in a data-modifying WITH. They run in no set order, but foreign keys are
        # checked once the whole statement is done.
        shape = tuple((table, tuple(values)) for table, values in rows)
        parameters = {
            _parameter(n, c): v for n, (_, values) in enumerate(rows) for c, v in values.items()
        }
        connection.execute(_inserting(shape), parameters)
        return
    # SQLite has no INSERT inside WITH; and many rows would make too many shapes to keep.
    tables: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for table, values in rows:
        tables.setdefault((table, tuple(values)), []).append(values)
    for (table, _), values_of_rows in tables.items():
        connection.execute(insert(table), values_of_rows)


@functools.lru_cache(maxsize=64)
def _inserting(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Insert:
    # Built once per shape (tables and columns, row by row): its cache key and compiled form
    # are reused. A row each, as several rows in one VALUES have no cache key: they would be
    # compiled every time.
    inserts = [
        insert(table).values({c: bindparam(_parameter(n, c), type_=table.c[c].type) for c in cs})
        for n, (table, cs) in enumerate(shape)
    ]
    *first, last = inserts
    return last.add_cte(*(each.cte(f"insert_{n}") for n, each in enumerate(first)))


def _parameter(row: int, column: str) -> str:
    return f"r{row}_{column}"


class UTCDateTime(TypeDecorator[datetime]):
    """Store UTC timestamps; always return timezone-aware UTC datetimes (SQLite drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def today() -> date:
    """Return today's date in UTC (review dates and "not in the future" are judged by it)."""
    return utcnow().date()


# PostgreSQL (libpq) connection settings. A server that is down refuses at once, but one that
# is unreachable (a partition, a fail-over in progress) would leave a request waiting on TCP's
# own timeouts, minutes long: bound the connect, and let keepalives notice a server that went
# away under an open connection. Either way the request fails fast (a 503) and the pool
# reconnects once the server answers again, with no restart (see _ping_if_idle).
POSTGRESQL_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 2,  # seconds; libpq's smallest useful value
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
# A request that waits for a row lock (the audit log's chain head, a warning being changed)
# longer than this is refused rather than left to pile up behind a stuck transaction; set on
# each connection (not as a startup option, which PgBouncer refuses). No statement_timeout:
# gunicorn's worker timeout already bounds a request, and migrations and archival may
# legitimately run statements for minutes.
POSTGRESQL_LOCK_TIMEOUT = "5s"


def engine_options(database_url: str) -> dict[str, Any]:
    """Return engine options suited to the database in ``database_url``."""
    # Bound parameters can hold personal data: keep them out of exception messages and logs.
    if database_url.startswith("sqlite"):
        return {"connect_args": {"timeout": 10}, "hide_parameters": True}
    return {
        "hide_parameters": True,
        "connect_args": dict(POSTGRESQL_CONNECT_ARGS),
    }


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    # Only SQLite connections carry these pragmas; PostgreSQL needs none.
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    # Let SQLAlchemy emit BEGIN itself (see _begin_immediately) instead of the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


@event.listens_for(Engine, "connect")
def _configure_postgresql(dbapi_connection: Any, connection_record: Any) -> None:
    if not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    # Outside any transaction of the caller's: set for the session, then committed.
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{POSTGRESQL_LOCK_TIMEOUT}'")
    dbapi_connection.commit()


@event.listens_for(Engine, "begin")
def _begin_immediately(connection: Any) -> None:
    # Every API request appends to the audit log, so every transaction writes. Taking SQLite's
    # write lock at BEGIN makes writers queue on busy_timeout instead of failing when a read
    # snapshot goes stale, and serialises audit appends so the hash chain cannot fork.
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# A pooled connection is pinged before use only when it has sat idle this long. The pool's own
# pre-ping would ping before every request: a round trip (~0.2 ms of CPU here, 4% of a look-up)
# spent on connections a busy worker used a moment ago. A server that restarted under a busy
# worker failed that worker's requests meanwhile, and a disconnect found by a request
# invalidates the whole pool, so the stale connections a ping catches are those left idle
# through a restart (the morning after a night's maintenance).
PING_WHEN_IDLE_SECONDS = 1.0
_CHECKED_IN_AT = "alertshare.checked_in_at"


@event.listens_for(Pool, "checkin")
def _note_checkin(dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info[_CHECKED_IN_AT] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
    # SQLAlchemy's documented custom pessimistic check: DisconnectionError makes the pool
    # discard this connection and check out (or open) another.
    if not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    checked_in_at = connection_record.info.get(_CHECKED_IN_AT)
    if checked_in_at is None or time.monotonic() - checked_in_at < PING_WHEN_IDLE_SECONDS:
        return  # just opened, or used a moment ago
    autocommit = dbapi_connection.autocommit
    try:
        dbapi_connection.autocommit = True  # as the dialect's own ping: no transaction left open
        try:
            dbapi_connection.execute("SELECT 1")
        finally:
            if not dbapi_connection.closed:
                dbapi_connection.autocommit = autocommit
    except Exception as error:
        raise exc.DisconnectionError("the pooled connection did not answer") from error
