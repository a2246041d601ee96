"""Invariant 2: every API and token request leaves one audit entry; fail closed."""

from __future__ import annotations

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import select, text

from service.api.recording import begin_work
from service.audit.append import append, append_all, current_head_seq
from service.audit.entry import PendingEntry
from service.audit.verification import verify_log
from service.database import db
from service.models import OAuthToken
from service.models.audit import AuditRef
from service.oauth.scopes import AUDIT_READ, HOUSEHOLDS_READ
from service.unit_of_work import unit_of_work
from tests.audit.helpers import audit_entries, last_entry
from tests.conftest import MakeApp
from tests.factories import basic_auth, bearer, create_agency, create_client, get_token


def test_token_issue_is_recorded_with_client(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    get_token(client, creds)
    entry = last_entry(app)
    assert (entry["action"], entry["outcome"], entry["status"]) == ("token:issue", "allowed", 200)
    assert (entry["agency_id"], entry["client_id"]) == (creds.agency_id, creds.client_id)


def test_failed_token_request_is_recorded_as_denied(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    client.post("/oauth/token", data={"grant_type": "client_credentials"},
                headers=basic_auth(creds.client_id, "wrong"))  # fmt: skip
    entry = last_entry(app)
    assert (entry["action"], entry["outcome"], entry["status"]) == ("token:issue", "denied", 401)
    assert entry["client_id"] == creds.client_id


def test_api_read_records_caller_context_and_returned_ids(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    other = create_agency(app)
    token = get_token(client, creds)
    response = client.get("/api/v1/agencies", headers={**bearer(token), "X-Request-Id": "req-77"})
    assert response.status_code == 200
    entry = last_entry(app)
    assert entry["action"] == "agency:list"
    assert (entry["practitioner"], entry["purpose"]) == ("sw-0042", "pre_visit")
    assert entry["request_id"] == "req-77"
    assert entry["source_address"] == "127.0.0.1"
    returned = {item["id"] for item in response.get_json()["items"]}
    assert set(entry["returned"]["agency"]) == returned == {creds.agency_id, other}


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer forged"}, 401)],
)
def test_unauthenticated_requests_are_recorded(
    app: Flask, client: FlaskClient, headers: dict[str, str], status: int
) -> None:
    assert client.get("/api/v1/me", headers=headers).status_code == status
    entry = last_entry(app)
    assert (entry["action"], entry["outcome"], entry["status"]) == ("caller:read", "denied", status)
    assert entry["agency_id"] is None


def test_validation_failure_is_recorded_as_failed(app: Flask, client: FlaskClient) -> None:
    token = get_token(client, create_client(app))
    client.get("/api/v1/audit/events?limit=9999", headers=bearer(token))
    entry = last_entry(app)
    assert (entry["action"], entry["outcome"], entry["status"]) == ("audit:search", "failed", 400)


def test_unknown_api_route_is_recorded(app: Flask, client: FlaskClient) -> None:
    client.get("/api/v1/households/does-not-exist/anything")
    entry = last_entry(app)
    assert (entry["action"], entry["status"]) == ("request:unrouted", 404)


def test_health_checks_are_not_audited(app: Flask, client: FlaskClient) -> None:
    client.get("/healthz")
    client.get("/readyz")
    assert audit_entries(app) == []


def test_one_entry_per_request_and_chain_verifies(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    for path in ("/api/v1/me", "/api/v1/agencies", "/api/v1/openapi.json", "/api/v1/nope"):
        client.get(path, headers=bearer(token))
    assert [e["seq"] for e in audit_entries(app)] == [1, 2, 3, 4, 5]
    with app.app_context():
        assert verify_log().ok


def test_fail_closed_when_the_audit_log_cannot_be_written(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, scopes=(HOUSEHOLDS_READ,))
    token = get_token(client, creds)
    with app.app_context():
        db.session.execute(text("ALTER TABLE audit_entry RENAME TO audit_entry_unwritable"))
        db.session.commit()
    response = client.get("/api/v1/agencies", headers=bearer(token))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert creds.agency_id not in response.get_data(as_text=True)
    # Work done by the refused request is rolled back: no token is issued either.
    assert creds.secret
    refused = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                          headers=basic_auth(creds.client_id, creds.secret))  # fmt: skip
    assert refused.status_code == 503 and "access_token" not in refused.get_data(as_text=True)
    with app.app_context():
        assert len(db.session.scalars(select(OAuthToken)).all()) == 1


def test_no_personal_data_in_audit_table_or_log(
    app: Flask, client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    planted = "Duty desk for Wilhelmina Fotheringay 01632 960999"
    creds = create_client(app, agency_id=create_agency(app, duty_contact=planted))
    token = get_token(client, creds)
    assert planted in client.get("/api/v1/agencies", headers=bearer(token)).get_data(as_text=True)
    client.get("/api/v1/me", headers=bearer(token))
    with app.app_context():
        dump = "\n".join(str(row) for row in db.session.execute(text("SELECT * FROM audit_entry")))
    log = capsys.readouterr().err
    assert '"path": "/api/v1/agencies"' in log  # the application log was captured
    for needle in ("Fotheringay", "960999", token, creds.secret):
        assert needle not in dump
        assert needle not in log


@pytest.mark.parametrize("raw_id", ["h" * 65, "bad%00id", "with space"])
@pytest.mark.parametrize(
    ("scopes", "status"),
    [(None, 401), ((HOUSEHOLDS_READ,), 403), ((AUDIT_READ,), 404)],
    ids=["no-token", "token-without-scope", "token-with-scope"],
)
def test_odd_path_ids_are_recorded_by_digest(
    app: Flask, client: FlaskClient, raw_id: str, scopes: tuple[str, ...] | None, status: int
) -> None:
    # The token and its scope are checked first; an id that cannot be ours is then a 404,
    # before any query. Whoever asks, the entry names the id by its digest.
    headers = {}
    if scopes is not None:
        creds = create_client(app, scopes=scopes)
        headers = bearer(get_token(client, creds))
    response = client.get(f"/api/v1/audit/households/{raw_id}/access-report", headers=headers)
    assert response.status_code == status
    entry = last_entry(app)
    assert (entry["action"], entry["status"]) == ("audit:access-report", status)
    if scopes is not None:
        assert (entry["agency_id"], entry["client_id"]) == (creds.agency_id, creds.client_id)
    (target,) = entry["targets"]["household"]
    assert target.startswith("sha256:") and len(target) == 39


def test_automatic_options_is_not_an_allowed_read(app: Flask, client: FlaskClient) -> None:
    assert client.options("/api/v1/me").status_code == 405
    entry = last_entry(app)
    assert (entry["outcome"], entry["status"]) == ("failed", 405)


def test_refused_request_is_still_recorded_when_only_part_of_the_log_fails(
    app: Flask, client: FlaskClient
) -> None:
    token = get_token(client, create_client(app))
    with app.app_context():
        db.session.execute(text("ALTER TABLE audit_ref RENAME TO audit_ref_unwritable"))
        db.session.commit()
    response = client.get("/api/v1/agencies", headers={**bearer(token), "X-Request-Id": "r-503"})
    assert response.status_code == 503
    entry = last_entry(app)
    assert (entry["request_id"], entry["outcome"], entry["status"]) == ("r-503", "failed", 503)
    assert entry["returned"] == {} and entry["targets"] == {}
    with app.app_context():
        assert verify_log().ok


def test_refusal_with_a_valid_token_is_attributed(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, scopes=(HOUSEHOLDS_READ,))
    token = get_token(client, creds)
    assert client.get("/api/v1/audit/events", headers=bearer(token)).status_code == 403
    entry = last_entry(app)
    assert (entry["outcome"], entry["agency_id"], entry["client_id"]) == (
        "denied",
        creds.agency_id,
        creds.client_id,
    )
    headers = {**bearer(token), "X-Acting-Practitioner": "Jane Smith <js@example.org>"}
    assert client.get("/api/v1/me", headers=headers).status_code == 400
    entry = last_entry(app)
    assert (entry["outcome"], entry["agency_id"], entry["practitioner"]) == (
        "failed",
        creds.agency_id,
        None,
    )


def test_foreign_path_id_is_404_and_recorded(app: Flask, client: FlaskClient) -> None:
    token = get_token(client, create_client(app))
    response = client.get("/api/v1/audit/households/a%00b/access-report", headers=bearer(token))
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert last_entry(app)["targets"]["household"][0].startswith("sha256:")


@pytest.mark.parametrize(
    ("forwarded", "recorded"),
    [("203.0.113.9", "203.0.113.9"), ("x" * 100, None), ("1.2.3.4" + " " * 80, "1.2.3.4")],
)
def test_source_address_behind_a_proxy(
    make_app: MakeApp, forwarded: str, recorded: str | None
) -> None:
    app = make_app(TRUSTED_PROXIES=1)
    http = app.test_client()
    token = get_token(http, create_client(app))
    response = http.get("/api/v1/me", headers={**bearer(token), "X-Forwarded-For": forwarded})
    assert response.status_code == 200
    assert last_entry(app)["source_address"] == recorded
    with app.app_context():
        assert verify_log().ok


def test_entries_appended_together_chain_like_entries_appended_one_by_one(app: Flask) -> None:
    # The delivery worker records several attempts with one append_all: the entries, their
    # references and the head must be exactly what single appends would have left.
    def entry(n: int) -> PendingEntry:
        pending = PendingEntry(action="delivery:attempt", client_id="alertshare-worker")
        pending.target("delivery", f"d-{n}")
        pending.target("webhook", "w-1")
        return pending

    with app.app_context(), unit_of_work():
        before = current_head_seq()
        single = append(entry(0))
        together = append_all([entry(1), entry(2), PendingEntry(action="ops:none"), entry(3)])
        after = append(entry(4))
    assert [single, *together, after] == list(range(before + 1, before + 7))
    with app.app_context():
        assert verify_log().ok
        refs = db.session.execute(
            select(AuditRef.entry_seq, AuditRef.ref_id).where(AuditRef.ref_type == "delivery")
        ).all()
    assert sorted(refs) == [(before + 1 + n + (n > 2), f"d-{n}") for n in range(5)]


def test_a_read_only_route_that_changes_a_record_is_refused(app: Flask) -> None:
    """A route declared read-only runs its reads outside a transaction on PostgreSQL, where a
    change would stand even if the request then failed: an ORM change in one is refused."""
    with app.test_request_context("/api/v1/warnings"):
        begin_work()  # the request's hook: GET /warnings is declared read-only
        assert g.read_only
        db.session.add(OAuthToken(token_hash=b"x" * 32, client_pk=1, scope="", issued_at=0,
                                  expires_in=1))  # fmt: skip
        with pytest.raises(RuntimeError, match="declared read-only but changes records"):
            db.session.flush()
        db.session.rollback()
