"""Every error leaves as RFC 9457 problem+json: validation, routing, size, media type, crashes."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from marshmallow import fields
from sqlalchemy import create_engine, text

from schemas.base import StrictSchema
from service.api.access import protected
from service.oauth.scopes import INVOLVEMENTS_WRITE, WARNINGS_WRITE
from tests.conftest import ON_POSTGRES, MakeApp, build_app, dispose_app
from tests.factories import bearer, create_client, get_token


class _Nested(StrictSchema):
    level = fields.String(required=True)


class _Body(StrictSchema):
    name = fields.String(required=True)
    count = fields.Integer(required=True)
    nested = fields.Nested(_Nested, required=True)


@pytest.fixture
def probe_app(make_app: MakeApp) -> Flask:
    """An app with two extra protected routes: one validating a body, one crashing."""
    app: Flask = make_app()

    @protected(WARNINGS_WRITE, action="test:validate")
    def validate() -> dict[str, object]:
        return _Body().load(request.get_json())  # type: ignore[no-any-return]

    @protected(WARNINGS_WRITE, action="test:crash")
    def crash() -> dict[str, object]:
        raise RuntimeError("secret internal state: /srv/keys")

    app.add_url_rule("/api/v1/probe", "probe", validate, methods=["POST"])
    app.add_url_rule("/api/v1/crash", "crash", crash)
    return app


@pytest.fixture
def token(probe_app: Flask) -> str:
    return get_token(probe_app.test_client(), create_client(probe_app))


def _assert_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.get_json()  # type: ignore[attr-defined]
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    return body


def test_validation_errors_name_every_field(probe_app: Flask, token: str) -> None:
    response = probe_app.test_client().post(
        "/api/v1/probe",
        json={"count": "many", "nested": {"level": 3, "extra": 1}, "surprise": True},
        headers=bearer(token),
    )
    body = _assert_problem(response, 400)
    assert set(body["errors"]) == {  # type: ignore[arg-type]
        "name",
        "count",
        "nested.level",
        "nested.extra",
        "surprise",
    }


def test_not_json_is_415(probe_app: Flask, token: str) -> None:
    response = probe_app.test_client().post(
        "/api/v1/probe",
        data="name=x",
        headers={**bearer(token), "Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_problem(response, 415)


def test_malformed_json_is_400(probe_app: Flask, token: str) -> None:
    response = probe_app.test_client().post(
        "/api/v1/probe",
        data="{not json",
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    _assert_problem(response, 400)


def test_oversized_body_is_413(probe_app: Flask, token: str) -> None:
    response = probe_app.test_client().post(
        "/api/v1/probe",
        json={"name": "x" * 70_000, "count": 1, "nested": {"level": "a"}},
        headers=bearer(token),
    )
    _assert_problem(response, 413)


def test_size_limit_is_configurable(make_app: MakeApp) -> None:
    app = make_app(MAX_CONTENT_LENGTH=100)
    response = app.test_client().post("/oauth/token", data={"grant_type": "x" * 200})
    _assert_problem(response, 413)


def test_unknown_route_is_404(client: FlaskClient) -> None:
    _assert_problem(client.get("/api/v1/nothing-here"), 404)


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/api/v1/me")
    _assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_crash_is_generic_500_without_traceback(
    probe_app: Flask, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="service"):
        response = probe_app.test_client().get(
            "/api/v1/crash", headers={**bearer(token), "X-Request-Id": "req-crash-1"}
        )
    body = _assert_problem(response, 500)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret internal state" not in text
    assert body["request_id"] == "req-crash-1"
    assert any(record.exc_info for record in caplog.records)


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"]
        == "abc-123"
    )
    generated = client.get("/healthz", headers={"X-Request-Id": "bad id; drop"}).headers[
        "X-Request-Id"
    ]
    assert len(generated) == 32


def test_every_response_is_no_store(client: FlaskClient) -> None:
    for path in ("/healthz", "/api/v1/me", "/api/v1/openapi.json", "/missing"):
        assert client.get(path).headers["Cache-Control"] == "no-store"


@pytest.mark.skipif(not ON_POSTGRES, reason="lock_timeout is PostgreSQL's")
def test_a_lock_not_granted_in_time_is_a_503_problem_and_nothing_changes(
    app: Flask, client: FlaskClient
) -> None:
    # A request that waits on a row lock longer than lock_timeout (a stuck transaction, a
    # fail-over) fails fast with a 503 asking the client to retry, not a 500.
    headers = bearer(get_token(client, create_client(app, scopes=(INVOLVEMENTS_WRITE,))))
    declared = client.post("/api/v1/involvements", headers=headers, json={
        "household": {"uprn": "100062123456"}, "case_reference": "C-1",
        "lead_practitioner": {"name": "A", "contact": "0300 000 0000"},
    })  # fmt: skip
    involvement_id = declared.get_json()["id"]
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as holder:
            holder.execute(
                text("SELECT id FROM involvement WHERE id = :id FOR UPDATE"), {"id": involvement_id}
            )
            started = time.monotonic()
            response = client.post(f"/api/v1/involvements/{involvement_id}/end",
                                   json={"reason": "Case closed"}, headers=headers)  # fmt: skip
            waited = time.monotonic() - started
            holder.rollback()
    finally:
        engine.dispose()
    body = _assert_problem(response, 503)
    assert body["type"] == "urn:alertshare:problem:database-unavailable"
    assert response.headers["Retry-After"] == "5"
    assert waited < 10  # the lock_timeout (5 s), not for ever
    listed = client.get("/api/v1/involvements", headers=headers).get_json()["items"]
    assert [item["ended_at"] for item in listed] == [None]


def test_a_database_that_does_not_answer_is_a_503_saying_when_to_retry(tmp_path: Path) -> None:
    """PostgreSQL down (nothing listens on its port): the token check, the audit append and
    the token endpoint all fail on the database; the answer names the database, not the audit
    log, and says when to retry, whichever step failed first."""
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none", tmp_path)
    try:
        client = app.test_client()
        answers = [
            client.get("/api/v1/me", headers=bearer("a-token-that-cannot-be-checked")),
            client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": "Basic Y2xpZW50OnNlY3JldA=="},
            ),  # fmt: skip
        ]
    finally:
        dispose_app(app)
    for response in answers:
        body = _assert_problem(response, 503)
        assert body["type"] == "urn:alertshare:problem:database-unavailable", body
        assert response.headers["Retry-After"] == "5"
