"""One unit of work per request, command and job: the work and its audit entry commit together."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from service import agencies
from service.api.access import protected, public
from service.api.recording import current_entry
from service.database import db
from service.errors import InvalidInput
from service.models.agency import Agency
from service.oauth.scopes import HOUSEHOLDS_READ
from service.unit_of_work import unit_of_work
from tests.audit.helpers import audit_entries, last_entry
from tests.conftest import MakeApp
from tests.factories import basic_auth, bearer, create_client, get_token


def _agency_exists(app: Flask, slug: str) -> bool:
    with app.app_context():
        return db.session.get(Agency, slug) is not None


@pytest.fixture
def web_app(make_app: MakeApp) -> Flask:
    """An app with throwaway routes outside /api/, as a web page would add them."""
    app = make_app()

    @protected(HOUSEHOLDS_READ, action="test:write")
    def write(slug: str) -> dict[str, Any]:
        agencies.add_agency(slug, "Made on a page", "other", "0300 000 0000")
        current_entry().returning("agency", [slug])
        if slug.startswith("fail"):
            raise InvalidInput("Refused after writing.", errors={"slug": ["Refused."]})
        return {"created": slug}

    @public()
    def unaudited_write(slug: str) -> dict[str, Any]:
        agencies.add_agency(slug, "Made without audit", "other", "0300 000 0000")
        return {"created": slug}

    app.add_url_rule("/web/agencies/<slug>", "web_write", write, methods=["POST"])
    app.add_url_rule("/web/quiet/<slug>", "web_quiet", unaudited_write, methods=["POST"])
    return app


def test_write_and_its_entry_commit_together_outside_the_api(web_app: Flask) -> None:
    http = web_app.test_client()
    creds = create_client(web_app, scopes=(HOUSEHOLDS_READ,))
    response = http.post("/web/agencies/made-here", headers=bearer(get_token(http, creds)))
    assert response.status_code == 200, response.get_json()
    assert _agency_exists(web_app, "made-here")
    entry = last_entry(web_app)
    assert (entry["action"], entry["outcome"], entry["agency_id"]) == (
        "test:write",
        "allowed",
        creds.agency_id,
    )
    assert entry["returned"] == {"agency": ["made-here"]}


def test_a_failed_request_keeps_its_entry_but_not_its_write(web_app: Flask) -> None:
    http = web_app.test_client()
    token = get_token(http, create_client(web_app, scopes=(HOUSEHOLDS_READ,)))
    response = http.post("/web/agencies/fail-here", headers=bearer(token))
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"slug": ["Refused."]}
    assert not _agency_exists(web_app, "fail-here")
    entry = last_entry(web_app)
    assert (entry["action"], entry["outcome"], entry["returned"]) == ("test:write", "failed", {})


def test_write_and_entry_roll_back_together_when_the_log_fails(web_app: Flask) -> None:
    http = web_app.test_client()
    token = get_token(http, create_client(web_app, scopes=(HOUSEHOLDS_READ,)))
    before = len(audit_entries(web_app))
    with web_app.app_context():
        db.session.execute(text("ALTER TABLE audit_entry RENAME TO audit_entry_unwritable"))
        db.session.commit()
    response = http.post("/web/agencies/never-here", headers=bearer(token))
    assert response.status_code == 503
    assert not _agency_exists(web_app, "never-here")
    with web_app.app_context():
        db.session.execute(text("ALTER TABLE audit_entry_unwritable RENAME TO audit_entry"))
        db.session.commit()
    assert len(audit_entries(web_app)) == before


def test_a_route_without_an_action_commits_its_work_unaudited(web_app: Flask) -> None:
    http = web_app.test_client()
    before = len(audit_entries(web_app))
    assert http.post("/web/quiet/quiet-one").status_code == 200
    assert _agency_exists(web_app, "quiet-one")
    assert len(audit_entries(web_app)) == before


def test_a_route_without_a_policy_outside_the_api_is_refused_and_recorded(
    make_app: MakeApp,
) -> None:
    app = make_app()
    app.add_url_rule("/web/forgotten", "forgotten", lambda: {"secret": "data"})
    response = app.test_client().get("/web/forgotten")
    assert response.status_code == 403
    entry = last_entry(app)
    assert (entry["action"], entry["outcome"]) == ("request:unrouted", "denied")


def test_unknown_paths_outside_the_api_are_not_audited(app: Flask) -> None:
    before = len(audit_entries(app))
    assert app.test_client().get("/favicon.ico").status_code == 404
    assert len(audit_entries(app)) == before


def test_unit_of_work_commits_on_success_and_rolls_back_on_error(app: Flask) -> None:
    with app.app_context():
        with unit_of_work():
            agencies.add_agency("kept", "Kept", "other", "0300 000 0000")
        with pytest.raises(RuntimeError), unit_of_work():
            agencies.add_agency("dropped", "Dropped", "other", "0300 000 0000")
            raise RuntimeError("the command failed")
        db.session.remove()
        assert db.session.scalars(select(Agency.id)).all() == ["kept"]


def test_current_entry_outside_an_audited_request_raises(app: Flask) -> None:
    with app.app_context(), pytest.raises(RuntimeError, match="no audited request"):
        current_entry()
    with app.test_request_context("/healthz"), pytest.raises(RuntimeError):
        current_entry()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/v1/agencies", 200), ("GET", "/api/v1/me", 400), ("GET", "/api/v1/nowhere", 404),
     ("POST", "/oauth/token", 200), ("GET", "/healthz", 200)],
)  # fmt: skip
def test_each_request_commits_exactly_once(app: Flask, method: str, path: str, status: int) -> None:
    http = app.test_client()
    creds = create_client(app)
    token = get_token(http, creds)
    commits: list[object] = []

    def count(session: object) -> None:
        commits.append(session)

    headers = bearer(token) if status != 400 else bearer(token, acting=False)
    kwargs: dict[str, Any] = {"headers": headers}
    if path == "/oauth/token":
        assert creds.secret
        kwargs = {"data": {"grant_type": "client_credentials"},
                  "headers": basic_auth(creds.client_id, creds.secret)}  # fmt: skip
    event.listen(Session, "after_commit", count)
    try:
        assert http.open(path, method=method, **kwargs).status_code == status
    finally:
        event.remove(Session, "after_commit", count)
    assert len(commits) == 1
