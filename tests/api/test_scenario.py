"""The field's story, end to end: a threat on a visit, a warning, another agency's look-up and
briefing, low-level incidents adding up, a review, and a withdrawal."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from service.oauth.scopes import HOUSEHOLDS_READ, INVOLVEMENTS_WRITE, WARNINGS_WRITE
from tests.factories import ClientCredentials, create_agency, create_client, get_token

CASE_SYSTEM = (WARNINGS_WRITE, INVOLVEMENTS_WRITE, HOUSEHOLDS_READ)
TODAY = date.today()


class Practitioner:
    """A practitioner's case system: a real token, acting context on every call."""

    def __init__(self, http: FlaskClient, creds: ClientCredentials, reference: str) -> None:
        self.http, self.creds = http, creds
        self.headers = {
            "Authorization": f"Bearer {get_token(http, creds)}",
            "X-Acting-Practitioner": reference,
            "X-Purpose-Of-Use": "pre_visit",
        }

    def call(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = self.http.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)
        assert response.status_code == status, (path, response.get_json())
        return response


def _agency(
    app: Flask, http: FlaskClient, slug: str, name: str, kind: str, ref: str
) -> Practitioner:
    creds = create_client(
        app, agency_id=create_agency(app, slug=slug, name=name, agency_type=kind,
                                     duty_contact=f"{name} duty desk 0300 123 0000"),
        scopes=CASE_SYSTEM,
    )  # fmt: skip
    return Practitioner(http, creds, ref)


def test_a_threat_on_a_visit_reaches_the_next_agency_before_it_knocks(
    app: Flask, client: FlaskClient
) -> None:
    social_care = _agency(app, client, "kent-csc", "Kent Children's Services",
                          "children_social_care", "sw-0042")  # fmt: skip
    health = _agency(app, client, "medway-hv", "Medway Health Visiting", "health", "hv-0007")
    school = _agency(app, client, "st-marys", "St Mary's Primary", "education", "sch-0001")
    housing = _agency(app, client, "kent-housing", "Kent Housing", "housing", "ho-0019")
    address = {"line1": "14 Orchard Way", "line2": None, "town": "Maidstone",
               "postcode": "ME14 2AB"}  # fmt: skip

    # Children's services work with the family: involvement, then the household's members.
    involvement = social_care.call("POST", "/involvements", 201, json={
        "household": {"address": address}, "case_reference": "CSC-REF-88431",
        "lead_practitioner": {"name": "Alex Morgan", "contact": "07700 900461"},
        "contact_route": "duty desk first",
    }).get_json()  # fmt: skip
    household_id = involvement["household_id"]
    father = social_care.call("POST", f"/households/{household_id}/members", 201, json={
        "given_name": "Darren", "family_name": "Pike", "date_of_birth": "1984-05-02",
        "role": "adult", "relationship": "father",
    }).get_json()  # fmt: skip
    social_care.call("POST", f"/households/{household_id}/members", 201, json={
        "given_name": "Mia", "family_name": "Pike", "date_of_birth": "2019-09-14",
        "role": "child", "relationship": "daughter", "nhs_number": "943 476 5919",
    })  # fmt: skip

    # A threat on a visit: a high warning, police reported, subject not told (and why).
    warning = social_care.call("POST", "/warnings", 201, json={
        "household": {"household_id": household_id},
        "categories": ["weapons", "intimidating_animals"], "risk_level": "high",
        "incidents": [{"occurred_on": str(TODAY - timedelta(days=2)),
                       "summary": "Threatened with a knife; two dogs set loose on the path",
                       "police_reported": True, "crime_reference": "KE-26-112233"}],
        "persons_of_concern": [{"member_id": father["id"]}],
        "precautions": ["joint_visit", "animals_secured_before_entry"],
        "children_in_household": True,
        "subject_informed": {"informed": False, "reason_withheld": "Telling him would raise "
                             "the risk to the children", "recheck_on": str(TODAY + timedelta(30))},
    })  # fmt: skip
    etag = warning.headers["ETag"]
    warning = warning.get_json()
    assert (warning["status"], warning["version"]) == ("active", 1)
    assert warning["review_by"] == str(_months_ahead(3))  # weapons: three months
    assert warning["incidents"][0]["crime_reference"] == "KE-26-112233"
    assert warning["incidents"][0]["categories"] == ["weapons", "intimidating_animals"]

    # The health visitor looks the address up, written differently: the flag, no detail.
    found = health.call("POST", "/households/lookup", 200, json={"address": {
        "line1": "14, ORCHARD  way", "postcode": "me142ab"}}).get_json()["matches"]  # fmt: skip
    assert len(found) == 1
    match = found[0]
    assert (match["household_id"], match["matched_by"], match["involved"]) == (
        household_id, "address", False)  # fmt: skip
    assert match["flag"] == {
        "active_warnings": True, "risk_level": "high",
        "categories": ["intimidating_animals", "weapons"],
        "precautions": ["joint_visit", "animals_secured_before_entry"],
        "review_overdue": False,
        "issuers": [{"agency_id": "kent-csc", "name": "Kent Children's Services",
                     "duty_contact": "Kent Children's Services duty desk 0300 123 0000"}],
    }  # fmt: skip
    for secret in ("Pike", "Orchard", "knife", "KE-26"):
        assert secret not in str(found)
    # Not yet involved: the detail is not its to read.
    health.call("GET", f"/households/{household_id}/briefing", 404)
    health.call("GET", f"/warnings/{warning['id']}", 404)

    # It registers its involvement, then gets the briefing with the detail.
    health.call("POST", "/involvements", 201, json={
        "household": {"household_id": household_id}, "case_reference": "HV-5521",
        "lead_practitioner": {"name": "Sam Patel", "contact": "01634 555 010"},
    })  # fmt: skip
    briefing = health.call("GET", f"/households/{household_id}/briefing", 200).get_json()
    assert [m["given_name"] for m in briefing["members"]] == ["Darren", "Mia"]
    assert [m["is_child"] for m in briefing["members"]] == [False, True]
    assert "child" in briefing["children_prompt"]
    (shown,) = briefing["warnings"]
    assert shown["persons_of_concern"] == [
        {"member_id": father["id"], "given_name": "Darren", "family_name": "Pike"}
    ]
    assert shown["subject_informed"]["informed"] is False
    assert [p["code"] for p in briefing["precautions"]] == [
        "joint_visit", "animals_secured_before_entry"]  # fmt: skip
    (other,) = briefing["other_agencies"]
    assert (other["agency"]["agency_id"], other["lead_practitioner"], other["lead_contact"],
            other["contact_route"]) == ("kent-csc", "Alex Morgan", "07700 900461",
                                        "duty desk first")  # fmt: skip
    assert any("neutral venue" in q for q in briefing["checklist"])
    assert briefing["incidents_last_12_months"]["cumulative_prompt"] is None

    # The school records two low-level incidents and housing one: the briefing prompts.
    for agency in (school, housing):
        agency.call("POST", "/involvements", 201, json={
            "household": {"household_id": household_id},
            "case_reference": f"{agency.creds.agency_id}-1",
            "lead_practitioner": {"name": "Lead", "contact": "0300 000 0000"},
        })  # fmt: skip
    for agency, days_ago, category in (
        (school, 20, "verbal_abuse"), (school, 9, "harassment"), (housing, 5, "written_threat"),
    ):  # fmt: skip
        agency.call("POST", "/incidents", 201, json={
            "household": {"address": address}, "occurred_on": str(TODAY - timedelta(days_ago)),
            "categories": [category], "summary": "Shouted at in the doorway",
            "police_reported": False,
        })  # fmt: skip
    counts = health.call("GET", f"/households/{household_id}/briefing", 200).get_json()[
        "incidents_last_12_months"]  # fmt: skip
    assert counts["by_category"] == {
        "harassment": 1, "intimidating_animals": 1, "verbal_abuse": 1, "weapons": 1,
        "written_threat": 1,
    }  # fmt: skip
    assert counts["agencies"] == 3
    assert "cumulative" in counts["cumulative_prompt"]

    # The issuer reviews (continue, needing the current ETag), then withdraws the warning.
    path = f"/warnings/{warning['id']}"
    social_care.call("PATCH", path, 428, json={"risk_level": "medium"})
    social_care.call("PATCH", path, 412, json={"risk_level": "medium"}, headers={"If-Match": '"7"'})
    health.call("PATCH", path, 403, json={"risk_level": "low"}, headers={"If-Match": etag})
    changed = social_care.call("PATCH", path, 200, json={"risk_level": "medium"},
                               headers={"If-Match": etag})  # fmt: skip
    assert changed.get_json()["version"] == 2 and changed.headers["ETag"] != etag
    reviewed = social_care.call(
        "POST",
        f"{path}/review",
        200,
        json={"outcome": "continue", "review_by": str(TODAY + timedelta(days=60))},
    ).get_json()
    assert (reviewed["version"], reviewed["review_by"]) == (3, str(TODAY + timedelta(days=60)))
    social_care.call(
        "POST", f"{path}/withdraw", 200, json={"reason": "Recorded on the wrong family"}
    )
    versions = social_care.call("GET", f"{path}/versions", 200).get_json()["items"]
    assert [v["change"] for v in versions] == ["published", "updated", "reviewed", "withdrawn"]

    # Withdrawn: gone from the flag view and the briefing, and from other agencies' reads.
    lookup = {"address": address}
    flag = health.call("POST", "/households/lookup", 200, json=lookup).get_json()["matches"][0][
        "flag"]  # fmt: skip
    assert flag["active_warnings"] is False and flag["risk_level"] is None
    briefing = health.call("GET", f"/households/{household_id}/briefing", 200).get_json()
    assert briefing["warnings"] == [] and briefing["restricted_warnings"] == []
    health.call("GET", path, 404)


def _months_ahead(months: int) -> date:
    from service.vocabulary import add_months

    return add_months(TODAY, months)
