"""The token endpoint: both client authentication methods, scopes, and what is refused."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select

from service.database import db
from service.models.oauth import OAuthClient, OAuthToken, hash_secret
from service.oauth.scopes import AUDIT_READ, HOUSEHOLDS_READ, WARNINGS_WRITE
from tests.conftest import MakeApp
from tests.factories import (
    basic_auth,
    client_assertion,
    create_client,
    get_token,
    request_token,
)

GRANT = {"grant_type": "client_credentials"}


def test_secret_client_gets_short_lived_token_with_all_its_scopes(
    app: Flask, client: FlaskClient
) -> None:
    creds = create_client(app, scopes=(HOUSEHOLDS_READ, WARNINGS_WRITE))
    response = request_token(client, creds)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert set(body["scope"].split()) == {HOUSEHOLDS_READ, WARNINGS_WRITE}
    assert response.headers["Cache-Control"] == "no-store"


def test_token_lifetime_is_configurable(make_app: MakeApp) -> None:
    app = make_app(TOKEN_EXPIRES_IN=120)
    creds = create_client(app)
    body = request_token(app.test_client(), creds).get_json()
    assert body["expires_in"] == 120


def test_tokens_are_stored_hashed(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    with app.app_context():
        stored = db.session.scalars(select(OAuthToken)).one()
    assert token not in stored.token_hash
    assert len(stored.token_hash) == 64


def test_wrong_secret_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    response = client.post("/oauth/token", data=GRANT, headers=basic_auth(creds.client_id, "nope"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_unknown_client_is_refused(client: FlaskClient) -> None:
    response = client.post("/oauth/token", data=GRANT, headers=basic_auth("ghost", "secret"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "credentials",
    [b"\xff\xfe:\xff", b"agency-1.0123456789abcdef\x00:secret", b"x" * 5000 + b":y", b"no-colon"],
)
def test_malformed_basic_credentials_are_an_oauth_error(
    client: FlaskClient, credentials: bytes
) -> None:
    raw = base64.b64encode(credentials).decode()
    response = client.post("/oauth/token", data=GRANT, headers={"Authorization": f"Basic {raw}"})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("invalid_client", "invalid_request")


def test_secret_in_form_body_is_not_accepted(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    form = {**GRANT, "client_id": creds.client_id, "client_secret": creds.secret}
    assert client.post("/oauth/token", data=form).status_code in (400, 401)


def test_scope_narrowing(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, scopes=(HOUSEHOLDS_READ, WARNINGS_WRITE))
    body = request_token(client, creds, scope=HOUSEHOLDS_READ).get_json()
    assert body["scope"] == HOUSEHOLDS_READ


def test_scope_not_allowed_is_refused_not_dropped(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, scopes=(HOUSEHOLDS_READ,))
    response = request_token(client, creds, scope=f"{HOUSEHOLDS_READ} {AUDIT_READ}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"
    assert AUDIT_READ in response.get_json()["error_description"]


def test_unknown_scope_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    response = request_token(client, creds, scope="households:delete")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"


def test_other_grant_types_are_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    assert creds.secret
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "x", "password": "y"},
        headers=basic_auth(creds.client_id, creds.secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_private_key_jwt_client_gets_token(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    response = request_token(client, creds, scope=HOUSEHOLDS_READ)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == HOUSEHOLDS_READ


def test_assertion_signed_by_another_key_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    stranger = ECKey.generate_key("P-256", parameters={"kid": creds.private_key.kid})  # type: ignore[union-attr]
    response = client.post("/oauth/token", data={**GRANT, **client_assertion(creds, key=stranger)})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"


def test_expired_assertion_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    response = client.post(
        "/oauth/token", data={**GRANT, **client_assertion(creds, expires_in=-300)}
    )
    assert response.get_json()["error"] == "invalid_client"


def test_assertion_for_another_audience_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    form = {**GRANT, **client_assertion(creds, audience="https://elsewhere.example/token")}
    assert client.post("/oauth/token", data=form).get_json()["error"] == "invalid_client"


def test_replayed_assertion_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    form = {**GRANT, **client_assertion(creds, jti=uuid.uuid4().hex)}
    assert client.post("/oauth/token", data=form).status_code == 200
    replay = client.post("/oauth/token", data=form)
    assert replay.get_json()["error"] == "invalid_client"


def test_each_client_may_use_only_its_registered_method(app: Flask, client: FlaskClient) -> None:
    # Give a private_key_jwt client a valid secret too: the secret must still be refused,
    # because the method the client registered with is the only one accepted.
    jwt_client = create_client(app, private_key_jwt=True)
    with app.app_context():
        stored = db.session.scalars(
            select(OAuthClient).where(OAuthClient.client_id == jwt_client.client_id)
        ).one()
        stored.secret_hash = hash_secret("a-valid-secret")
        db.session.commit()
    response = client.post(
        "/oauth/token", data=GRANT, headers=basic_auth(jwt_client.client_id, "a-valid-secret")
    )
    assert response.status_code == 401
    assert (
        client.post("/oauth/token", data={**GRANT, **client_assertion(jwt_client)}).status_code
        == 200
    )


def test_jwt_client_cannot_use_a_secret_and_vice_versa(app: Flask, client: FlaskClient) -> None:
    jwt_client = create_client(app, private_key_jwt=True)
    response = client.post(
        "/oauth/token", data=GRANT, headers=basic_auth(jwt_client.client_id, "x")
    )
    assert response.status_code == 401
    secret_client = create_client(app)
    secret_client.private_key = jwt_client.private_key
    form = {**GRANT, **client_assertion(secret_client)}
    assert client.post("/oauth/token", data=form).get_json()["error"] == "invalid_client"


def test_token_expiry_is_enforced(make_app: MakeApp) -> None:
    # Two seconds: issue times are whole seconds, so a token lives between 1 and 2 of them.
    app = make_app(TOKEN_EXPIRES_IN=2)
    http = app.test_client()
    creds = create_client(app)
    token = get_token(http, creds)
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Acting-Practitioner": "p1",
        "X-Purpose-Of-Use": "case_work",
    }
    assert http.get("/api/v1/me", headers=headers).status_code == 200
    time.sleep(3.1)
    response = http.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_long_lived_assertion_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    form = {**GRANT, **client_assertion(creds, expires_in=3600)}
    assert client.post("/oauth/token", data=form).get_json()["error"] == "invalid_client"


def test_configured_issuer_fixes_the_assertion_audience(make_app: MakeApp) -> None:
    app = make_app(ISSUER="https://alertshare.example.org")
    http = app.test_client()
    creds = create_client(app, private_key_jwt=True)
    # An assertion for another server is refused even when the Host header claims to be it.
    foreign = client_assertion(creds, audience="https://other.example/oauth/token")
    response = http.post(
        "/oauth/token", data={**GRANT, **foreign}, base_url="https://other.example"
    )
    assert response.get_json()["error"] == "invalid_client"
    ours = client_assertion(creds, audience="https://alertshare.example.org/oauth/token")
    assert http.post("/oauth/token", data={**GRANT, **ours}).status_code == 200


@pytest.mark.parametrize("exp", [10**10, 10**19, 1e300, "soon", True])
def test_absurd_assertion_expiry_is_refused_cleanly(
    app: Flask, client: FlaskClient, exp: object
) -> None:
    creds = create_client(app, private_key_jwt=True)
    assert creds.private_key is not None
    now = int(time.time())
    claims = {"iss": creds.client_id, "sub": creds.client_id, "aud": "http://localhost/oauth/token",
              "iat": now, "exp": exp, "jti": uuid.uuid4().hex}  # fmt: skip
    assertion = jwt.encode({"alg": "ES256"}, claims, creds.private_key)
    form = {
        **GRANT,
        "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    response = client.post("/oauth/token", data=form)
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"
