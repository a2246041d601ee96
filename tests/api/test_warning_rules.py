"""What a warning, an incident and a look-up refuse, each as a 400 naming the field."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.oauth.scopes import HOUSEHOLDS_READ, INVOLVEMENTS_WRITE, WARNINGS_WRITE
from service.vocabulary import add_months
from tests.factories import bearer, create_client, get_token

TODAY = date.today()


def _warning(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "household": {"uprn": "100062123456"},
        "categories": ["verbal_abuse"], "risk_level": "low", "children_in_household": False,
        "subject_informed": {"informed": True, "informed_on": str(TODAY)},
        "incidents": [
            {"occurred_on": str(TODAY), "summary": "Shouted at", "police_reported": False}
        ],
    }  # fmt: skip
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
def headers(app: Flask, client: FlaskClient) -> dict[str, str]:
    creds = create_client(app, scopes=(WARNINGS_WRITE, INVOLVEMENTS_WRITE, HOUSEHOLDS_READ))
    return bearer(get_token(client, creds))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"categories": []}, "categories"),
        ({"categories": ["rudeness"]}, "categories.0"),
        ({"risk_level": "extreme"}, "risk_level"),
        ({"incidents": None}, "incidents"),
        ({"incidents": [{"occurred_on": str(TODAY + timedelta(days=1)), "summary": "x",
                         "police_reported": False}]}, "incidents.0.occurred_on"),
        ({"incidents": [{"occurred_on": str(TODAY), "summary": "x", "police_reported": False,
                         "crime_reference": "KE-1"}]}, "incidents.0.crime_reference"),
        ({"review_by": str(add_months(TODAY, 12) + timedelta(days=1))}, "review_by"),
        ({"review_by": str(TODAY)}, "review_by"),
        ({"shared_with": ["someone"]}, "shared_with"),
        ({"subject_informed": {"informed": False}}, "subject_informed.reason_withheld"),
        ({"persons_of_concern": [{"member_id": "not-a-member"}]}, "persons_of_concern"),
        ({"id": "mine"}, "id"),
        ({"status": "inactive"}, "status"),
        ({"version": 9}, "version"),
        ({"issuing_agency": "police"}, "issuing_agency"),
        ({"colour": "red"}, "colour"),
        ({"household": {"uprn": "1", "household_id": "x"}}, "household._schema"),
        ({"household": {"address": {"line1": "1 High St", "postcode": "NOT A CODE"}}},
         "household.address.postcode"),
    ],
)  # fmt: skip
def test_publishing_refuses_with_the_field_named(
    client: FlaskClient, headers: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/warnings", json=_warning(**changes), headers=headers)
    assert response.status_code == 400, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"], response.get_json()


def test_a_valid_warning_is_published(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.post("/api/v1/warnings", json=_warning(), headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["review_by"] == str(add_months(TODAY, 12))


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "_schema"), ({"uprn": "12345678901234"}, "uprn"),
     ({"person": {"nhs_number": "943 476 5918"}}, "person.nhs_number"),
     ({"person": {"family_name": "Pike"}}, "person._schema"),
     ({"uprn": "1", "address": {"line1": "x", "postcode": "ME1 2AB"}}, "_schema")],
)  # fmt: skip
def test_look_up_refuses_with_the_field_named(
    client: FlaskClient, headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/households/lookup", json=body, headers=headers)
    assert response.status_code == 400
    assert field in response.get_json()["errors"], response.get_json()


def test_look_up_never_creates_a_household(client: FlaskClient, headers: dict[str, str]) -> None:
    for _ in range(2):
        response = client.post("/api/v1/households/lookup", json={"uprn": "42"}, headers=headers)
        assert response.get_json() == {"matches": []}
