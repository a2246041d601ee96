"""The look-up and the briefing read several kinds of row in one statement each: each row
still lands with its own household, once, in its order.

The look-up joins the matched households to their active warnings and issuers; the briefing
reads the household with its members and the other agencies working with it (one row each,
not one per member and agency).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import households, involvements, warnings
from service.incidents import IncidentReport
from service.unit_of_work import unit_of_work
from tests.factories import bearer, create_agency, create_client, get_token

TODAY = date.today()
NHS_NUMBER = "9434765919"  # passes the modulus-11 check


@pytest.fixture
def caller(app: Flask) -> str:
    return create_agency(app, slug="caller-agency", name="Caller Agency")


@pytest.fixture
def headers(app: Flask, client: FlaskClient, caller: str) -> dict[str, str]:
    return bearer(get_token(client, create_client(app, agency_id=caller)))


def _household(app: Flask, created_by: str, *, uprn: str, involved: tuple[str, ...] = ()) -> str:
    with app.app_context(), unit_of_work():
        household = households.register_household(created_by, uprn=uprn)
        for agency_id in involved:
            involvements.register_involvement(household, agency_id, case_reference="CASE-1")
        return household.id


def _member(app: Flask, household_id: str, given_name: str, **details: Any) -> None:
    with app.app_context(), unit_of_work():
        household = households.get_household(household_id)
        households.add_member(household, role="adult", given_name=given_name,
                              family_name="Pike", **details)  # fmt: skip


def _warn(
    app: Flask, household_id: str, issuer: str, risk: str, category: str, **draft: Any
) -> None:
    report = IncidentReport(occurred_on=TODAY, categories=(), summary="Shouted at",
                            police_reported=False)  # fmt: skip
    with app.app_context(), unit_of_work():
        warnings.publish_warning(
            households.get_household(household_id), issuer,
            warnings.WarningDraft(
                categories=(category,), risk_level=risk, children_in_household=False,
                subject_informed=warnings.SubjectInformed(True, informed_on=TODAY), **draft,
            ),
            warnings.Evidence((report,)), TODAY,
        )  # fmt: skip


def test_a_look_up_gives_each_matched_household_its_own_flag(
    app: Flask, client: FlaskClient, caller: str, headers: dict[str, str]
) -> None:
    police = create_agency(app, slug="police", name="Police")
    housing = create_agency(app, slug="housing", name="Housing")
    # The same person, registered in two households: one with warnings, one without.
    flagged = _household(app, police, uprn="100000000001")
    quiet = _household(app, police, uprn="100000000002", involved=(caller,))
    for household_id in (flagged, quiet):
        _member(app, household_id, "Dean", nhs_number=NHS_NUMBER)
    _warn(app, flagged, police, "medium", "weapons", precautions=("joint_visit",))
    _warn(app, flagged, housing, "high", "harassment", handling="restricted")
    _warn(app, flagged, police, "low", "verbal_abuse")

    response = client.post(
        "/api/v1/households/lookup", json={"person": {"nhs_number": NHS_NUMBER}}, headers=headers
    )

    assert response.status_code == 200, response.get_json()
    first, second = response.get_json()["matches"]
    assert (first["household_id"], first["involved"]) == (flagged, False)
    assert first["flag"]["active_warnings"] and first["flag"]["risk_level"] == "high"
    # Housing's restricted warning counts in the risk, not in the categories.
    assert first["flag"]["categories"] == ["verbal_abuse", "weapons"]
    assert first["flag"]["precautions"] == ["joint_visit"]
    assert [i["agency_id"] for i in first["flag"]["issuers"]] == [police, housing]
    assert first["flag"]["issuers"][0]["duty_contact"] == "Duty desk 0300 000 0000"
    assert (second["household_id"], second["involved"]) == (quiet, True)
    assert second["flag"] == {
        "active_warnings": False, "risk_level": None, "categories": [], "precautions": [],
        "review_overdue": False, "issuers": [],
    }  # fmt: skip


def test_a_briefing_lists_each_member_and_other_agency_once_in_order(
    app: Flask, client: FlaskClient, caller: str, headers: dict[str, str]
) -> None:
    others = [create_agency(app, slug=f"other-{n}", name=f"Other {n}") for n in range(3)]
    household_id = _household(app, caller, uprn="100000000003", involved=(caller, *others))
    for name in ("Ada", "Bea", "Cy"):
        _member(app, household_id, name)
    with app.app_context(), unit_of_work():  # an ended involvement is no one to call
        (ended,) = involvements.list_involvements(others[1], household_id)
        involvements.end_involvement(ended.id, others[1], "Case closed")

    response = client.get(f"/api/v1/households/{household_id}/briefing", headers=headers)

    assert response.status_code == 200, response.get_json()
    briefing = response.get_json()
    assert [m["given_name"] for m in briefing["members"]] == ["Ada", "Bea", "Cy"]
    agencies = [other["agency"] for other in briefing["other_agencies"]]
    assert [a["agency_id"] for a in agencies] == [others[0], others[2]]
    assert agencies[0] == {
        "agency_id": others[0],
        "name": "Other 0",
        "duty_contact": "Duty desk 0300 000 0000",
    }


def test_a_briefing_of_a_household_with_no_one_else(
    app: Flask, client: FlaskClient, caller: str, headers: dict[str, str]
) -> None:
    household_id = _household(app, caller, uprn="100000000004", involved=(caller,))

    response = client.get(f"/api/v1/households/{household_id}/briefing", headers=headers)

    assert response.status_code == 200, response.get_json()
    briefing = response.get_json()
    assert briefing["household"]["uprn"] == "100000000004"
    assert briefing["members"] == [] and briefing["other_agencies"] == []


@pytest.mark.parametrize("exists", [True, False])
def test_a_briefing_is_not_found_unless_the_caller_may_know_the_household(
    app: Flask, client: FlaskClient, headers: dict[str, str], exists: bool
) -> None:
    """The same answer for another agency's household as for one that does not exist."""
    others = create_agency(app)
    household_id = _household(app, others, uprn="100000000005", involved=(others,))
    _member(app, household_id, "Ada")
    if not exists:
        household_id = "7d0f8a2e-0000-4000-8000-000000000000"

    response = client.get(f"/api/v1/households/{household_id}/briefing", headers=headers)

    assert response.status_code == 404
    assert response.get_json()["detail"] == involvements.NO_SUCH_HOUSEHOLD
