"""Introspection, revocation, disabled agencies, revoked clients, rotated secrets, metadata."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from service import agencies, clients
from service.database import db
from service.oauth.scopes import ALL_SCOPES, HOUSEHOLDS_READ, TOKENS_INTROSPECT
from tests.factories import (
    basic_auth,
    bearer,
    client_assertion,
    create_client,
    get_token,
    request_token,
)


def test_introspection_by_own_client(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds, scope=HOUSEHOLDS_READ)
    assert creds.secret
    body = client.post(
        "/oauth/introspect",
        data={"token": token},
        headers=basic_auth(creds.client_id, creds.secret),
    ).get_json()
    assert body["active"] is True
    assert body["scope"] == HOUSEHOLDS_READ
    assert body["client_id"] == creds.client_id
    assert body["agency"] == creds.agency_id
    assert body["exp"] - body["iat"] == 900


def test_introspection_with_private_key_jwt(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, private_key_jwt=True)
    token = get_token(client, creds)
    form = {"token": token, **client_assertion(creds, audience="http://localhost/oauth/introspect")}
    assert client.post("/oauth/introspect", data=form).get_json()["active"] is True


def test_another_client_learns_nothing_from_introspection(app: Flask, client: FlaskClient) -> None:
    owner, other = create_client(app), create_client(app)
    token = get_token(client, owner)
    assert other.secret
    body = client.post(
        "/oauth/introspect",
        data={"token": token},
        headers=basic_auth(other.client_id, other.secret),
    ).get_json()
    assert body == {"active": False}


def test_introspection_scoped_client_may_introspect_others(app: Flask, client: FlaskClient) -> None:
    owner = create_client(app)
    gateway = create_client(app, scopes=(TOKENS_INTROSPECT,))
    token = get_token(client, owner, scope=HOUSEHOLDS_READ)
    assert gateway.secret
    body = client.post(
        "/oauth/introspect", data={"token": token},
        headers=basic_auth(gateway.client_id, gateway.secret),
    ).get_json()  # fmt: skip
    assert body["active"] is True and body["client_id"] == owner.client_id


def test_introspection_needs_client_authentication(app: Flask, client: FlaskClient) -> None:
    token = get_token(client, create_client(app))
    assert client.post("/oauth/introspect", data={"token": token}).status_code == 401


def test_revoked_token_stops_working(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert creds.secret
    auth = basic_auth(creds.client_id, creds.secret)
    assert client.post("/oauth/revoke", data={"token": token}, headers=auth).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    body = client.post("/oauth/introspect", data={"token": token}, headers=auth).get_json()
    assert body == {"active": False}


def test_another_client_cannot_revoke_a_token(app: Flask, client: FlaskClient) -> None:
    owner, other = create_client(app), create_client(app)
    token = get_token(client, owner)
    assert other.secret
    response = client.post(
        "/oauth/revoke", data={"token": token}, headers=basic_auth(other.client_id, other.secret)
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_disabled_agency_loses_access_at_once(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    with app.app_context():
        agencies.disable_agency(creds.agency_id)
        db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert request_token(client, creds).status_code == 401


def test_revoked_client_loses_access_at_once(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    with app.app_context():
        clients.revoke_client(creds.client_id)
        db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert request_token(client, creds).status_code == 401


def test_rotated_secret_replaces_the_old(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    with app.app_context():
        issued = clients.rotate_client_secret(creds.client_id)
        db.session.commit()
    assert request_token(client, creds).status_code == 401
    assert issued.secret
    creds.secret = issued.secret
    assert request_token(client, creds).status_code == 200


def test_server_metadata(client: FlaskClient) -> None:
    body = client.get("/.well-known/oauth-authorization-server").get_json()
    assert body["issuer"] == "http://localhost"
    assert body["token_endpoint"] == "http://localhost/oauth/token"
    assert body["grant_types_supported"] == ["client_credentials"]
    assert set(body["scopes_supported"]) == set(ALL_SCOPES)
    assert body["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "private_key_jwt",
    ]


def test_rotated_secret_leaves_tokens_to_expire_by_default(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    with app.app_context():
        clients.rotate_client_secret(creds.client_id)
        db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_rotated_secret_can_revoke_the_tokens_issued_under_the_old(
    app: Flask, client: FlaskClient
) -> None:
    creds, bystander = create_client(app), create_client(app)
    old_tokens = [get_token(client, creds), get_token(client, creds)]
    other_token = get_token(client, bystander)
    with app.app_context():
        rotation = clients.rotate_client_secret(creds.client_id, revoke_tokens=True)
        db.session.commit()
    assert rotation.revoked_tokens == 2
    for token in old_tokens:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(other_token)).status_code == 200
    assert rotation.secret
    creds.secret = rotation.secret
    assert client.get("/api/v1/me", headers=bearer(get_token(client, creds))).status_code == 200
