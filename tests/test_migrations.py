"""Migrations are the only schema source: one head, and they build exactly the models' schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask

import service.models  # noqa: F401  (registers every table)
from service import migrate
from service.database import Base, db


def test_single_migration_head() -> None:
    assert len(migrate.heads()) == 1


def test_migrations_produce_the_models_schema(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_and_up_again(app: Flask) -> None:
    with app.app_context():
        migrate.downgrade("base")
        assert migrate.current_revisions() == ()
        migrate.upgrade()
        assert migrate.schema_is_current()
