"""Migrations are the only schema source: one head, and they build exactly the models' schema."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from sqlalchemy import text

import service.models  # noqa: F401  (registers every table)
from service import migrate
from service.database import Base, db
from tests.conftest import ON_POSTGRES


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


@pytest.mark.skipif(not ON_POSTGRES, reason="roles and privileges are PostgreSQL's")
def test_audit_privileges_are_revoked_from_the_app_role(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = f"alertshare_app_{os.getpid()}"
    with app.app_context():
        with db.engine.connect() as connection:
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            connection.execute(text(f'CREATE ROLE "{role}"'))
            # A DBA's blanket grant on new tables, as a deployment would set up.
            connection.execute(
                text(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO "{role}"')
            )
            connection.commit()
        try:
            migrate.downgrade("0002")
            monkeypatch.setenv("ALERTSHARE_DATABASE_APP_ROLE", role)
            migrate.upgrade()
            with db.engine.connect() as connection:

                def allowed(table: str, privilege: str) -> bool:
                    query = text("SELECT has_table_privilege(:role, :table, :privilege)")
                    return bool(connection.scalar(query, {"role": role, "table": table,
                                                          "privilege": privilege}))  # fmt: skip

                for table in ("audit_entry", "audit_ref", "audit_archive", "audit_checkpoint"):
                    assert allowed(table, "INSERT") and allowed(table, "SELECT")
                    for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
                        assert not allowed(table, privilege), (table, privilege)
        finally:
            with db.engine.connect() as connection:
                connection.execute(text(f'DROP OWNED BY "{role}"'))
                connection.execute(text(f'DROP ROLE "{role}"'))
                connection.commit()
