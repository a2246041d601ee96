"""SQL statements per request do not grow with what the household holds (no N+1 queries).

Each test builds a small household (one of everything) and a large one (ten of everything:
members, warnings of each kind, incidents per warning, loose incidents, other agencies
involved), makes the same request about each, and counts the statements the engine executes
(``before_cursor_execute``). A request whose count is larger for the large household issues a
query per member, warning, incident or agency: an N+1, which PERFORMANCE.md says costs ~0.6 ms of
CPU per round trip. The failure message names the statements that repeat.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import count
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service import households, involvements, warnings
from service.database import db
from service.incidents import IncidentReport, record_incident
from service.models.household import Household
from service.models.notification import Notification
from service.unit_of_work import unit_of_work
from tests.factories import bearer, create_agency, create_client, get_token
from tests.statements import executed_statements

TODAY = date.today()
SMALL, LARGE = 1, 10
_uprns = count(100_000_000_001)
Request = tuple[str, str, Any]  # method, path, JSON body (or None)


@dataclass(frozen=True)
class Scene:
    """Who calls, and two households that differ only in how much they hold."""

    caller: str  # the calling agency: involved with both households
    issuer: str  # publishes involved and restricted-shared-with-caller warnings
    excluder: str  # publishes restricted warnings the caller may not read (flag only)
    headers: dict[str, str]


@dataclass(frozen=True)
class Built:
    household_id: str
    uprn: str
    warning_id: str  # one the caller may read in detail (restricted, shared with it)


def _scene(app: Flask, client: FlaskClient) -> Scene:
    caller = create_client(app, agency_id=create_agency(app, slug="caller-agency"))
    issuer = create_agency(app, slug="issuing-agency", name="Issuing Agency")
    excluder = create_agency(app, slug="excluding-agency", name="Excluding Agency")
    return Scene(caller.agency_id, issuer, excluder, bearer(get_token(client, caller)))


def _draft(members: list[Any], handling: str, shared_with: tuple[str, ...]) -> Any:
    return warnings.WarningDraft(
        categories=("verbal_abuse", "weapons"), risk_level="medium", children_in_household=True,
        precautions=("joint_visit", "no_lone_visit"),
        persons_of_concern=tuple({"member_id": m.id} for m in members)
        + ({"given_name": "Not", "family_name": "A-Member"},),
        handling=handling, shared_with=shared_with,
        subject_informed=warnings.SubjectInformed(True, informed_on=TODAY),
    )  # fmt: skip


def _reports(n: int, categories: tuple[str, ...] = ()) -> tuple[IncidentReport, ...]:
    return tuple(
        IncidentReport(occurred_on=TODAY - timedelta(days=day + 1), categories=categories,
                       summary=f"Shouted at on the doorstep ({day})", police_reported=True,
                       crime_reference=f"KE-26-{day:06d}")
        for day in range(n)
    )  # fmt: skip


def _involve(household: Household, agency_id: str) -> None:
    involvements.register_involvement(
        household, agency_id, case_reference="CASE-1", lead_practitioner="Alex Morgan",
        lead_contact="07700 900461", contact_route="duty desk first",
    )  # fmt: skip


def _members(household: Household, n: int) -> list[Any]:
    return [
        households.add_member(household, role=("child", "adult")[i % 2], given_name=f"Given{i}",
                              family_name="Pike", date_of_birth=date(1984, 5, 2),
                              relationship="relative", nhs_number=None)
        for i in range(n)
    ]  # fmt: skip


def _build(app: Flask, scene: Scene, n: int) -> Built:
    """A household with ``n`` of everything, each kind of warning ``n`` times."""
    uprn = str(next(_uprns))
    partners = [create_agency(app) for _ in range(n)]  # other agencies, involved
    with app.app_context(), unit_of_work():
        household = households.register_household(scene.issuer, uprn=uprn)
        for agency_id in (scene.caller, scene.issuer, scene.excluder, *partners):
            _involve(household, agency_id)
        members = _members(household, n)
        db.session.flush()
        kinds = (
            (scene.issuer, "involved", ()),
            (scene.issuer, "restricted", (scene.caller,)),
            (scene.excluder, "restricted", ()),
            (scene.caller, "involved", ()),
        )
        published = [
            warnings.publish_warning(household, issuer, _draft(members, handling, shared),
                                     warnings.Evidence(_reports(n)), TODAY)
            for _ in range(n) for issuer, handling, shared in kinds
        ]  # fmt: skip
        for agency_id in partners:  # low-level incidents no warning covers
            record_incident(household, agency_id, _reports(1, ("harassment",))[0], TODAY)
        db.session.flush()
        return Built(household.id, uprn, published[1].id)


def _count(app: Flask, client: FlaskClient, scene: Scene, request: Request) -> list[str]:
    method, path, body = request
    with executed_statements(app) as seen:
        response = client.open(path, method=method, headers=scene.headers, json=body)
    assert response.status_code == 200, (path, response.get_json())
    return [statement.sql for statement in seen]


def _shape(statement: str) -> str:
    """A statement's first line and its WHERE clause: enough to name it in a message."""
    flat = re.sub(r" IN \([^()]*\)", " IN (...)", " ".join(statement.split()))
    head, _, where = flat.partition(" WHERE ")
    return f"{head[:70]} ... WHERE {where[:110]}" if where else head[:120]


def _assert_bounded(small: list[str], large: list[str], request: str) -> None:
    if len(large) <= len(small):
        return
    extra = Counter(map(_shape, large)) - Counter(map(_shape, small))
    lines = "\n".join(f"  +{n} x {shape}" for shape, n in extra.most_common())
    pytest.fail(
        f"{request}: {len(small)} statements for a household with {SMALL} of everything, "
        f"{len(large)} with {LARGE}; these repeat per row (an N+1):\n{lines}"
    )


REQUESTS = {
    "look-up": lambda b: ("POST", "/api/v1/households/lookup", {"uprn": b.uprn}),
    "briefing": lambda b: ("GET", f"/api/v1/households/{b.household_id}/briefing", None),
    "warning read": lambda b: ("GET", f"/api/v1/warnings/{b.warning_id}", None),
    "warning list": lambda b: ("GET", f"/api/v1/warnings?household_id={b.household_id}", None),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_statements_per_request_do_not_grow_with_the_household(
    app: Flask, client: FlaskClient, name: str
) -> None:
    scene = _scene(app, client)
    small, large = _build(app, scene, SMALL), _build(app, scene, LARGE)
    make = REQUESTS[name]
    # Warm: first-request work is not per-row work; nor is the first read of a warning's
    # detail each day, which tells its issuer (one notification row per warning, in one batch).
    for built in (small, large):
        _count(app, client, scene, make(built))
    counted = [_count(app, client, scene, make(built)) for built in (small, large)]
    _assert_bounded(*counted, name)


# Round trips per request on PostgreSQL, where the audit append is one statement; SQLite's
# append takes three more. PERFORMANCE.md: each costs ~0.6-1 ms of CPU, so a request that gains
# one should be a deliberate change to this table, not an accident. A look-up is the token, the
# matches with their flags, and the audit append; a briefing is the token, the household with
# its members, the other agencies involved, its warnings (with their issuers) and incidents in
# one statement, and the audit append.
STATEMENTS = {"look-up": 3, "briefing": 3, "warning read": 7, "warning list": 7}
SQLITE_AUDIT_EXTRA = 3


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_statements_per_request_stay_within_their_budget(
    app: Flask, client: FlaskClient, name: str
) -> None:
    scene = _scene(app, client)
    built = _build(app, scene, SMALL)
    make = REQUESTS[name]
    _count(app, client, scene, make(built))  # warm
    seen = [
        s for s in _count(app, client, scene, make(built))
        if not s.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE"))
    ]  # fmt: skip
    with app.app_context():
        extra = SQLITE_AUDIT_EXTRA if db.engine.dialect.name == "sqlite" else 0
    budget = STATEMENTS[name] + extra
    shapes = "\n".join(f"  {_shape(s)}" for s in seen)
    assert len(seen) <= budget, f"{name}: {len(seen)} statements, budget {budget}:\n{shapes}"


def test_the_large_household_exercises_every_path(app: Flask, client: FlaskClient) -> None:
    """Guard the guard: the requests above really return ten of everything."""
    scene = _scene(app, client)
    built = _build(app, scene, LARGE)

    def get(request: Request) -> Any:
        method, path, body = request
        return client.open(path, method=method, headers=scene.headers, json=body).get_json()

    briefing = get(REQUESTS["briefing"](built))
    assert len(briefing["members"]) == LARGE
    assert len(briefing["warnings"]) == 3 * LARGE  # the excluder's are flag-only
    assert len(briefing["restricted_warnings"]) == LARGE
    assert all(len(w["incidents"]) == LARGE for w in briefing["warnings"])
    assert all(len(w["persons_of_concern"]) == LARGE + 1 for w in briefing["warnings"])
    assert len(briefing["other_agencies"]) == LARGE + 2
    assert briefing["incidents_last_12_months"]["cumulative_prompt"] is not None
    listed = get(REQUESTS["warning list"](built))["items"]
    assert len(listed) == 3 * LARGE
    read = get(REQUESTS["warning read"](built))
    assert len(read["incidents"]) == LARGE and read["handling"] == "restricted"
    (match,) = get(REQUESTS["look-up"](built))["matches"]
    assert match["flag"]["risk_level"] == "medium" and len(match["flag"]["issuers"]) == 3


# A publish: the token, the household, the caller's involvement (registered in the same
# statement if it has none: INSERT ... ON CONFLICT DO NOTHING, no read and no savepoint first),
# the incident, the warning, its version and its link to the incident in one statement (on
# SQLite, which has no INSERT inside WITH, one each: SQLITE_INSERT_EXTRA), the issuer's name
# for the answer, who else works with the household and their webhooks, the outbox's lock, one
# INSERT for all their notifications, and the audit append. Savepoints count here.
PUBLISH_STATEMENTS = 9
SQLITE_INSERT_EXTRA = 3


@pytest.mark.parametrize("involved_before", [False, True], ids=["registers", "involved"])
def test_publishing_stays_within_its_budget(
    app: Flask, client: FlaskClient, involved_before: bool
) -> None:
    scene = _scene(app, client)
    warm_uprn, uprn = str(next(_uprns)), str(next(_uprns))
    with app.app_context(), unit_of_work():
        for each in (warm_uprn, uprn):
            household = households.register_household(scene.issuer, uprn=each)
            for agency_id in (scene.issuer, *([scene.caller] if involved_before else [])):
                _involve(household, agency_id)

    def body(uprn: str) -> dict[str, Any]:
        return {
            "household": {"uprn": uprn}, "categories": ["verbal_abuse"], "risk_level": "medium",
            "precautions": ["joint_visit"], "children_in_household": False,
            "subject_informed": {"informed": True, "informed_on": str(TODAY)},
            "incidents": [{"occurred_on": str(TODAY), "summary": "Shouted at on the doorstep",
                           "police_reported": False}],
        }  # fmt: skip

    # Warm (first-request work is not per-publish work), on a household in the same state.
    warm = client.post("/api/v1/warnings", headers=scene.headers, json=body(warm_uprn))
    assert warm.status_code == 201, warm.get_json()
    joined = select(func.count()).where(Notification.type == "involvement.added")
    with app.app_context():
        joined_before = db.session.scalar(joined)
    with executed_statements(app) as seen:
        response = client.post("/api/v1/warnings", headers=scene.headers, json=body(uprn))
    assert response.status_code == 201, response.get_json()
    statements = [s.sql for s in seen if not s.sql.lstrip().upper().startswith("BEGIN")]
    with app.app_context():
        on_sqlite = db.engine.dialect.name == "sqlite"
        extra = SQLITE_AUDIT_EXTRA + SQLITE_INSERT_EXTRA if on_sqlite else 0
        # The issuer is told the caller joined only when the publish registered it.
        assert db.session.scalar(joined) == joined_before + (not involved_before)
    shapes = "\n".join(f"  {_shape(s)}" for s in statements)
    budget = PUBLISH_STATEMENTS + extra
    assert len(statements) <= budget, f"{len(statements)} statements, budget {budget}:\n{shapes}"
