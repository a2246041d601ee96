"""The core API's access policy as a table (issue 8, "Who may do what"): every route and
method, called as each kind of caller, must answer exactly the status in POLICY; no answer may
show what the caller may not read, and no refusal may leave a change behind."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from service.api.access import AccessPolicy, policy_of
from service.database import db
from service.oauth.scopes import API_SCOPES, HOUSEHOLDS_READ, INVOLVEMENTS_WRITE, WARNINGS_WRITE
from tests.conftest import build_app, dispose_app, fresh_database
from tests.factories import ACTING, bearer, create_agency, create_client, get_token
from tests.statements import Executed, executed_statements

# Each cell gets a fresh household with two warnings its issuer published: "open" (handling
# involved) and "restricted" (shared with one agency). The callers:
#   issuer      published both warnings; owns the involvement that the end route ends
#   involved    works with the household; its warning cells act on the open warning
#   uninvolved  holds every scope but works with no one here; acts on the open warning
#   excluded    works with the household; acts on the restricted warning, not shared with it
#   shared      works with the household; acts on the restricted warning, shared with it
#   no_scope    the issuer's agency, with a token holding every scope but the route's: 403
#   no_token    the acting-context headers and no token: 401
AGENCIES = ("issuer", "involved", "uninvolved", "excluded", "shared")
ACTS_ON = {"involved": "open", "uninvolved": "open"}  # everyone else: the restricted warning
READ, INVOLVE, WRITE = (HOUSEHOLDS_READ,), (INVOLVEMENTS_WRITE,), (WARNINGS_WRITE,)
EITHER = INVOLVE + READ  # GET /involvements takes either; its no_scope token lacks both

# fmt: off
# The status each agency must get, in the order of AGENCIES: issuer, involved, uninvolved,
# excluded, shared (and no_scope always 403, no_token always 401). Lists (GET /involvements,
# /incidents, /warnings) answer 200 with only what the caller may read.
POLICY = [
    # method  route under /api/v1                               scope    iss  inv  uni  exc  sha
    ("POST",  "/households/lookup",                             READ,    200, 200, 200, 200, 200),
    ("GET",   "/households/<household_id>",                     READ,    200, 200, 404, 200, 200),
    ("GET",   "/households/<household_id>/members",             READ,    200, 200, 404, 200, 200),
    ("POST",  "/households/<household_id>/members",             INVOLVE, 201, 201, 404, 201, 201),
    ("PATCH", "/households/<household_id>/members/<member_id>", INVOLVE, 200, 200, 404, 200, 200),
    ("GET",   "/households/<household_id>/briefing",            READ,    200, 200, 404, 200, 200),
    ("POST",  "/involvements",                                  INVOLVE, 201, 201, 201, 201, 201),
    ("POST",  "/involvements/<involvement_id>/end",             INVOLVE, 200, 404, 404, 404, 404),
    ("GET",   "/involvements",                                  EITHER,  200, 200, 200, 200, 200),
    ("POST",  "/incidents",                                     WRITE,   201, 201, 404, 201, 201),
    ("GET",   "/incidents",                                     READ,    200, 200, 404, 200, 200),
    ("POST",  "/warnings",                                      WRITE,   201, 201, 201, 201, 201),
    ("GET",   "/warnings",                                      READ,    200, 200, 200, 200, 200),
    ("GET",   "/warnings/<warning_id>",                         READ,    200, 200, 404, 404, 200),
    ("PATCH", "/warnings/<warning_id>",                         WRITE,   200, 403, 404, 404, 403),
    ("GET",   "/warnings/<warning_id>/versions",                READ,    200, 200, 404, 404, 200),
    ("POST",  "/warnings/<warning_id>/withdraw",                WRITE,   200, 403, 404, 404, 403),
    ("POST",  "/warnings/<warning_id>/close",                   WRITE,   200, 403, 404, 404, 403),
    ("POST",  "/warnings/<warning_id>/review",                  WRITE,   200, 403, 404, 404, 403),
    ("GET",   "/warnings/<warning_id>/acknowledgements",        READ,    200, 403, 404, 404, 403),
]
# fmt: on
CELLS = [
    pytest.param(method, route, scopes, caller, status, id=f"{method} {route} as {caller}")
    for method, route, scopes, *statuses in POLICY
    for caller, status in [
        *zip(AGENCIES, statuses, strict=True),
        ("no_scope", 403),
        ("no_token", 401),
    ]
]
DOMAIN_TABLES = ("household", "person", "involvement", "incident", "warning", "warning_share",
                 "warning_incident", "warning_version")  # fmt: skip
TODAY = date.today()
_numbers = itertools.count(1)


@dataclass
class World:
    """One app for the module, with each agency's real token from the token endpoint."""

    app: Flask
    http: FlaskClient
    agency: dict[str, str]  # caller -> agency id
    headers: dict[str, dict[str, str]]  # caller -> request headers
    no_scope: dict[tuple[str, ...], dict[str, str]]  # a route's scopes -> a token without them

    def call(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        return self.http.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def ok(self, caller: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, self.headers[caller], **kwargs)
        assert response.status_code in (200, 201), (path, response.get_json())
        return response


@dataclass
class Scene:
    """A fresh household as the callers know it, and what must not reach those denied it."""

    household: str
    address: dict[str, Any]
    member: str
    involvement: str  # the issuer's
    warnings: dict[str, str]  # "open" | "restricted" -> id
    etags: dict[str, str]
    restricted: list[str]  # the restricted warning's detail, categories and precautions
    everything: list[str]  # that, and the household's address, members, involvement, incidents


def _incident(summary: str, **extra: Any) -> dict[str, Any]:
    day = str(TODAY - timedelta(days=3))
    return {"occurred_on": day, "summary": summary, "police_reported": False, **extra}


def _warning(household: dict[str, str], summary: str, **extra: Any) -> dict[str, Any]:
    return {"household": household, "categories": ["verbal_abuse"], "risk_level": "medium",
            "incidents": [_incident(summary)], "children_in_household": True,
            "subject_informed": {"informed": True, "informed_on": str(TODAY)}, **extra}  # fmt: skip


def _involvement(household: dict[str, Any], case: str, lead: str) -> dict[str, Any]:
    return {"household": household, "case_reference": case,
            "lead_practitioner": {"name": lead, "contact": "0300 555 0100"}}  # fmt: skip


@pytest.fixture(scope="module")
def world(template_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("access-matrix")
    with fresh_database(template_database, workdir) as url:
        app = build_app(url, workdir)
        http = app.test_client()
        agency = {caller: create_agency(app, slug=f"matrix-{caller}") for caller in AGENCIES}
        headers = {"no_token": dict(ACTING)}
        for caller, agency_id in agency.items():
            creds = create_client(app, agency_id=agency_id, scopes=READ + INVOLVE + WRITE)
            headers[caller] = bearer(get_token(http, creds))
        no_scope = {}
        for scopes in {scopes for _, _, scopes, *_ in POLICY}:
            others = tuple(scope for scope in API_SCOPES if scope not in scopes)
            creds = create_client(app, agency_id=agency["issuer"], scopes=others)
            no_scope[scopes] = bearer(get_token(http, creds))
        try:
            yield World(app, http, agency, headers, no_scope)
        finally:
            dispose_app(app)


@pytest.fixture
def scene(world: World) -> Scene:
    """Build a fresh household through the API, as its issuer and the agencies working with it."""
    n = next(_numbers)
    address = {"line1": f"{n} Orchard Way", "line2": None, "town": "Maidstone",
               "postcode": "ME14 2AB"}  # fmt: skip
    case, lead, given, family = f"CSC-REF-{n:05}", f"Alex Morgan{n}", f"Darren{n}", f"Pike{n}"
    mine = world.ok("issuer", "POST", "/involvements",
                    json=_involvement({"address": address}, case, lead)).get_json()  # fmt: skip
    ref = {"household_id": mine["household_id"]}
    for caller in ("involved", "excluded", "shared"):
        world.ok(caller, "POST", "/involvements", json=_involvement(ref, f"{caller}{n}", "Lead"))
    member = world.ok("issuer", "POST", f"/households/{ref['household_id']}/members", json={
        "given_name": given, "family_name": family, "role": "adult"}).get_json()  # fmt: skip
    said, shown = f"Threatened on the doorstep {n}", f"Knife shown in the kitchen {n}"
    held, crime, concern = f"Held at the throat {n}", f"KE-26-{n:06}", f"Quill{n}"
    published = {
        "open": world.ok("issuer", "POST", "/warnings", json=_warning(ref, said)),
        "restricted": world.ok("issuer", "POST", "/warnings", json=_warning(
            ref, shown, handling="restricted", shared_with=[world.agency["shared"]],
            categories=["weapons"], precautions=["police_escort"],
            persons_of_concern=[{"family_name": concern}],
            incidents=[_incident(shown, description=held, police_reported=True,
                                 crime_reference=crime)])),
    }  # fmt: skip
    restricted = [shown, held, crime, concern, '"weapons"', '"police_escort"']
    return Scene(
        household=ref["household_id"], address=address, member=member["id"],
        involvement=mine["id"],
        warnings={name: r.get_json()["id"] for name, r in published.items()},
        etags={name: r.headers["ETag"] for name, r in published.items()},
        restricted=restricted,
        everything=[*restricted, address["line1"], given, family, case, lead, said],
    )  # fmt: skip


def _request(method: str, route: str, caller: str, s: Scene) -> tuple[str, dict[str, Any]]:
    """The cell's path and a valid request, so that its status can only reflect access."""
    target = ACTS_ON.get(caller, "restricted")
    path = (route.replace("<household_id>", s.household).replace("<member_id>", s.member)
            .replace("<involvement_id>", s.involvement)
            .replace("<warning_id>", s.warnings[target]))  # fmt: skip
    n = next(_numbers)
    household = {"household_id": s.household}
    elsewhere = {"address": {**s.address, "line1": f"{n} Other Road"}}
    reason = {"reason": "Recorded on the wrong family"}
    requests: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/households/lookup"): {"json": {"address": s.address}},
        ("POST", "/households/<household_id>/members"): {"json": {
            "given_name": "Mia", "family_name": "New", "role": "child"}},
        ("PATCH", "/households/<household_id>/members/<member_id>"): {
            "json": {"relationship": "stepfather"}},
        ("POST", "/involvements"): {"json": _involvement(elsewhere, f"NEW-{n}", "Sam Patel")},
        ("POST", "/involvements/<involvement_id>/end"): {"json": {"reason": "Case closed"}},
        ("GET", "/involvements"): {"query_string": household},
        ("POST", "/incidents"): {"json": {
            "household": household, "categories": ["verbal_abuse"], **_incident("Sworn at")}},
        ("GET", "/incidents"): {"query_string": household},
        ("POST", "/warnings"): {"json": _warning(household, "Spat at in the hallway")},
        ("GET", "/warnings"): {"query_string": household},
        ("PATCH", "/warnings/<warning_id>"): {
            "json": {"risk_level": "high"}, "headers": {"If-Match": s.etags[target]}},
        ("POST", "/warnings/<warning_id>/withdraw"): {"json": reason},
        ("POST", "/warnings/<warning_id>/close"): {"json": reason},
        ("POST", "/warnings/<warning_id>/review"): {"json": {
            "outcome": "continue", "review_by": str(TODAY + timedelta(days=60))}},
    }  # fmt: skip
    return path, requests.get((method, route), {})


def _hidden(caller: str, status: int, s: Scene) -> list[str]:
    """What an answer must not show: a refusal, nothing of the household; an answer, nothing
    the caller may not read (an agency involved but not shared with: the restricted warning)."""
    if status >= 400 or caller not in ("issuer", "shared", "involved", "excluded"):
        return s.everything
    return [] if caller in ("issuer", "shared") else s.restricted


def _domain_state(app: Flask) -> dict[str, list[str]]:
    """Every row of every domain table (the audit log aside: refusals are audited)."""
    with app.app_context():
        rows = {
            table: db.session.execute(text(f'SELECT * FROM "{table}"')) for table in DOMAIN_TABLES
        }
        return {table: sorted(repr(tuple(row)) for row in found) for table, found in rows.items()}


@pytest.mark.parametrize(("method", "route", "scopes", "caller", "expected"), CELLS)
def test_access(
    world: World,
    scene: Scene,
    method: str,
    route: str,
    scopes: tuple[str, ...],
    caller: str,
    expected: int,
) -> None:
    path, request = _request(method, route, caller, scene)
    headers = world.no_scope[scopes] if caller == "no_scope" else world.headers[caller]
    headers = {**headers, **request.pop("headers", {})}
    before = _domain_state(world.app) if expected >= 400 else None
    with executed_statements(world.app) as executed:
        response = world.call(method, path, headers, **request)

    assert response.status_code == expected, response.get_json()
    if caller == "no_scope":  # refused for its scope, before anything else
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    body = response.get_data(as_text=True)
    leaked = [secret for secret in _hidden(caller, expected, scene) if secret in body]
    assert leaked == [], f"shown to {caller}, which may not read it"
    if before is not None:  # a refused request changed nothing (e.g. no new warning version)
        assert _domain_state(world.app) == before
    if _policy(world.app, method, path).read_only:
        _assert_read_only(executed, world.app, f"{method} {route} as {caller}", expected < 400)


# A read-only route's statements on PostgreSQL run in autocommit (recording.begin_work), all
# but its writes: the audit append (one statement, whole by itself) may, and anything else it
# writes (notifications it queued) must run in a transaction, to commit with its entry.
_READ = re.compile(r"\s*(SELECT\b|BEGIN\b|COMMIT\b|ROLLBACK\b)", re.IGNORECASE)
_AUDIT_APPEND = re.compile(
    r"\s*(WITH head AS \(\s*UPDATE audit_head\b|UPDATE audit_head\b|INSERT INTO audit_)"
)
_QUEUED_WRITES = re.compile(r"\s*(INSERT INTO (notification|delivery)\b|SELECT pg_advisory_xact)")


def _assert_read_only(executed: list[Executed], app: Flask, cell: str, served: bool) -> None:
    changes = [sql for sql, _ in executed if not _READ.match(sql) and not _AUDIT_APPEND.match(sql)]
    assert [sql for sql in changes if not _QUEUED_WRITES.match(sql)] == [], cell
    assert [sql for sql, autocommit in executed if autocommit and _QUEUED_WRITES.match(sql)] == []
    if served and app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        assert any(autocommit for sql, autocommit in executed if _READ.match(sql)), cell


def _policy(app: Flask, method: str, path: str) -> AccessPolicy:
    endpoint, _ = app.url_map.bind("localhost").match(f"/api/v1{path}", method=method)
    policy = policy_of(app.view_functions[endpoint])
    assert policy is not None
    return policy


def test_the_table_covers_every_route_of_the_core_api(world: World) -> None:
    core = tuple(
        f"api_v1.{name}." for name in ("households", "involvements", "incidents", "warnings")
    )
    routed = {
        (method, rule.rule.removeprefix("/api/v1"))
        for rule in world.app.url_map.iter_rules()
        if rule.endpoint.startswith(core)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routed == {(method, route) for method, route, *_ in POLICY}
