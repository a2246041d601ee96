"""Fixtures shared by the audit tests."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import bearer, create_client, get_token


@pytest.fixture
def six_entries(app: Flask, client: FlaskClient) -> Flask:
    """An app whose log holds six entries from real requests (a token, then five reads)."""
    token = get_token(client, create_client(app))
    for _ in range(5):
        assert client.get("/api/v1/agencies", headers=bearer(token)).status_code == 200
    return app
