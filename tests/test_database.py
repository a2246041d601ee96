"""Engine settings: a PostgreSQL server that does not answer fails a request fast, and a row
lock held too long is refused rather than waited on."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from service.database import POSTGRESQL_LOCK_TIMEOUT, engine_options
from tests.conftest import ON_POSTGRES


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Return the port of a server that takes connections and never says a word (a database
    host that hangs, as a partition or a stuck fail-over looks to a client)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_postgresql_server_that_does_not_answer_fails_within_the_connect_timeout(
    silent_server: int,
) -> None:
    url = f"postgresql+psycopg://alertshare@127.0.0.1:{silent_server}/alertshare"
    engine = create_engine(url, **engine_options(url))
    started = time.monotonic()
    with pytest.raises(OperationalError):
        engine.connect()
    # libpq's connect_timeout is 2 s; without it the wait is the server's, i.e. unbounded.
    assert time.monotonic() - started < 4
    engine.dispose()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
def test_a_row_lock_held_too_long_is_refused_not_waited_on(database_url: str) -> None:
    engine = create_engine(database_url, **engine_options(database_url))
    with engine.connect() as holder, engine.connect() as waiter:
        assert waiter.execute(text("SHOW lock_timeout")).scalar() == POSTGRESQL_LOCK_TIMEOUT
        holder.execute(text("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"):
            waiter.execute(text("SELECT * FROM audit_head FOR UPDATE"))
        assert 4 < time.monotonic() - started < 8
        holder.rollback()
    engine.dispose()
