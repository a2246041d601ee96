"""Liveness and readiness."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from service import migrate
from tests.conftest import MakeApp


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
