"""Who is told what, written with the change that causes it (the transactional outbox).

Requests go through the real API with real tokens; the outbox rows are then read from the
database as the worker and the feed will read them.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import date, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from service.database import db
from service.models.audit import AuditEntry
from service.models.notification import Delivery, Notification, Webhook
from service.notifications import announce_reviews_due, payload, set_warning_accessed
from service.outbox import Event, Involved, emit
from service.unit_of_work import unit_of_work
from service.webhooks.signing import generate_secret
from tests.factories import bearer, create_agency, create_client, get_token

TODAY = date.today()
UPRN = "100062123456"
PLANTED = ("Darren", "Pike", "Orchard Way", "Threatened with a knife", "KE-26-112233",
           "Would escalate", "CSC-REF-88431")  # fmt: skip


class Agency:
    def __init__(self, app: Flask, http: FlaskClient, slug: str) -> None:
        self.id = create_agency(app, slug=slug, name=slug.title())
        self.http = http
        self.headers = bearer(get_token(http, create_client(app, agency_id=self.id)))

    def call(self, method: str, path: str, status: int, body: Any = None) -> Any:
        response = self.http.open(f"/api/v1{path}", method=method, headers=self.headers, json=body)
        assert response.status_code == status, (path, response.get_json())
        return response.get_json()

    def involve(self, reference: str = "CASE-1") -> None:
        self.call("POST", "/involvements", 201, {
            "household": {"uprn": UPRN}, "case_reference": reference,
            "lead_practitioner": {"name": "Alex Morgan", "contact": "07700 900461"},
        })  # fmt: skip

    def publish(self, **changes: Any) -> dict[str, Any]:
        body = {
            "household": {"uprn": UPRN}, "categories": ["weapons"], "risk_level": "high",
            "incidents": [{"occurred_on": str(TODAY - timedelta(days=1)),
                           "police_reported": True, "summary": "Threatened with a knife",
                           "crime_reference": "KE-26-112233"}],
            "persons_of_concern": [{"given_name": "Darren", "family_name": "Pike"}],
            "children_in_household": True,
            "subject_informed": {"informed": False, "reason_withheld": "Would escalate the risk",
                                 "recheck_on": str(TODAY + timedelta(days=30))},
            **changes,
        }  # fmt: skip
        warning: dict[str, Any] = self.call("POST", "/warnings", 201, body)
        return warning


def _notifications(app: Flask, **where: Any) -> list[Notification]:
    with app.app_context():
        query = select(Notification).filter_by(**where).order_by(Notification.seq)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def _partnership(app: Flask, client: FlaskClient, *slugs: str) -> list[Agency]:
    return [Agency(app, client, slug) for slug in slugs]


def test_a_published_warning_is_told_to_every_other_involved_agency_and_nobody_else(
    app: Flask, client: FlaskClient
) -> None:
    social, health, school, stranger = _partnership(
        app, client, "social-care", "health-visiting", "school", "stranger"
    )
    for agency in (social, health, school):
        agency.involve(f"REF-{agency.id}")
    warning = social.publish()
    told = _notifications(app, type="warning.published")
    assert {n.agency_id for n in told} == {health.id, school.id}  # not the issuer, no stranger
    assert all(n.warning_id == warning["id"] and n.risk_level == "high" for n in told)
    with app.app_context():
        sent = [json.dumps(payload(n, "REF-x"), default=str) for n in told]
    for body in sent:
        assert not any(value in body for value in PLANTED), body
    assert stranger.id not in {n.agency_id for n in _notifications(app)}


def test_a_restricted_warning_is_told_only_to_the_involved_agencies_it_is_shared_with(
    app: Flask, client: FlaskClient
) -> None:
    social, health, school, police = _partnership(app, client, "sc", "hv", "sch", "police")
    for agency in (social, health, school):
        agency.involve()
    social.publish(handling="restricted", shared_with=[health.id, police.id])
    told = _notifications(app, type="warning.published")
    # The school works with the family but is not shared with; the police are shared with but
    # do not work with the family (they could not read the detail either).
    assert [n.agency_id for n in told] == [health.id]


def test_a_refused_change_leaves_no_notification(app: Flask, client: FlaskClient) -> None:
    social, health = _partnership(app, client, "sc", "hv")
    social.involve()
    health.involve()
    before = len(_notifications(app))
    social.call("POST", "/warnings", 400, {"household": {"uprn": UPRN}, "categories": []})
    assert len(_notifications(app)) == before


def test_involvements_and_incidents_are_told_to_the_others(app: Flask, client: FlaskClient) -> None:
    social, health, school = _partnership(app, client, "sc", "hv", "sch")
    social.involve()
    assert _notifications(app, type="involvement.added") == []  # nobody else to tell yet
    health.involve()
    (added,) = _notifications(app, type="involvement.added")
    assert (added.agency_id, added.subject_id) == (social.id, health.id)
    school.involve()
    incident = school.call("POST", "/incidents", 201, {
        "household": {"uprn": UPRN}, "occurred_on": str(TODAY), "categories": ["verbal_abuse"],
        "summary": "Shouted at on the doorstep", "police_reported": False,
    })  # fmt: skip
    recorded = _notifications(app, type="incident.recorded")
    assert {n.agency_id for n in recorded} == {social.id, health.id}
    assert {n.subject_id for n in recorded} == {incident["id"]}
    # Incidents reported with a warning are announced by the warning only.
    social.publish()
    assert len(_notifications(app, type="incident.recorded")) == 2


def test_reading_another_agencys_warning_tells_its_issuer_once_a_day(
    app: Flask, client: FlaskClient
) -> None:
    social, health = _partnership(app, client, "sc", "hv")
    social.involve()
    health.involve()
    warning = social.publish()
    social.call("GET", f"/warnings/{warning['id']}", 200)  # the issuer's own read: no event
    assert _notifications(app, type="warning.accessed") == []
    for _ in range(3):
        health.call("GET", f"/warnings/{warning['id']}", 200)
    health.call("GET", f"/households/{warning['household_id']}/briefing", 200)
    (accessed,) = _notifications(app, type="warning.accessed")
    assert (accessed.agency_id, accessed.subject_id) == (social.id, health.id)


def test_an_agency_can_turn_off_being_told_of_reads(app: Flask, client: FlaskClient) -> None:
    social, health = _partnership(app, client, "sc", "hv")
    social.involve()
    health.involve()
    warning = social.publish()
    with app.app_context(), unit_of_work():
        set_warning_accessed(social.id, False)
    health.call("GET", f"/warnings/{warning['id']}", 200)
    assert _notifications(app, type="warning.accessed") == []


def test_a_passed_review_date_is_told_to_the_issuer_once(app: Flask, client: FlaskClient) -> None:
    social, health = _partnership(app, client, "sc", "hv")
    social.involve()
    health.involve()
    warning = social.publish()
    with app.app_context(), unit_of_work():
        assert announce_reviews_due(TODAY + timedelta(days=400)) == [warning["id"]]
    with app.app_context(), unit_of_work():
        assert announce_reviews_due(TODAY + timedelta(days=400)) == []
    (due,) = _notifications(app, type="warning.review_due")
    assert (due.agency_id, due.warning_id) == (social.id, warning["id"])


def test_deliveries_go_to_the_endpoints_of_the_time_that_want_the_event(
    app: Flask, client: FlaskClient
) -> None:
    social, health = _partnership(app, client, "sc", "hv")
    with app.app_context(), unit_of_work():
        everything = Webhook(
            agency_id=health.id, url="http://127.0.0.1:9/a", secret=generate_secret()
        )
        incidents_only = Webhook(
            agency_id=health.id,
            url="http://127.0.0.1:9/b",
            event_types="incident.recorded",
            secret=generate_secret(),
        )
        db.session.add_all([everything, incidents_only])
        db.session.flush()
        wanted, filtered = everything.id, incidents_only.id
    social.involve()
    health.involve()
    social.publish()
    with app.app_context(), unit_of_work():
        late = Webhook(agency_id=health.id, url="http://127.0.0.1:9/c", secret=generate_secret())
        db.session.add(late)
        db.session.flush()
        late_id = late.id
    (published,) = _notifications(app, type="warning.published")
    with app.app_context():
        deliveries = list(db.session.scalars(
            select(Delivery).where(Delivery.notification_id == published.id)
        ))  # fmt: skip
        assert [(d.webhook_id, d.status) for d in deliveries] == [(wanted, "pending")]
        assert filtered != late_id  # registered later: no history
        assert db.session.scalar(select(Delivery).where(Delivery.webhook_id == late_id)) is None


def test_an_agency_told_outright_gets_deliveries_too(app: Flask, client: FlaskClient) -> None:
    # A warning's issuer is told of another agency's read by name, not as one of the agencies
    # working with the household (whose endpoints are read with them): its endpoints are read
    # on their own.
    social, health = _partnership(app, client, "sc", "hv")
    with app.app_context(), unit_of_work():
        hooks = [
            Webhook(agency_id=social.id, url=f"http://127.0.0.1:9/{n}", secret=generate_secret())
            for n in ("a", "b")
        ]
        db.session.add_all(hooks)
        db.session.flush()
        hook_ids = {hook.id for hook in hooks}
    social.involve()
    health.involve()
    warning = social.publish()
    health.call("GET", f"/warnings/{warning['id']}", 200)
    (accessed,) = _notifications(app, type="warning.accessed")
    with app.app_context():
        told = select(Delivery.webhook_id).where(Delivery.notification_id == accessed.id)
        assert sorted(db.session.scalars(told)) == sorted(hook_ids)


def test_one_delivery_per_notification_and_endpoint_whatever_the_households(
    app: Flask, client: FlaskClient
) -> None:
    # One change telling of two households an agency works with: its endpoint is read with
    # each household's agencies, and still gets one delivery per notification.
    social, health = _partnership(app, client, "sc", "hv")
    with app.app_context(), unit_of_work():
        hook = Webhook(agency_id=health.id, url="http://127.0.0.1:9/a", secret=generate_secret())
        db.session.add(hook)
        db.session.flush()
        hook_id = hook.id
    lead = {"name": "Alex Morgan", "contact": "07700 900461"}
    households = [
        health.call("POST", "/involvements", 201, {
            "household": {"uprn": uprn}, "case_reference": "CASE-2", "lead_practitioner": lead,
        })["household_id"]
        for uprn in (UPRN, "100062123457")
    ]  # fmt: skip
    with app.app_context(), unit_of_work():
        for household_id in households:
            emit(Event("incident.recorded", Involved(household_id, but=social.id),
                       household_id=household_id))  # fmt: skip
    told = _notifications(app, type="incident.recorded")
    assert sorted(n.household_id for n in told) == sorted(households)
    with app.app_context():
        deliveries = select(Delivery.notification_id).where(Delivery.webhook_id == hook_id)
        assert sorted(db.session.scalars(deliveries)) == sorted(n.id for n in told)


def test_savepoints_neither_write_nor_drop_the_transactions_events(
    app: Flask, client: FlaskClient
) -> None:
    social, health = _partnership(app, client, "sc", "hv")
    social.involve()
    health.involve()
    (household,) = {n.household_id for n in _notifications(app, type="involvement.added")}
    count = select(func.count()).select_from(Notification).filter_by(type="incident.recorded")
    with app.app_context():
        emit(Event("incident.recorded", frozenset({health.id}), household_id=household))
        with db.session.begin_nested():  # released: not the transaction's commit
            pass
        with suppress(LookupError), db.session.begin_nested():  # rolled back: likewise
            raise LookupError
        assert db.session.scalar(count) == 0  # nothing written yet, nothing forgotten
        db.session.commit()
        assert db.session.scalar(count) == 1


def test_a_read_whose_notification_cannot_be_written_leaves_no_entry_saying_it_was_served(
    app: Flask, client: FlaskClient
) -> None:
    """A read-only route (its reads outside a transaction on PostgreSQL) that queued a
    notification: the notification and the request's audit entry, appended first, commit
    together or not at all. Here the notification cannot be written: the request is refused,
    and the log holds its refusal alone, not an entry saying it was served."""
    social, health = _partnership(app, client, "sc", "hv")
    social.involve()
    health.involve()
    warning = social.publish()
    with app.app_context():
        db.session.execute(text("ALTER TABLE notification RENAME TO notification_unwritable"))
        db.session.commit()
    try:
        response = health.http.get(f"/api/v1/warnings/{warning['id']}", headers=health.headers)
    finally:
        with app.app_context():
            db.session.execute(text("ALTER TABLE notification_unwritable RENAME TO notification"))
            db.session.commit()
    assert response.status_code == 503
    with app.app_context():
        statuses = db.session.scalars(
            select(AuditEntry.status).where(
                AuditEntry.request_id == response.headers["X-Request-Id"]
            )
        ).all()
    assert statuses == [503]
    assert _notifications(app, type="warning.accessed") == []
    health.call("GET", f"/warnings/{warning['id']}", 200)  # written now: told, once
    assert len(_notifications(app, type="warning.accessed")) == 1
