"""The auditors' API over HTTP: who may see which entries, filters, pages, reports, exports.

Reads of households by practitioners are appended with the real recording function
(``service.audit.append.append``) at chosen times, as the HTTP path would record them; the
auditors' side always goes through the real API with real tokens.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.test import TestResponse

from service.audit.append import append
from service.audit.chain import format_timestamp
from service.audit.entry import PendingEntry
from service.audit.export import EVENT_FIELDS
from service.database import db
from service.oauth.scopes import AUDIT_READ, AUDIT_READ_ALL, HOUSEHOLDS_READ
from tests.audit.helpers import audit_entries, last_entry
from tests.conftest import MakeApp
from tests.factories import (
    ClientCredentials,
    auditor_headers,
    bearer,
    create_agency,
    create_client,
    create_household,
    get_token,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday morning, long before the tests run
READ = "household:read"


# --- set-up helpers -------------------------------------------------------------------------


def auditor(
    app: Flask,
    client: FlaskClient,
    *,
    scopes: tuple[str, ...] = (AUDIT_READ,),
    agency_id: str | None = None,
) -> tuple[ClientCredentials, str]:
    """Create an auditing client (its agency too, unless given) and return it with a token."""
    creds = create_client(app, agency_id=agency_id, scopes=scopes)
    return creds, get_token(client, creds)


def record_read(
    app: Flask,
    *,
    agency_id: str,
    household_id: str,
    at: datetime = T0,
    practitioner: str = "sw-0042",
    purpose: str = "case_work",
    outcome: str = "allowed",
    status: int = 200,
) -> int:
    """Append a practitioner's read of a household at ``at``, as the API records one."""
    entry = PendingEntry(
        action=READ, outcome=outcome, status=status, agency_id=agency_id,
        client_id=f"{agency_id}.case-system", practitioner=practitioner, purpose=purpose,
        request_id=uuid.uuid4().hex, source_address="192.0.2.10",
    )  # fmt: skip
    entry.target("household", household_id)
    with app.app_context():
        seq = append(entry, now=at)
        db.session.commit()
    return seq


def latest_seq(app: Flask) -> int:
    return int(last_entry(app)["seq"])


def events(client: FlaskClient, token: str, **params: Any) -> TestResponse:
    return client.get("/api/v1/audit/events", headers=auditor_headers(token), query_string=params)


def listed(client: FlaskClient, token: str, **params: Any) -> list[int]:
    """The seqs one page of /events lists (which must succeed)."""
    response = events(client, token, limit=500, **params)
    assert response.status_code == 200, response.get_json()
    return [item["seq"] for item in response.get_json()["items"]]


def flags_by_seq(client: FlaskClient, token: str, **params: Any) -> dict[int, list[str]]:
    response = events(client, token, limit=500, **params)
    assert response.status_code == 200, response.get_json()
    return {item["seq"]: item["flags"] for item in response.get_json()["items"]}


def access_report(client: FlaskClient, token: str, household_id: str) -> TestResponse:
    path = f"/api/v1/audit/households/{household_id}/access-report"
    return client.get(path, headers=auditor_headers(token))


def export(client: FlaskClient, token: str, **params: Any) -> TestResponse:
    return client.get(
        "/api/v1/audit/events/export", headers=auditor_headers(token), query_string=params
    )


def jsonl_rows(response: TestResponse) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def newest_first(seqs: set[int] | list[int]) -> list[int]:
    return sorted(seqs, reverse=True)


# --- who sees what --------------------------------------------------------------------------


def test_audit_read_sees_its_own_agencys_entries_only(app: Flask, client: FlaskClient) -> None:
    other = create_client(app)
    other_token = get_token(client, other)
    client.get("/api/v1/me", headers=bearer(other_token))
    creds, token = auditor(app, client)
    own = {latest_seq(app)}
    client.get("/api/v1/me", headers=auditor_headers(token))
    own.add(latest_seq(app))
    client.get("/api/v1/agencies", headers=bearer(other_token))
    client.get("/api/v1/me")  # nobody's: no token
    assert listed(client, token) == newest_first(own)


def test_audit_read_sees_entries_about_households_it_works_with(
    app: Flask, client: FlaskClient
) -> None:
    creds, token = auditor(app, client)
    own = {latest_seq(app)}
    reader, lead = create_agency(app), create_agency(app)
    ours = create_household(app, created_by=creds.agency_id, involved=(creds.agency_id,))
    theirs = create_household(app, created_by=reader, involved=(reader,))
    _, lead_token = auditor(app, client, scopes=(AUDIT_READ_ALL,), agency_id=lead)
    assert access_report(client, lead_token, ours).status_code == 200
    # The partnership auditor's look-up is about our household, but an investigation must not
    # be visible to those it may concern: other agencies' audit:* entries stay hidden.
    auditors_lookup = latest_seq(app)
    about_ours = {record_read(app, agency_id=reader, household_id=ours)}
    record_read(app, agency_id=reader, household_id=theirs)
    assert access_report(client, lead_token, theirs).status_code == 200
    seen = listed(client, token)
    assert seen == newest_first(own | about_ours)
    assert auditors_lookup not in seen


def test_audit_read_all_sees_every_entry(app: Flask, client: FlaskClient) -> None:
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,))
    record_read(app, agency_id=agency, household_id=household)
    client.get("/api/v1/me")
    get_token(client, create_client(app))
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    existing = latest_seq(app)
    assert listed(client, token) == list(range(existing, 0, -1))


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audit/events",
        "/api/v1/audit/events/export",
        "/api/v1/audit/verify",
        # A fixed id: a random one would name the test differently in each xdist worker.
        "/api/v1/audit/households/8a0f4c1e-3b7d-4e2a-9c5f-1d6e2b4a7c90/access-report",
    ],
)
def test_token_without_an_audit_scope_is_forbidden(
    app: Flask, client: FlaskClient, path: str
) -> None:
    _, token = auditor(app, client, scopes=(HOUSEHOLDS_READ,))
    response = client.get(path, headers=auditor_headers(token))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"].endswith("insufficient-scope")


# --- filters and pages ----------------------------------------------------------------------


@pytest.fixture
def mixed_log(app: Flask, client: FlaskClient) -> dict[str, Any]:
    """A log with two agencies' reads of two households, denials and API calls."""
    first, second = create_agency(app), create_agency(app)
    one = create_household(app, created_by=first, involved=(first, second))
    two = create_household(app, created_by=second, involved=(second,))
    record_read(app, agency_id=first, household_id=one, practitioner="sw-1")
    record_read(app, agency_id=second, household_id=two, practitioner="hv-2", purpose="pre_visit")
    record_read(app, agency_id=first, household_id=two, practitioner="hv-2",
                outcome="denied", status=403)  # fmt: skip
    record_read(app, agency_id=second, household_id=one, practitioner="sw-1")
    api_user = create_client(app, agency_id=first)
    client.get("/api/v1/agencies", headers=bearer(get_token(client, api_user)))
    client.get("/api/v1/me")
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    return {"first": first, "second": second, "one": one, "two": two, "token": token}


Predicate = Callable[[dict[str, Any], dict[str, Any]], bool]


@pytest.mark.parametrize(
    ("name", "value", "matches"),
    [
        ("agency_id", lambda log: log["first"], lambda e, log: e["agency_id"] == log["first"]),
        ("practitioner", lambda log: "hv-2", lambda e, log: e["practitioner"] == "hv-2"),
        ("action", lambda log: READ, lambda e, log: e["action"] == READ),
        ("outcome", lambda log: "denied", lambda e, log: e["outcome"] == "denied"),
        ("household_id", lambda log: log["two"],
         lambda e, log: log["two"] in e["targets"].get("household", [])),
    ],
)  # fmt: skip
def test_events_filter_by(
    app: Flask,
    client: FlaskClient,
    mixed_log: dict[str, Any],
    name: str,
    value: Callable[[dict[str, Any]], str],
    matches: Predicate,
) -> None:
    everything = audit_entries(app)
    expected = newest_first([e["seq"] for e in everything if matches(e, mixed_log)])
    assert 0 < len(expected) < len(everything)  # the filter has something to leave out
    assert listed(client, mixed_log["token"], **{name: value(mixed_log)}) == expected


def test_events_since_is_inclusive_and_until_exclusive(app: Flask, client: FlaskClient) -> None:
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,))
    times = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)]
    seqs = [record_read(app, agency_id=agency, household_id=household, at=t) for t in times]
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    since = times[1].astimezone(timezone(timedelta(hours=2))).isoformat()  # any zone will do
    found = listed(client, token, since=since, until=times[3].isoformat())
    assert found == [seqs[2], seqs[1]]


def test_events_pages_newest_first_without_gaps_or_duplicates(
    app: Flask, client: FlaskClient
) -> None:
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,))
    for minute in range(9):
        record_read(app, agency_id=agency, household_id=household,
                    at=T0 + timedelta(minutes=minute))  # fmt: skip
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    existing = latest_seq(app)
    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        params = {"limit": 4} if cursor is None else {"limit": 4, "cursor": cursor}
        page = events(client, token, **params).get_json()
        pages.append([item["seq"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert all(len(page) <= 4 for page in pages)
    assert [seq for page in pages for seq in page] == list(range(existing, 0, -1))


def test_unknown_query_parameter_is_refused_naming_it(app: Flask, client: FlaskClient) -> None:
    _, token = auditor(app, client)
    response = events(client, token, colour="red")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert "colour" in problem["errors"]
    assert "colour" in problem["detail"]


@pytest.mark.parametrize("since", ["yesterday", "2025-03-03T09:00:00", "2025-13-45T09:00:00Z"])
def test_malformed_since_is_refused_naming_it(app: Flask, client: FlaskClient, since: str) -> None:
    _, token = auditor(app, client)
    response = events(client, token, since=since)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert list(problem["errors"]) == ["since"]
    assert "since" in problem["detail"]


# --- access reports and unusual access ------------------------------------------------------


def test_access_report_groups_accesses_by_agency_and_practitioner(
    app: Flask, client: FlaskClient
) -> None:
    creds, token = auditor(app, client)
    health, police = create_agency(app), create_agency(app)
    household = create_household(app, created_by=health, started_at=T0 - timedelta(days=30),
                                 involved=(creds.agency_id, health, police))  # fmt: skip
    hour = timedelta(hours=1)
    record_read(app, agency_id=health, household_id=household, practitioner="hv-1",
                purpose="pre_visit", at=T0)  # fmt: skip
    record_read(
        app, agency_id=health, household_id=household, practitioner="hv-2", at=T0 + hour / 2
    )
    record_read(app, agency_id=health, household_id=household, practitioner="hv-1", at=T0 + hour)
    record_read(app, agency_id=police, household_id=household, practitioner="pc-9",
                purpose="safeguarding_enquiry", at=T0 + 2 * hour)  # fmt: skip
    record_read(app, agency_id=police, household_id=household, practitioner="pc-9",
                outcome="denied", status=403, at=T0 + 3 * hour)  # fmt: skip
    response = access_report(client, token, household)
    assert response.status_code == 200
    assert response.get_json() == {
        "household_id": household,
        "accessed_by": [
            {"agency_id": police, "practitioner": "pc-9", "purposes": ["safeguarding_enquiry"],
             "actions": [READ], "first_access": format_timestamp(T0 + 2 * hour),
             "last_access": format_timestamp(T0 + 2 * hour), "accesses": 1, "flags": []},
            {"agency_id": health, "practitioner": "hv-1", "purposes": ["case_work", "pre_visit"],
             "actions": [READ], "first_access": format_timestamp(T0),
             "last_access": format_timestamp(T0 + hour), "accesses": 2, "flags": []},
            {"agency_id": health, "practitioner": "hv-2", "purposes": ["case_work"],
             "actions": [READ], "first_access": format_timestamp(T0 + hour / 2),
             "last_access": format_timestamp(T0 + hour / 2), "accesses": 1, "flags": []},
        ],
    }  # fmt: skip


def test_access_report_for_an_uninvolved_audit_read_caller_is_not_found(
    app: Flask, client: FlaskClient
) -> None:
    _, token = auditor(app, client)
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,))
    record_read(app, agency_id=agency, household_id=household)
    response = access_report(client, token, household)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert agency not in response.get_data(as_text=True)


def test_read_before_the_involvement_started_is_flagged_no_involvement(
    app: Flask, client: FlaskClient
) -> None:
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,), started_at=T0)
    early = record_read(app, agency_id=agency, household_id=household, practitioner="sw-1",
                        at=T0 - timedelta(hours=1))  # fmt: skip
    later = record_read(app, agency_id=agency, household_id=household, practitioner="sw-2",
                        at=T0 + timedelta(hours=1))  # fmt: skip
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    flags = flags_by_seq(client, token, household_id=household)
    assert (flags[early], flags[later]) == (["no_involvement"], [])
    lines = access_report(client, token, household).get_json()["accessed_by"]
    assert {line["practitioner"]: line["flags"] for line in lines} == {
        "sw-1": ["no_involvement"],
        "sw-2": [],
    }


def test_read_by_a_never_involved_agency_is_flagged_no_involvement(
    app: Flask, client: FlaskClient
) -> None:
    involved, stranger = create_agency(app), create_agency(app)
    household = create_household(app, created_by=involved, involved=(involved,),
                                 started_at=T0 - timedelta(days=1))  # fmt: skip
    normal = record_read(app, agency_id=involved, household_id=household)
    nosy = record_read(app, agency_id=stranger, household_id=household)
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    flags = flags_by_seq(client, token, household_id=household)
    assert (flags[normal], flags[nosy]) == ([], ["no_involvement"])


def test_emergency_read_is_flagged_emergency(app: Flask, client: FlaskClient) -> None:
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,),
                                 started_at=T0 - timedelta(days=1))  # fmt: skip
    routine = record_read(app, agency_id=agency, household_id=household, practitioner="sw-1")
    urgent = record_read(app, agency_id=agency, household_id=household, practitioner="sw-2",
                         purpose="emergency")  # fmt: skip
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    flags = flags_by_seq(client, token, household_id=household)
    assert (flags[routine], flags[urgent]) == ([], ["emergency"])
    lines = access_report(client, token, household).get_json()["accessed_by"]
    assert {line["practitioner"]: line["flags"] for line in lines} == {
        "sw-1": [],
        "sw-2": ["emergency"],
    }


def _households_worked_with(app: Flask, agency: str, count: int) -> list[str]:
    return [
        create_household(app, created_by=agency, involved=(agency,),
                         started_at=T0 - timedelta(days=1))
        for _ in range(count)
    ]  # fmt: skip


def test_more_than_n_households_in_an_hour_is_flagged_bulk_browsing(make_app: MakeApp) -> None:
    app = make_app(UNUSUAL_READS_PER_HOUR=3)
    client = app.test_client()
    agency = create_agency(app)
    homes = _households_worked_with(app, agency, 4)
    browsing = [
        record_read(app, agency_id=agency, household_id=home, practitioner="sw-1",
                    at=T0 + timedelta(minutes=10 * n))
        for n, home in enumerate(homes)
    ]  # fmt: skip
    colleague = [
        record_read(app, agency_id=agency, household_id=home, practitioner="sw-2",
                    at=T0 + timedelta(minutes=10 * n))
        for n, home in enumerate(homes[:3])
    ]  # fmt: skip
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    flags = flags_by_seq(client, token, action=READ)
    assert [flags[seq] for seq in browsing] == [[], [], [], ["bulk_browsing"]]
    assert [flags[seq] for seq in colleague] == [[], [], []]
    lines = access_report(client, token, homes[3]).get_json()["accessed_by"]
    assert [line["flags"] for line in lines] == [["bulk_browsing"]]


def test_reads_spread_over_more_than_an_hour_are_not_bulk_browsing(make_app: MakeApp) -> None:
    app = make_app(UNUSUAL_READS_PER_HOUR=3)
    client = app.test_client()
    agency = create_agency(app)
    homes = _households_worked_with(app, agency, 5)
    for n, home in enumerate(homes):  # five households, but never four within an hour
        record_read(app, agency_id=agency, household_id=home, practitioner="sw-1",
                    at=T0 + timedelta(minutes=25 * n))  # fmt: skip
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    assert set(map(tuple, flags_by_seq(client, token, action=READ).values())) == {()}


def test_unusual_filter_returns_exactly_the_flagged_entries(
    app: Flask, client: FlaskClient
) -> None:
    agency, stranger = create_agency(app), create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,),
                                 started_at=T0 - timedelta(days=1))  # fmt: skip
    record_read(app, agency_id=agency, household_id=household)
    nosy = record_read(app, agency_id=stranger, household_id=household)
    urgent = record_read(app, agency_id=agency, household_id=household, purpose="emergency")
    record_read(app, agency_id=stranger, household_id=household, outcome="denied", status=403)
    record_read(app, agency_id=agency, household_id=household, at=T0 + timedelta(hours=1))
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    flagged = {seq for seq, flags in flags_by_seq(client, token).items() if flags}
    assert flagged == {nosy, urgent}
    assert listed(client, token, unusual="true") == newest_first(flagged)


# --- exports --------------------------------------------------------------------------------


@pytest.fixture
def reads_log(app: Flask, client: FlaskClient) -> dict[str, Any]:
    """Five household reads among other entries, and an audit lead's token."""
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,))
    reads = [
        record_read(app, agency_id=agency, household_id=household, at=T0 + timedelta(minutes=n))
        for n in range(5)
    ]
    client.get("/api/v1/me")
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    return {"reads": reads, "token": token}


def test_export_jsonl_rows_match_the_total_count(
    app: Flask, client: FlaskClient, reads_log: dict[str, Any]
) -> None:
    response = export(client, reads_log["token"], action=READ, format="jsonl")
    assert response.status_code == 200
    assert response.mimetype == "application/jsonl"
    rows = jsonl_rows(response)
    assert response.headers["X-Total-Count"] == str(len(rows))
    assert [row["seq"] for row in rows] == newest_first(reads_log["reads"])
    assert tuple(rows[0]) == EVENT_FIELDS


def test_export_csv_rows_match_the_total_count(
    app: Flask, client: FlaskClient, reads_log: dict[str, Any]
) -> None:
    response = export(client, reads_log["token"], action=READ, format="csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(table[0]) == EVENT_FIELDS
    assert response.headers["X-Total-Count"] == str(len(table) - 1)
    assert [int(row[0]) for row in table[1:]] == newest_first(reads_log["reads"])
    assert json.loads(table[1][EVENT_FIELDS.index("targets")])["household"]


def test_export_without_filters_counts_exactly_the_rows_it_sends(
    app: Flask, client: FlaskClient, reads_log: dict[str, Any]
) -> None:
    existing = latest_seq(app)
    response = export(client, reads_log["token"])
    rows = jsonl_rows(response)
    assert response.headers["X-Total-Count"] == str(len(rows))
    assert [row["seq"] for row in rows] == list(range(existing, 0, -1))


def test_export_batches_follow_x_next_cursor_without_gaps(
    app: Flask, client: FlaskClient, reads_log: dict[str, Any]
) -> None:
    batches: list[list[int]] = []
    params: dict[str, Any] = {"action": READ, "limit": 2}
    while True:
        response = export(client, reads_log["token"], **params)
        batches.append([row["seq"] for row in jsonl_rows(response)])
        assert response.headers["X-Total-Count"] == str(len(batches[-1]))
        if "X-Next-Cursor" not in response.headers:
            break
        params["cursor"] = response.headers["X-Next-Cursor"]
        assert len(batches) < 10, "the batches do not end"
    assert all(len(batch) <= 2 for batch in batches)
    assert [seq for batch in batches for seq in batch] == newest_first(reads_log["reads"])


def test_export_request_is_audited_with_what_it_returned(
    app: Flask, client: FlaskClient, reads_log: dict[str, Any]
) -> None:
    response = client.get(
        "/api/v1/audit/events/export", query_string={"action": READ, "format": "csv"},
        headers={**auditor_headers(reads_log["token"]), "X-Request-Id": "export-1"},
    )  # fmt: skip
    assert response.status_code == 200
    response.get_data()
    entry = last_entry(app)
    assert (entry["action"], entry["outcome"], entry["status"]) == ("audit:export", "allowed", 200)
    assert entry["request_id"] == "export-1"
    assert sorted(entry["returned"]["audit_entry"]) == sorted(map(str, reads_log["reads"]))


def test_export_keeps_to_the_audit_read_view(app: Flask, client: FlaskClient) -> None:
    creds, token = auditor(app, client)
    own = {latest_seq(app)}
    other = create_agency(app)
    ours = create_household(app, created_by=other, involved=(other, creds.agency_id))
    theirs = create_household(app, created_by=other, involved=(other,))
    own.add(record_read(app, agency_id=other, household_id=ours))
    record_read(app, agency_id=other, household_id=theirs)
    rows = jsonl_rows(export(client, token))
    assert [row["seq"] for row in rows] == newest_first(own)


# --- verification ---------------------------------------------------------------------------


def test_verify_reports_ok_for_every_entry_so_far(app: Flask, client: FlaskClient) -> None:
    agency = create_agency(app)
    household = create_household(app, created_by=agency, involved=(agency,))
    record_read(app, agency_id=agency, household_id=household)
    client.get("/api/v1/me")
    _, token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    before = len(audit_entries(app))
    response = client.get("/api/v1/audit/verify", headers=auditor_headers(token))
    assert response.status_code == 200
    report = response.get_json()
    assert (report["ok"], report["checked"], report["head_seq"]) == (True, before, before)
    assert report["problem"] is None
    assert len(audit_entries(app)) == before + 1  # its own entry commits after the walk


def test_verify_needs_audit_read_all(app: Flask, client: FlaskClient) -> None:
    _, token = auditor(app, client)
    response = client.get("/api/v1/audit/verify", headers=auditor_headers(token))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert last_entry(app)["outcome"] == "denied"


def test_rows_slipped_into_the_reference_index_change_nothing(
    app: Flask, client: FlaskClient
) -> None:
    # The index (audit_ref) is not hash-chained; only what the chained entries say may count.
    creds, token = auditor(app, client)
    other = create_agency(app)
    ours = create_household(app, created_by=creds.agency_id, involved=(creds.agency_id,))
    theirs = create_household(
        app, created_by=other, involved=(other,), started_at=T0 - timedelta(days=1)
    )
    unrelated = record_read(app, agency_id=other, household_id=theirs)
    with app.app_context():
        for ref_type, ref_id in (("household", ours), ("warning", "w-123")):
            db.session.execute(
                text("INSERT INTO audit_ref (entry_seq, ref_type, ref_id, relation) "
                     "VALUES (:seq, :type, :id, 'target')"),
                {"seq": unrelated, "type": ref_type, "id": ref_id},
            )  # fmt: skip
        db.session.commit()
    assert unrelated not in listed(client, token)
    _, lead_token = auditor(app, client, scopes=(AUDIT_READ_ALL,))
    assert unrelated not in listed(client, lead_token, warning_id="w-123")
    assert unrelated not in listed(client, lead_token, household_id=ours)
    # Read by an involved agency: nothing to flag, whatever the index now claims.
    assert flags_by_seq(client, lead_token).get(unrelated) == []
