"""Deny by default: every route declares a policy; tokens, scopes and acting context enforced."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.api.access import policy_of
from service.oauth.scopes import AUDIT_READ, HOUSEHOLDS_READ
from tests.conftest import MakeApp
from tests.factories import bearer, create_client, get_token

# The only routes anyone may call without a token.
PUBLIC_ENDPOINTS = {
    "ops.healthz",
    "ops.readyz",
    "oauth.issue_token",
    "oauth.introspect_token",
    "oauth.revoke_token",
    "oauth.server_metadata",
    "api_v1.openapi.openapi_document",
}


def test_every_route_declares_an_access_policy(app: Flask) -> None:
    undeclared = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if policy_of(app.view_functions[rule.endpoint]) is None
    ]
    assert undeclared == []


def test_public_routes_are_exactly_the_listed_ones(app: Flask) -> None:
    public = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if policy_of(app.view_functions[rule.endpoint]).public  # type: ignore[union-attr]
    }
    assert public == PUBLIC_ENDPOINTS


def test_every_api_data_route_demands_acting_context(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        policy = policy_of(app.view_functions[rule.endpoint])
        if rule.rule.startswith("/api/v1") and not policy.public:  # type: ignore[union-attr]
            assert policy.acting_context, rule.rule  # type: ignore[union-attr]
            assert policy.scopes, rule.rule  # type: ignore[union-attr]


def test_route_without_policy_is_refused_at_runtime(make_app: MakeApp) -> None:
    app = make_app()
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: {"secret": "data"})
    response = app.test_client().get("/api/v1/forgotten")
    assert response.status_code == 403
    assert "secret" not in response.get_data(as_text=True)


def test_missing_token_is_401_with_challenge(client: FlaskClient) -> None:
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.mimetype == "application/problem+json"


def test_garbage_token_is_401(client: FlaskClient) -> None:
    response = client.get("/api/v1/me", headers=bearer("not-a-token"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_insufficient_scope_is_403_naming_the_scope(make_app: MakeApp) -> None:
    from service.api.access import protected

    app = make_app()

    @protected(AUDIT_READ, action="test:audit-only")
    def audit_only() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_url_rule("/api/v1/audit-only", "audit_only", audit_only)
    http = app.test_client()
    token = get_token(http, create_client(app, scopes=(HOUSEHOLDS_READ,)))
    response = http.get("/api/v1/audit-only", headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["detail"] == f"This request needs the scope {AUDIT_READ}."
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_missing_practitioner_and_purpose_are_named(app: Flask, client: FlaskClient) -> None:
    token = get_token(client, create_client(app))
    response = client.get("/api/v1/me", headers=bearer(token, acting=False))
    assert response.status_code == 400
    body = response.get_json()
    assert set(body["errors"]) == {"X-Acting-Practitioner", "X-Purpose-Of-Use"}


def test_unknown_purpose_is_refused(app: Flask, client: FlaskClient) -> None:
    token = get_token(client, create_client(app))
    headers = {**bearer(token), "X-Purpose-Of-Use": "curiosity"}
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"X-Purpose-Of-Use"}


def test_malformed_practitioner_is_refused(app: Flask, client: FlaskClient) -> None:
    token = get_token(client, create_client(app))
    headers = {**bearer(token), "X-Acting-Practitioner": "Jane Smith <jane@example.org>"}
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"X-Acting-Practitioner"}


def test_caller_context_reaches_the_handler(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app, scopes=(HOUSEHOLDS_READ,))
    token = get_token(client, creds)
    body = client.get("/api/v1/me", headers=bearer(token)).get_json()
    assert body["agency"]["id"] == creds.agency_id
    assert body["client_id"] == creds.client_id
    assert body["scopes"] == [HOUSEHOLDS_READ]
    assert (body["practitioner"], body["purpose"]) == ("sw-0042", "pre_visit")


def test_directory_lists_active_agencies(app: Flask, client: FlaskClient) -> None:
    token = get_token(client, create_client(app))
    body = client.get("/api/v1/agencies", headers=bearer(token)).get_json()
    assert len(body["items"]) == 1
    assert set(body["items"][0]) == {"id", "name", "agency_type", "duty_contact"}


def test_no_cookie_session_is_read_or_written(make_app: MakeApp) -> None:
    """Bearer tokens only: a cookie session, even one signed with the app's key, is not read
    (it can neither authenticate nor carry state), and writing to flask.session fails."""
    from flask import session
    from flask.sessions import SecureCookieSessionInterface

    app = make_app()
    signed = SecureCookieSessionInterface().get_signing_serializer(app)
    assert signed is not None
    cookie = f"session={signed.dumps({'agency': 'kent-cs'})}"
    with app.test_request_context("/api/v1/me", headers={"Cookie": cookie}):
        assert dict(session) == {}
        with pytest.raises(RuntimeError, match="no cookie sessions"):
            session["agency"] = "kent-cs"
