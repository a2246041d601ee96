"""Engine settings: a PostgreSQL server that does not answer fails a request fast, and a row
lock held too long is refused rather than waited on. Records written by statement rather than
the session's flush (``insert_new``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from service import database, warnings
from service.database import POSTGRESQL_LOCK_TIMEOUT, db, engine_options, insert_new
from service.households import register_household
from service.incidents import IncidentReport
from service.models.audit import AuditEntry
from service.models.incident import Incident
from service.models.warning import WarningMarker, WarningShare, WarningVersion, warning_incident
from service.unit_of_work import unit_of_work
from tests.conftest import ON_POSTGRES
from tests.factories import bearer, create_agency, create_client, get_token, request_token
from tests.statements import executed_statements


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


def _drop_connections_to(database_url: str) -> int:
    """End every session on the app's database from the server side, as a server restart
    does to the connections a pool holds; return how many were ended."""
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            )
    finally:
        admin.dispose()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
@pytest.mark.parametrize("idle", [True, False], ids=["left-idle", "used-a-moment-ago"])
def test_a_pooled_connection_the_server_dropped_is_pinged_only_once_it_has_been_idle(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, idle: bool
) -> None:
    """A public route (the token endpoint) after the server dropped the pool's connections (as
    a restart does): served when the connection sat idle (PING_WHEN_IDLE_SECONDS: pinged and
    replaced); a connection used a moment before is not pinged, its request is a 503 saying
    when to retry, and the pool has replaced its connections by then."""
    credentials = create_client(app)
    assert request_token(client, credentials).status_code == 200
    assert _drop_connections_to(app.config["SQLALCHEMY_DATABASE_URI"]) >= 1
    monkeypatch.setattr(database, "PING_WHEN_IDLE_SECONDS", 0.0 if idle else 3600.0)
    answer = request_token(client, credentials)
    if idle:
        assert answer.status_code == 200, answer.get_json()
    else:
        assert answer.status_code == 503
        assert answer.get_json()["type"] == "urn:alertshare:problem:database-unavailable"
        assert answer.headers["Retry-After"] == "5"
    again = request_token(client, credentials)
    assert again.status_code == 200, again.get_json()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/involvements"])
def test_an_api_request_whose_connection_the_server_dropped_is_served_on_a_fresh_one(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The bearer token check, a request's first statement, finds its connection dropped (used
    a moment before, so not pinged): it runs once more on a new connection, and the request
    is served and recorded once; a read-only route's reads (GET /involvements) stay outside
    a transaction on the new connection too."""
    token = get_token(client, create_client(app))
    assert client.get(path, headers=bearer(token)).status_code == 200
    monkeypatch.setattr(database, "PING_WHEN_IDLE_SECONDS", 3600.0)
    assert _drop_connections_to(app.config["SQLALCHEMY_DATABASE_URI"]) >= 1
    with executed_statements(app) as executed:
        answer = client.get(path, headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    request_id = answer.headers["X-Request-Id"]
    with app.app_context():
        recorded = db.session.scalars(
            select(AuditEntry.status).where(AuditEntry.request_id == request_id)
        ).all()
    assert recorded == [200]
    token_checks = [e for e in executed if "FROM oauth_token" in e.sql]
    assert len(token_checks) == 2  # the one that found the connection dropped, and the retry
    after_retry = executed[executed.index(token_checks[1]) :]
    read_only = path == "/api/v1/involvements"
    assert {e.autocommit for e in after_retry if e.sql.lstrip().startswith("SELECT")} == {read_only}


def test_records_written_by_statement_join_the_session_as_if_flushed(app: Flask) -> None:
    agency = create_agency(app)
    with app.app_context(), unit_of_work():
        household = register_household(agency, uprn="100062123456")  # new: not yet written
        incident = Incident(
            household_id=household.id, agency_id=agency, occurred_on=date(2026, 11, 1),
            categories="verbal_abuse", police_reported=False, summary="Shouted at",
        )  # fmt: skip
        with executed_statements(app) as seen:
            insert_new(incident)  # the household first (its foreign key), then the incident
        inserted = [s.sql.split("(")[0].split()[-1] for s in seen if s.sql.startswith("INSERT")]
        assert inserted == ["household", "incident"]
        # It holds what was written, its default and NULL where it has none, with no read back.
        assert {"recorded_at", "description_sealed"} <= vars(incident).keys()
        with executed_statements(app) as read_back:
            recorded_at = incident.recorded_at
            assert recorded_at is not None and incident.description_sealed is None
        assert read_back == []
        assert incident in db.session and not db.session.new and not db.session.dirty
        incident.summary = "Shouted at, twice"  # changed later: the unit of work's flush writes it
        incident_id = incident.id
    with app.app_context():
        stored = db.session.get(Incident, incident_id)
        assert stored is not None
        assert (stored.summary, stored.recorded_at) == ("Shouted at, twice", recorded_at)


def test_a_published_warning_changed_in_the_same_unit_of_work_keeps_its_rows_right(
    app: Flask,
) -> None:
    # Several incidents, shares and links (on PostgreSQL, one statement of eight rows), then
    # changes to the very records written that way: the flush must update, not insert again.
    issuer, *others = (create_agency(app) for _ in range(4))
    with app.app_context(), unit_of_work():
        household = register_household(issuer, uprn="100062123456")
        report = IncidentReport(
            occurred_on=date(2026, 11, 1), categories=(), summary="Shouted at", description=None,
            police_reported=False, crime_reference=None,
        )  # fmt: skip
        draft = warnings.WarningDraft(
            categories=("verbal_abuse",), risk_level="medium", children_in_household=False,
            subject_informed=warnings.SubjectInformed(True, informed_on=date(2026, 11, 2)),
            handling="restricted", shared_with=tuple(others[:2]),
        )  # fmt: skip
        warning = warnings.publish_warning(
            household, issuer, draft, warnings.Evidence((report, report)), date(2026, 11, 20)
        )
        warnings.update_warning(warning, issuer, {"shared_with": (others[1], others[2])},
                                date(2026, 11, 20))  # fmt: skip
        warnings.close_warning(warning, issuer, "Moved away")
        warning_id = warning.id
    with app.app_context():
        shares = select(WarningShare.agency_id).where(WarningShare.warning_id == warning_id)
        assert sorted(db.session.scalars(shares)) == sorted(others[1:])
        links = select(func.count()).where(warning_incident.c.warning_id == warning_id)
        assert db.session.scalar(links) == 2
        versions = select(WarningVersion.change).where(WarningVersion.warning_id == warning_id)
        assert sorted(db.session.scalars(versions)) == ["closed", "published", "updated"]
        stored = db.session.get(WarningMarker, warning_id)
        assert stored is not None and (stored.status, stored.version) == ("inactive", 3)
