"""What a protected resource tells a client it refuses (RFC 6750 section 3)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from service.oauth.scopes import AUDIT_READ, AUDIT_READ_ALL, HOUSEHOLDS_READ
from tests.factories import auditor_headers, create_client, get_token


def test_insufficient_scope_lists_the_scopes_space_separated(
    app: Flask, client: FlaskClient
) -> None:
    token = get_token(client, create_client(app, scopes=(HOUSEHOLDS_READ,)))
    response = client.get("/api/v1/audit/events", headers=auditor_headers(token))
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'scope="{AUDIT_READ} {AUDIT_READ_ALL}"' in challenge
    assert 'error="insufficient_scope"' in challenge
    # In words, either scope admits the caller.
    assert response.get_json()["detail"] == (
        f"This request needs the scope {AUDIT_READ} or {AUDIT_READ_ALL}."
    )
