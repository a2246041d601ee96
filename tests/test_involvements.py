"""Involvements: one current involvement per agency and household, and the need-to-know rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import IntegrityError

from service import involvements
from service.database import db, utcnow
from service.models.involvement import Involvement
from service.oauth.scopes import HOUSEHOLDS_READ, INVOLVEMENTS_WRITE
from tests.factories import bearer, create_agency, create_client, create_household, get_token


def test_declaring_twice_is_a_conflict_and_ending_allows_again(
    app: Flask, client: FlaskClient
) -> None:
    creds = create_client(app, scopes=(INVOLVEMENTS_WRITE, HOUSEHOLDS_READ))
    headers = bearer(get_token(client, creds))
    body = {"household": {"uprn": "1001"}, "case_reference": "C-1",
            "lead_practitioner": {"name": "A", "contact": "0300 000 0000"}}  # fmt: skip
    first = client.post("/api/v1/involvements", json=body, headers=headers)
    assert first.status_code == 201
    assert client.post("/api/v1/involvements", json=body, headers=headers).status_code == 409
    path = f"/api/v1/involvements/{first.get_json()['id']}/end"
    ended = client.post(path, json={"reason": "Case closed"}, headers=headers)
    assert ended.status_code == 200 and ended.get_json()["ended_at"]
    assert client.post(path, json={"reason": "Again"}, headers=headers).status_code == 409
    assert client.post("/api/v1/involvements", json=body, headers=headers).status_code == 201
    listed = client.get("/api/v1/involvements", headers=headers).get_json()["items"]
    assert [i["ended_at"] is None for i in listed] == [True, False]


def test_the_database_refuses_a_second_current_involvement(app: Flask) -> None:
    agency = create_agency(app)
    household_id = create_household(app, created_by=agency, involved=(agency,))
    with app.app_context():
        db.session.add(
            Involvement(household_id=household_id, agency_id=agency, case_reference=None)
        )
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_the_rule_knows_now_then_and_ever(app: Flask) -> None:
    agency, other = create_agency(app), create_agency(app)
    household_id = create_household(app, created_by=agency, involved=(agency,))
    with app.app_context():
        involvement = db.session.query(Involvement).one()
        started = utcnow() - timedelta(hours=2)
        involvement.started_at, involvement.ended_at = started, started + timedelta(hours=1)
        db.session.commit()
        assert not involvements.is_involved(agency, household_id)
        assert involvements.is_involved(agency, household_id, at=started + timedelta(minutes=5))
        assert not involvements.is_involved(agency, household_id, at=started - timedelta(1))
        assert involvements.is_involved(agency, household_id, ever=True)
        assert not involvements.is_involved(other, household_id, ever=True)
        assert involvement.covers(started) and not involvement.covers(utcnow())
