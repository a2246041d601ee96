"""What fuzzing the API against its OpenAPI document found, kept as plain regression tests.

Each was a server error or an invalid request accepted (the document says what is valid).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.oauth.scopes import API_SCOPES
from tests.factories import ACTING, create_client, get_token

ADDRESS = {"line1": "14 Orchard Way", "postcode": "ME14 2AB"}
LEAD = {"name": "Alex Morgan", "contact": "07700 900461"}


class Caller:
    def __init__(self, app: Flask, http: FlaskClient) -> None:
        self.http = http
        token = get_token(http, create_client(app, scopes=API_SCOPES))
        self.headers = {"Authorization": f"Bearer {token}", **ACTING}

    def post(self, path: str, body: Any) -> Any:
        return self.http.post(f"/api/v1{path}", json=body, headers=self.headers)

    def get(self, path: str, **query: str) -> Any:
        return self.http.get(f"/api/v1{path}", query_string=query, headers=self.headers)

    def household(self) -> str:
        response = self.post("/involvements", {
            "household": {"address": ADDRESS}, "case_reference": "C-1", "lead_practitioner": LEAD,
        })  # fmt: skip
        assert response.status_code == 201
        return str(response.get_json()["household_id"])


@pytest.fixture
def caller(app: Flask, client: FlaskClient) -> Caller:
    return Caller(app, client)


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["errors"], response.get_json()


@pytest.mark.parametrize("uprn", ["0", "000000000000"])
def test_a_uprn_of_zeros_is_invalid_input_not_a_server_error(caller: Caller, uprn: str) -> None:
    _refused(caller.post("/households/lookup", {"uprn": uprn}), "uprn")
    declared = {"household": {"uprn": uprn}, "case_reference": "C-1", "lead_practitioner": LEAD}
    _refused(caller.post("/involvements", declared), "household.uprn")


@pytest.mark.parametrize("blank", ["!!!", "-", "'", " . "])
def test_names_and_lines_with_nothing_to_match_on_are_invalid_input(
    caller: Caller, blank: str
) -> None:
    address = {**ADDRESS, "line1": blank}
    _refused(caller.post("/households/lookup", {"address": address}), "address.line1")
    declared = {"household": {"address": address}, "case_reference": "C", "lead_practitioner": LEAD}
    _refused(caller.post("/involvements", declared), "household.address.line1")
    person = {"family_name": blank, "date_of_birth": "1984-05-02"}
    _refused(caller.post("/households/lookup", {"person": person}), "person.family_name")
    member = {"given_name": "Mia", "family_name": blank, "role": "child"}
    _refused(caller.post(f"/households/{caller.household()}/members", member), "family_name")


def test_text_that_is_not_unicode_is_invalid_input(caller: Caller) -> None:
    household_id = caller.household()
    raw = '{"given_name": "Mia\\ud800", "family_name": "Pike", "role": "child"}'
    response = caller.http.post(
        f"/api/v1/households/{household_id}/members",
        data=raw, content_type="application/json", headers=caller.headers,
    )  # fmt: skip
    _refused(response, "given_name")


@pytest.mark.parametrize("written", ["19840502", "1984-W18-3", "1984-123"])
def test_dates_are_written_yyyy_mm_dd_only(caller: Caller, written: str) -> None:
    person = {"family_name": "Pike", "date_of_birth": written}
    _refused(caller.post("/households/lookup", {"person": person}), "person.date_of_birth")
    _refused(caller.get("/warnings", review_due_before=written), "review_due_before")


@pytest.mark.parametrize("truthy", [1, 0, "yes", "true", "on"])
def test_booleans_are_json_booleans(caller: Caller, truthy: Any) -> None:
    household_id = caller.household()
    incident = {"household": {"household_id": household_id}, "occurred_on": "2026-01-02",
                "categories": ["verbal_abuse"], "summary": "Shouted at",
                "police_reported": truthy}  # fmt: skip
    _refused(caller.post("/incidents", incident), "police_reported")


@pytest.mark.parametrize("limit", ["1_0", " 5", "+5", "\u0661", "5.0"])
def test_query_integers_are_decimal_digits(caller: Caller, limit: str) -> None:
    _refused(caller.get("/warnings", limit=limit), "limit")
    _refused(caller.get("/audit/events", limit=limit), "limit")


def test_warnings_filter_by_status(caller: Caller) -> None:
    for status in ("active", "inactive", "entered-in-error"):
        assert caller.get("/warnings", status=status).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00+14:00|w-1",  # before the first moment in UTC
        "9999-12-31T23:59:59-14:00|w-1",  # after the last
        "2026-01-01T00:00:00+00:00|\x00",  # no id of ours (PostgreSQL refuses NUL)
        "2026-01-01T00:00:00+00:00|" + "x" * 65,
    ],
)
def test_a_forged_cursor_is_invalid_input_not_a_server_error(caller: Caller, raw: str) -> None:
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    _refused(caller.get("/warnings", cursor=cursor), "cursor")


def test_moments_are_rfc_3339(caller: Caller) -> None:
    for written in ("2026-01-01 09:00:00+00:00", "2026-01-01T09Z", "20260101T090000Z"):
        _refused(caller.get("/audit/events", since=written), "since")
    assert caller.get("/audit/events", since="2026-01-01T09:00:00+01:00").status_code == 200
