"""Fixtures: a fresh, migrated database per test (SQLite file, or PostgreSQL when configured)."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import create_app
from service.database import db
from service.migrate import upgrade

# The suite runs on PostgreSQL when ALERTSHARE_DATABASE_URL names a PostgreSQL database (.ci/run
# creates a fresh one); that database is migrated once and used as the template for each test's.
PG_URL = os.environ.get("ALERTSHARE_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgresql")
# Under pytest-xdist (``-n 2``) each worker process is named here ("gw0", "gw1", ...).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_counter = itertools.count()
UNLIMITED = "1000000/minute"  # rate limits no test reaches by accident


def _admin_engine() -> Any:
    return create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")


def _migrate(url: str) -> None:
    engine = create_engine(url)
    upgrade(engine=engine)
    engine.dispose()


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return a migrated database to copy for each test (a URL on PostgreSQL, else a path)."""
    if not ON_POSTGRES:
        # tmp_path_factory's directory is the worker's own under xdist.
        path = tmp_path_factory.mktemp("template") / "template.db"
        _migrate(f"sqlite:///{path}")
        yield str(path)
    elif not XDIST_WORKER:
        _migrate(PG_URL)
        yield PG_URL
    else:
        # CREATE DATABASE ... TEMPLATE fails while any other session is connected to the
        # template, and two workers would also migrate one database at once: each worker
        # migrates a database of its own, named after the configured one, and drops it at the end.
        url = make_url(PG_URL)
        name = f"{url.database}_{XDIST_WORKER}_{os.getpid()}"  # two runs never share one
        admin = _admin_engine()
        with admin.connect() as connection:
            # One left by an interrupted run would hold an old schema.
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        template = url.set(database=name).render_as_string(hide_password=False)
        try:
            _migrate(template)
            yield template
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@contextmanager
def fresh_database(template: str, workdir: Path) -> Iterator[str]:
    """Copy the migrated ``template`` (a path, or a URL on PostgreSQL) into a new database;
    yield its URL, then drop it."""
    number = next(_counter)
    if not ON_POSTGRES:
        path = workdir / f"alertshare-{number}.db"
        shutil.copy(template, path)
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    url = make_url(template)
    # The pid keeps the names of two workers' (or two runs') databases apart.
    name = f"{make_url(PG_URL).database}_t{os.getpid()}_{number}"
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def build_app(database_url: str, data_dir: Path, **overrides: Any) -> Flask:
    """Create a test app on ``database_url``, keeping its key ring in ``data_dir``."""
    config = {"DATA_DIR": str(data_dir), "DATABASE_URL": database_url, "TESTING": True}
    # Many tests make many requests from 127.0.0.1; tests of the limits set their own.
    config.update(RATE_LIMIT_AUTHENTICATED=UNLIMITED, RATE_LIMIT_ANONYMOUS=UNLIMITED)
    return create_app({**config, **overrides})


def dispose_app(app: Flask) -> None:
    """Close the app's connections (a PostgreSQL database cannot be dropped while in use)."""
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def database_url(template_database: str, tmp_path: Path) -> Iterator[str]:
    """Return the URL of a fresh migrated database for one test, dropped afterwards."""
    with fresh_database(template_database, tmp_path) as url:
        yield url


class MakeApp(Protocol):
    """Build an app on this test's database, with configuration overrides."""

    def __call__(self, **overrides: Any) -> Flask: ...


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[MakeApp]:
    """Return a factory of apps on this test's database; engines are disposed afterwards."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = build_app(database_url, tmp_path, **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        dispose_app(app)


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
