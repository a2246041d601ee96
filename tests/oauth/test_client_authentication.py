"""Client authentication at the OAuth endpoints: single-use assertions, one method per request,
and errors that say what is wrong in words."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.database import db
from service.models.oauth import UsedAssertion
from service.oauth.client_auth import own_transaction, spend_assertion
from service.oauth.scopes import AUDIT_READ, HOUSEHOLDS_READ
from tests.conftest import ON_POSTGRES
from tests.factories import (
    ClientCredentials,
    basic_auth,
    client_assertion,
    create_client,
    get_token,
)

GRANT = {"grant_type": "client_credentials"}
ENDPOINT_AUDIENCES = {
    "/oauth/token": "http://localhost/oauth/token",
    "/oauth/introspect": "http://localhost/oauth/introspect",
    "/oauth/revoke": "http://localhost/oauth/revoke",
}


def _spent_assertions(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(UsedAssertion)) or 0)


# Assertions are single use, whatever the outcome of the request that used them.


def test_assertion_used_in_a_failed_request_cannot_be_used_again(
    app: Flask, client: FlaskClient
) -> None:
    creds = create_client(app, private_key_jwt=True, scopes=(HOUSEHOLDS_READ,))
    assertion = client_assertion(creds)
    refused = client.post("/oauth/token", data={**GRANT, **assertion, "scope": AUDIT_READ})
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_scope"
    # The failed request rolled its work back, but not the spend of its assertion.
    assert _spent_assertions(app) == 1
    replay = client.post("/oauth/token", data={**GRANT, **assertion, "scope": HOUSEHOLDS_READ})
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_client"
    assert "used before" in replay.get_json()["error_description"]
    assert _spent_assertions(app) == 1


def test_assertion_used_at_introspection_with_a_bad_token_is_spent(
    app: Flask, client: FlaskClient
) -> None:
    creds = create_client(app, private_key_jwt=True)
    assertion = client_assertion(creds, audience=ENDPOINT_AUDIENCES["/oauth/introspect"])
    first = client.post("/oauth/introspect", data={"token": "no-such-token", **assertion})
    assert first.get_json() == {"active": False}
    again = client.post("/oauth/introspect", data={"token": "no-such-token", **assertion})
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_client"


def test_concurrent_uses_of_one_assertion_issue_one_token(app: Flask) -> None:
    creds = create_client(app, private_key_jwt=True)
    form = {**GRANT, **client_assertion(creds)}
    statuses: list[int] = []
    start = threading.Barrier(4)

    def use() -> None:
        http = app.test_client()
        start.wait()
        statuses.append(http.post("/oauth/token", data=form).status_code)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200, 400, 400, 400]


def test_a_fresh_assertion_still_works_after_a_spent_one(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    assert get_token(client, creds)
    assert get_token(client, creds)
    assert _spent_assertions(app) == 2


# One client authentication method per request (RFC 6749 section 2.3).


def _secret_and_jwt_clients(app: Flask) -> tuple[ClientCredentials, ClientCredentials]:
    return create_client(app), create_client(app, private_key_jwt=True)


@pytest.mark.parametrize("path", sorted(ENDPOINT_AUDIENCES))
@pytest.mark.parametrize(
    ("basic_valid", "assertion_valid"), [(True, False), (False, True), (True, True)]
)
def test_basic_credentials_with_a_client_assertion_are_refused(
    app: Flask, client: FlaskClient, path: str, basic_valid: bool, assertion_valid: bool
) -> None:
    secret_client, jwt_client = _secret_and_jwt_clients(app)
    assert secret_client.secret
    token = get_token(client, secret_client)
    headers = basic_auth(secret_client.client_id, secret_client.secret if basic_valid else "no")
    assertion = client_assertion(jwt_client, audience=ENDPOINT_AUDIENCES[path])
    if not assertion_valid:
        assertion = client_assertion(jwt_client, audience="https://elsewhere.example/token")
    form = {**GRANT, "token": token, **assertion}
    response = client.post(path, data=form, headers=headers)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert "one" in body["error_description"].lower()
    # Neither credential was accepted: the token is still live and unrevoked.
    assert client.post(
        "/oauth/introspect", data={"token": token},
        headers=basic_auth(secret_client.client_id, secret_client.secret),
    ).get_json()["active"] is True  # fmt: skip


@pytest.mark.parametrize("basic_valid", [True, False])
def test_basic_credentials_with_a_secret_in_the_body_are_refused(
    app: Flask, client: FlaskClient, basic_valid: bool
) -> None:
    creds = create_client(app)
    assert creds.secret
    headers = basic_auth(creds.client_id, creds.secret if basic_valid else "wrong")
    form = {**GRANT, "client_id": creds.client_id, "client_secret": creds.secret}
    response = client.post("/oauth/token", data=form, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_client_id_beside_an_assertion_is_not_a_second_method(
    app: Flask, client: FlaskClient
) -> None:
    # RFC 7523 allows client_id next to the assertion: it identifies, it does not authenticate.
    creds = create_client(app, private_key_jwt=True)
    form = {**GRANT, "client_id": creds.client_id, **client_assertion(creds)}
    assert client.post("/oauth/token", data=form).status_code == 200


# Errors say what is wrong in words.


def _refusals(app: Flask, client: FlaskClient) -> list[dict[str, str]]:
    secret_client, jwt_client = _secret_and_jwt_clients(app)
    narrow = create_client(app, scopes=(HOUSEHOLDS_READ,))
    assert secret_client.secret and narrow.secret
    attempts = [
        ({}, {}),  # no credentials
        ({}, basic_auth(secret_client.client_id, "wrong")),
        ({}, basic_auth(jwt_client.client_id, "a-secret")),
        ({"client_id": secret_client.client_id, "client_secret": secret_client.secret}, {}),
        ({"scope": f"{HOUSEHOLDS_READ} {AUDIT_READ}"},
         basic_auth(narrow.client_id, narrow.secret)),
        ({"scope": "households:delete"}, basic_auth(narrow.client_id, narrow.secret)),
    ]  # fmt: skip
    bodies = []
    for form, headers in attempts:
        response = client.post("/oauth/token", data={**GRANT, **form}, headers=headers)
        assert response.status_code in (400, 401), response.get_json()
        bodies.append(response.get_json())
    return bodies


def test_token_errors_describe_the_problem_in_words(app: Flask, client: FlaskClient) -> None:
    for body in _refusals(app, client):
        description = body.get("error_description", "")
        assert description, body
        assert "[" not in description and "'" not in description, body


def test_failed_secret_authentication_names_the_method_in_words(
    app: Flask, client: FlaskClient
) -> None:
    creds = create_client(app)
    response = client.post("/oauth/token", data=GRANT, headers=basic_auth(creds.client_id, "x"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "client_secret_basic" in response.get_json()["error_description"]


@pytest.mark.parametrize("path", sorted(ENDPOINT_AUDIENCES))
def test_json_body_is_told_to_send_a_form(app: Flask, client: FlaskClient, path: str) -> None:
    creds = create_client(app)
    assert creds.secret
    response = client.post(
        path, json={**GRANT, "token": "x"}, headers=basic_auth(creds.client_id, creds.secret)
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert "application/x-www-form-urlencoded" in body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's single writer is what the guard is about")
def test_spending_inside_the_requests_transaction_is_refused_not_deadlocked(app: Flask) -> None:
    # On SQLite the request's open transaction holds the one write lock: a spend on another
    # connection would wait out the busy timeout, so it is refused at once instead.
    with app.test_request_context(), app.app_context():
        db.session.execute(select(1))
        with pytest.raises(RuntimeError), own_transaction():
            pass
        db.session.rollback()
        with own_transaction() as connection:
            assert spend_assertion(connection, "c.0123456789abcdef", "jti-1", 2**31 - 1)
        with own_transaction() as connection:
            assert not spend_assertion(connection, "c.0123456789abcdef", "jti-1", 2**31 - 1)
