"""Fixtures: a fresh, migrated database per test (SQLite file, or PostgreSQL when configured)."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
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
_counter = itertools.count()


def _admin_engine() -> Any:
    return create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return a migrated database to copy for each test."""
    if ON_POSTGRES:
        engine = create_engine(PG_URL)
        upgrade(engine=engine)
        engine.dispose()
        return PG_URL
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine=engine)
    engine.dispose()
    return str(path)


@pytest.fixture
def database_url(template_database: str, tmp_path: Path) -> Iterator[str]:
    """Return the URL of a fresh migrated database for one test, dropped afterwards."""
    if not ON_POSTGRES:
        path = tmp_path / "alertshare.db"
        shutil.copy(template_database, path)
        yield f"sqlite:///{path}"
        return
    url = make_url(PG_URL)
    name = f"{url.database}_t{os.getpid()}_{next(_counter)}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class MakeApp(Protocol):
    """Build an app on this test's database, with configuration overrides."""

    def __call__(self, **overrides: Any) -> Flask: ...


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[MakeApp]:
    """Return a factory of apps on this test's database; engines are disposed afterwards."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        config = {"DATA_DIR": str(tmp_path), "DATABASE_URL": database_url, "TESTING": True}
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
