"""The notification routes as an agency's case system uses them: the feed with its cursor,
acknowledging, chasing what nobody acknowledged, and managing webhook endpoints."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.database import db
from service.errors import InvalidInput
from service.models.notification import Delivery
from service.oauth.scopes import HOUSEHOLDS_READ, INVOLVEMENTS_WRITE, WARNINGS_WRITE
from service.webhook_endpoints import register_webhook
from tests.factories import bearer, create_agency, create_client, get_token

TODAY = date.today()
UPRN = "100062123456"


class Agency:
    def __init__(self, app: Flask, http: FlaskClient, slug: str, practitioner: str) -> None:
        self.id = create_agency(app, slug=slug, name=slug.title())
        self.http = http
        self.headers = {**bearer(get_token(http, create_client(app, agency_id=self.id))),
                        "X-Acting-Practitioner": practitioner}  # fmt: skip

    def call(self, method: str, path: str, status: int, body: Any = None, **kw: Any) -> Any:
        response = self.http.open(
            f"/api/v1{path}", method=method, headers=self.headers, json=body, **kw
        )
        assert response.status_code == status, (path, response.get_json())
        return response.get_json()

    def involve(self) -> None:
        self.call("POST", "/involvements", 201, {
            "household": {"uprn": UPRN}, "case_reference": f"REF-{self.id}",
            "lead_practitioner": {"name": "Alex Morgan", "contact": "07700 900461"},
        })  # fmt: skip

    def publish(self) -> dict[str, Any]:
        warning: dict[str, Any] = self.call("POST", "/warnings", 201, {
            "household": {"uprn": UPRN}, "categories": ["weapons"], "risk_level": "high",
            "incidents": [{"occurred_on": str(TODAY - timedelta(days=1)),
                           "police_reported": False, "summary": "Threatened with a knife"}],
            "children_in_household": True,
            "subject_informed": {"informed": True, "informed_on": str(TODAY)},
        })  # fmt: skip
        return warning


@pytest.fixture
def partners(app: Flask, client: FlaskClient) -> tuple[Agency, Agency]:
    social = Agency(app, client, "social-care", "sw-0042")
    health = Agency(app, client, "health-visiting", "hv-0007")
    social.involve()
    health.involve()
    return social, health


def test_the_feed_pages_in_order_and_acknowledgements_reach_the_issuer(
    partners: tuple[Agency, Agency],
) -> None:
    social, health = partners
    warning = social.publish()
    page = health.call("GET", "/notifications?limit=1", 200)
    assert [item["type"] for item in page["items"]] == ["warning.published"]
    published = page["items"][0]
    assert published["data"] == {
        "household_id": warning["household_id"], "warning_id": warning["id"],
        "risk_level": "high", "case_reference": f"REF-{health.id}",
    }  # fmt: skip
    assert health.call("GET", f"/notifications?after={page['next']}", 200)["items"] == []
    # Nobody has read it yet: a duty manager chasing at once (0 hours) sees it.
    chased = health.call("GET", "/notifications/unacknowledged?older_than_hours=0", 200)
    assert [item["id"] for item in chased["items"]] == [published["id"]]
    told = social.call("GET", f"/warnings/{warning['id']}/acknowledgements", 200)["items"]
    assert [(t["agency_id"], t["acknowledged_at"]) for t in told] == [(health.id, None)]

    acked = health.call("POST", f"/notifications/{published['id']}/ack", 200)
    assert acked["acknowledged"]["practitioner"] == "hv-0007"
    health.headers["X-Acting-Practitioner"] = "hv-0099"
    again = health.call("POST", f"/notifications/{published['id']}/ack", 200)
    assert again["acknowledged"] == acked["acknowledged"]  # the first stands
    assert (
        health.call("GET", "/notifications/unacknowledged?older_than_hours=0", 200)["items"] == []
    )
    told = social.call("GET", f"/warnings/{warning['id']}/acknowledgements", 200)["items"]
    assert told[0]["acknowledged_at"] == acked["acknowledged"]["at"]
    # Another agency's notification is not found; the issuer's list is the issuer's alone.
    social.call("POST", f"/notifications/{published['id']}/ack", 404)
    health.call("GET", f"/warnings/{warning['id']}/acknowledgements", 403)


def test_webhook_endpoints_belong_to_their_agency(partners: tuple[Agency, Agency]) -> None:
    social, health = partners
    created = health.call(
        "POST",
        "/webhooks",
        201,
        {"url": "http://127.0.0.1:9/alerts", "event_types": ["warning.published"]},
    )
    hook = created["id"]
    assert created["secret"].startswith("whsec_")
    listed = health.call("GET", "/webhooks", 200)["items"]
    assert [item["id"] for item in listed] == [hook] and "secret" not in listed[0]
    for method, path, body in (
        ("GET", f"/webhooks/{hook}", None), ("DELETE", f"/webhooks/{hook}", None),
        ("POST", f"/webhooks/{hook}/rotate-secret", {}), ("POST", f"/webhooks/{hook}/test", None),
        ("GET", f"/webhooks/{hook}/deliveries", None),
    ):  # fmt: skip
        social.call(method, path, 404, body)
    assert social.call("GET", "/webhooks", 200)["items"] == []

    rotated = health.call("POST", f"/webhooks/{hook}/rotate-secret", 200, {"overlap_hours": 2})
    assert rotated["secret"] != created["secret"] and rotated["previous_secret_until"]
    queued = health.call("POST", f"/webhooks/{hook}/test", 202)
    assert (queued["event_type"], queued["status"]) == ("webhook.test", "pending")
    social.publish()  # a warning.published for health: one more delivery to its endpoint
    deliveries = health.call("GET", f"/webhooks/{hook}/deliveries?status=pending", 200)["items"]
    assert {d["event_type"] for d in deliveries} == {"webhook.test", "warning.published"}
    health.call("POST", f"/webhooks/{hook}/deliveries/{queued['id']}/replay", 409)  # not dead
    # The test event is a receiver check, not news: it is not in the feed.
    feed = health.call("GET", "/notifications", 200)["items"]
    assert "webhook.test" not in {item["type"] for item in feed}

    health.call("DELETE", f"/webhooks/{hook}", 204)
    health.call("GET", f"/webhooks/{hook}", 404)
    with health.http.application.app_context():
        left = db.session.scalars(select(Delivery.status).where(Delivery.webhook_id == hook))
        assert set(left) == {"failed"}


def test_webhook_management_needs_its_scope(app: Flask, client: FlaskClient) -> None:
    agency = create_agency(app, slug="reader-only")
    scopes = (HOUSEHOLDS_READ, INVOLVEMENTS_WRITE, WARNINGS_WRITE)
    token = get_token(client, create_client(app, agency_id=agency, scopes=scopes))
    response = client.get("/api/v1/webhooks", headers=bearer(token))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_an_agency_has_at_most_ten_endpoints(partners: tuple[Agency, Agency]) -> None:
    _, health = partners
    for n in range(10):
        health.call("POST", "/webhooks", 201, {"url": f"http://127.0.0.1:9/{n}"})
    refused = health.call("POST", "/webhooks", 409, {"url": "http://127.0.0.1:9/11"})
    assert refused["status"] == 409


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data", "https://169.254.169.254/", "https://10.0.0.1/",
    "https://[::1]/", "https://127.0.0.1/", "http://example.org/alerts",
])  # fmt: skip
def test_production_refuses_private_and_plain_http_endpoints(app: Flask, url: str) -> None:
    agency = create_agency(app)
    with app.app_context(), pytest.raises(InvalidInput) as refused:
        register_webhook(agency, url, [], production=True)
    assert list(refused.value.errors) == ["url"]


def test_a_bad_webhook_url_is_a_problem_naming_the_field(partners: tuple[Agency, Agency]) -> None:
    _, health = partners
    problem = health.call("POST", "/webhooks", 400, {"url": "ftp://example.org/x"})
    assert "url" in problem["errors"]
    problem = health.call(
        "POST",
        "/webhooks",
        400,
        {"url": "http://127.0.0.1:9/", "event_types": ["warning.exploded"]},
    )
    assert "event_types.0" in problem["errors"]
