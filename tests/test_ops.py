"""Liveness and readiness."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from service import migrate
from service.api import ops
from service.audit.append import current_head_seq
from service.audit.verification import verify_log
from service.database import db
from service.models.audit import AuditEntry, AuditRef
from tests.conftest import ON_POSTGRES, MakeApp


def test_healthz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_when_migrated(client: FlaskClient) -> None:
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readyz_refuses_when_behind_migrations(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        migrate.downgrade("base")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"


def test_readyz_refuses_when_database_is_unreachable(make_app: MakeApp, tmp_path: object) -> None:
    app = make_app(DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "not reachable" in response.get_json()["detail"]


def _audit_log(app: Flask) -> tuple[int, int, int]:
    with app.app_context():
        return (
            current_head_seq(),
            db.session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
            db.session.scalar(select(func.count()).select_from(AuditRef)) or 0,
        )


def test_readyz_writes_nothing_to_the_audit_log(app: Flask, client: FlaskClient) -> None:
    """Its probe appends as a request does and rolls back: the log and its chain are as they
    were, and the next request's entry follows on from the last one."""
    client.get("/api/v1/me")  # one entry (a refused request), so the chain has a head
    before = _audit_log(app)
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    assert _audit_log(app) == before
    client.get("/api/v1/me")
    assert _audit_log(app)[:2] == (before[0] + 1, before[1] + 1)
    with app.app_context():
        assert verify_log().ok


def test_readyz_probes_the_audit_log_once_per_few_seconds(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/readyz is public and never rate limited: a flood of it must not queue on the chain
    head that every audited write takes. Its answer is kept for a few seconds."""
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert [client.get("/readyz").status_code for _ in range(20)] == [200] * 20
        assert sum("INSERT INTO audit_entry" in s for s in statements) == 1
        monkeypatch.setattr(ops, "READINESS_SECONDS", 0.0)  # the answer has aged
        assert client.get("/readyz").status_code == 200
        assert sum("INSERT INTO audit_entry" in s for s in statements) == 2
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_readyz_is_ready_while_a_writer_holds_the_audit_log(
    app: Flask, client: FlaskClient
) -> None:
    """Someone holding the chain head is writing the log: the probe does not queue behind it
    (under load, every pod would go not-ready at once) and says ready."""
    with app.app_context():
        holder = db.engine.connect()
    try:
        holder.begin()  # on SQLite, the write lock
        holder.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
        started = time.monotonic()
        response = client.get("/readyz")
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert response.status_code == 200, response.get_json()
    assert waited < 1.5


def _assert_not_ready_as_audited_routes_fail(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every audited request fails closed (a refused one too), and readiness says so once its
    # last answer has aged.
    monkeypatch.setattr(ops, "READINESS_SECONDS", 0.0)
    assert client.get("/api/v1/me").status_code == 503
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == "The audit log cannot be written."


@pytest.mark.skipif(ON_POSTGRES, reason="an SQLite file")
def test_readyz_refuses_when_the_audit_table_is_gone_sqlite(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/readyz").status_code == 200
    with app.app_context():
        db.session.execute(text("ALTER TABLE audit_entry RENAME TO audit_entry_elsewhere"))
        db.session.commit()
    _assert_not_ready_as_audited_routes_fail(client, monkeypatch)


@pytest.fixture
def app_role(database_url: str) -> Iterator[str]:
    """Return a login role with the rights the app needs on this test's database, then drop it."""
    role = f"readyz_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    owner = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        for statement in (
            f'CREATE ROLE "{role}" LOGIN',
            f'GRANT USAGE ON SCHEMA public TO "{role}"',
            f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"',
            f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
        ):
            connection.execute(text(statement))
    try:
        yield role
    finally:
        with owner.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))  # its grants on this database
            connection.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
def test_readyz_refuses_when_insert_on_the_audit_log_is_revoked(
    database_url: str, app_role: str, make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_role = make_url(database_url).set(username=app_role, password=None)
    app = make_app(DATABASE_URL=as_role.render_as_string(hide_password=False))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    owner = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.execute(text(f'REVOKE INSERT ON audit_entry FROM "{app_role}"'))
    owner.dispose()
    try:
        _assert_not_ready_as_audited_routes_fail(client, monkeypatch)
    finally:
        with app.app_context():
            db.engine.dispose()  # the role is dropped next; none of its sessions may linger
