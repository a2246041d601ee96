"""Secret rotation against token requests in flight, and secret generations over rotations."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import clients, migrate
from service.oauth import server
from service.unit_of_work import unit_of_work
from tests.conftest import ON_POSTGRES, MakeApp
from tests.factories import (
    ClientCredentials,
    basic_auth,
    bearer,
    create_client,
    get_token,
    request_token,
)

WAIT = 30  # seconds; only a broken test waits this long


def _rotate(app: Flask, creds: ClientCredentials, revoke: bool) -> clients.IssuedClient:
    """Rotate as ``alertshare client rotate-secret`` does: one app context, one unit of work."""
    with app.app_context(), unit_of_work():
        return clients.rotate_client_secret(creds.client_id, revoke_tokens=revoke)


def _introspected(http: FlaskClient, creds: ClientCredentials, token: str) -> bool:
    assert creds.secret
    auth = basic_auth(creds.client_id, creds.secret)
    response = http.post("/oauth/introspect", data={"token": token}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return bool(response.get_json()["active"])


@pytest.mark.parametrize("revoke", [True, False])
def test_a_token_issued_as_the_rotation_commits_follows_the_rotation(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, revoke: bool
) -> None:
    """A token request authenticated with the old secret is held after authenticating while
    the rotation commits, then saves its token: --revoke-tokens must still end that token.

    On PostgreSQL (read committed) the rotation commits while the request waits, and its
    UPDATE of live tokens cannot see the token. SQLite runs one transaction at a time (BEGIN
    IMMEDIATE): there the rotation waits for the token's commit and revokes it as a live token.
    """
    authenticated, release = threading.Event(), threading.Event()
    save_token = server.save_token

    def save_token_once_released(token: dict[str, Any], oauth_request: Any) -> None:
        # Instrumentation, not a stand-in: the first token request has authenticated and
        # waits here, its transaction open, until the test lets it save its token.
        if not authenticated.is_set():
            authenticated.set()
            release.wait(WAIT)
        save_token(token, oauth_request)

    monkeypatch.setattr(server, "save_token", save_token_once_released)  # init_app reads it
    app = make_app()
    http = app.test_client()
    creds = create_client(app)

    issued: list[Any] = []
    token_request = threading.Thread(
        target=lambda: issued.append(request_token(app.test_client(), creds))
    )
    rotations: list[clients.IssuedClient] = []
    rotation = threading.Thread(target=lambda: rotations.append(_rotate(app, creds, revoke)))
    token_request.start()
    try:
        assert authenticated.wait(WAIT), "the token request did not reach save_token"
        rotation.start()
        if ON_POSTGRES:
            rotation.join(WAIT)
            assert rotations, "the rotation did not commit while the token request waited"
    finally:
        release.set()
        token_request.join(WAIT)
        if rotation.ident is not None:  # started
            rotation.join(WAIT)

    assert len(issued) == 1, "the token request did not finish"
    assert issued[0].status_code == 200, issued[0].get_json()
    token = issued[0].get_json()["access_token"]
    assert len(rotations) == 1 and rotations[0].secret
    if revoke:
        # On PostgreSQL the rotation's UPDATE ran before the token was saved: the race was staged.
        assert rotations[0].revoked_tokens == (0 if ON_POSTGRES else 1)
    creds.secret = rotations[0].secret
    assert http.get("/api/v1/me", headers=bearer(token)).status_code == (401 if revoke else 200)
    assert _introspected(http, creds, token) is not revoke
    fresh = get_token(http, creds)
    assert http.get("/api/v1/me", headers=bearer(fresh)).status_code == 200
    assert _introspected(http, creds, fresh) is True


def test_a_routine_rotation_spares_what_an_earlier_revoking_one_spared(
    app: Flask, client: FlaskClient
) -> None:
    creds = create_client(app)
    first = get_token(client, creds)
    creds.secret = _rotate(app, creds, revoke=True).secret
    second = get_token(client, creds)
    creds.secret = _rotate(app, creds, revoke=False).secret
    third = get_token(client, creds)
    assert client.get("/api/v1/me", headers=bearer(first)).status_code == 401
    _assert_live(client, creds, (second, third), live=True)
    # A revoking rotation ends the tokens of every secret before it, not just the last one.
    creds.secret = _rotate(app, creds, revoke=True).secret
    _assert_live(client, creds, (second, third), live=False)


def _assert_live(
    client: FlaskClient, creds: ClientCredentials, tokens: tuple[str, ...], live: bool
) -> None:
    """Each token is accepted by the API and active by introspection, or neither."""
    for token in tokens:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == (200 if live else 401)
        assert _introspected(client, creds, token) is live


def test_the_generations_migration_keeps_existing_clients_and_tokens(
    app: Flask, client: FlaskClient
) -> None:
    creds = create_client(app)
    token = get_token(client, creds)
    with app.app_context():
        migrate.downgrade("0005")  # clients and tokens from before secret generations
        migrate.upgrade()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    creds.secret = _rotate(app, creds, revoke=True).secret
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(get_token(client, creds))).status_code == 200
