"""The OpenAPI document: valid OpenAPI 3.1, and true to the API (schemathesis, in process).

Schemathesis generates requests for every operation from the document, valid ones and invalid
ones, and sends them to the app in process with a real token of an agency involved with a
seeded household. Checked: no server error; every status, content type, header and body as
documented; no invalid request accepted.
"""

from __future__ import annotations

import atexit
import json
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from marshmallow import fields
from marshmallow.validate import URL, Length, OneOf, Range, Regexp, Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from sqlalchemy import create_engine

from service.migrate import upgrade
from service.oauth.scopes import ALL_SCOPES, API_SCOPES
from tests.conftest import MakeApp, build_app, dispose_app
from tests.factories import ACTING, create_agency, create_client, get_token

DOCUMENT = "/api/v1/openapi.json"
EXAMPLES = 100
TODAY = date.today()
# What schemathesis checks of every response.
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
)
# An invalid request is rejected when it gets one of these (never 2xx, never 5xx).
REJECTIONS = ["400", "401", "403", "404", "405", "409", "412", "413", "415", "428"]
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",  # valid and invalid requests
            "max-examples": EXAMPLES,
            "deterministic": True,  # the same requests on every run
            "allow-x00": False,  # the API refuses NUL characters anywhere (see the document)
        },
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "negative_data_rejection": {"expected-statuses": REJECTIONS},
            "missing_required_header": {"expected-statuses": ["400", "401", "428"]},
        },
    }
)


def _document(client: FlaskClient) -> dict[str, Any]:
    response = client.get(DOCUMENT)
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def test_the_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = _document(client)
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)


def test_the_document_declares_what_the_code_enforces(client: FlaskClient) -> None:
    document = _document(client)
    flow = document["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    assert set(flow["scopes"]) == set(ALL_SCOPES)
    assert all(description.strip() for description in flow["scopes"].values())
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    for (method, path), operation in operations.items():
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            if parameter["in"] == "path":
                assert parameter["schema"]["pattern"] == "^[A-Za-z0-9._:-]{1,64}$", path
        has_body = "requestBody" in operation
        assert ("415" in operation["responses"]) == has_body, (method, path)
        assert ("413" in operation["responses"]) == has_body, (method, path)
    for created in ("/api/v1/involvements", "/api/v1/incidents", "/api/v1/warnings",
                    "/api/v1/households/{household_id}/members"):  # fmt: skip
        assert "201" in operations["POST", created]["responses"], created
        assert "200" not in operations["POST", created]["responses"], created
    for method, path in (
        ("GET", "/api/v1/warnings/{warning_id}"),
        ("POST", "/api/v1/warnings"),
        ("PATCH", "/api/v1/warnings/{warning_id}"),
    ):
        success = next(r for s, r in operations[method, path]["responses"].items() if s < "300")
        assert success["headers"]["ETag"]["required"] is True
    patch = operations["PATCH", "/api/v1/warnings/{warning_id}"]
    assert {"412", "428"} <= set(patch["responses"])
    assert any(p["name"] == "If-Match" and p["required"] for p in patch["parameters"])
    limit = next(
        p for p in operations["GET", "/api/v1/warnings"]["parameters"] if p["name"] == "limit"
    )
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)
    status = next(
        p for p in operations["GET", "/api/v1/warnings"]["parameters"] if p["name"] == "status"
    )
    assert status["schema"]["enum"] == ["active", "inactive", "entered-in-error"]


def test_query_enums_and_ranges_are_the_ones_the_code_enforces(
    app: Flask, client: FlaskClient
) -> None:
    """Every listed value and both ends of every range are accepted; one past either end, and
    a value not listed, are refused."""
    token = get_token(client, create_client(app, scopes=API_SCOPES))
    headers = {"Authorization": f"Bearer {token}", **ACTING}
    checked = 0
    for path, item in _document(client)["paths"].items():
        operation = item.get("get")
        if operation is None or "{" in path:
            continue
        required = {p["name"]: "x" for p in operation["parameters"]
                    if p["in"] == "query" and p.get("required")}  # fmt: skip
        for parameter in operation["parameters"]:
            name, declared = parameter["name"], parameter["schema"]
            if parameter["in"] != "query":
                continue
            good: list[Any] = list(declared.get("enum", ()))
            bad: list[Any] = ["not-one-of-them"] if good else []
            if "minimum" in declared:
                good += [declared["minimum"], declared["maximum"]]
                bad += [declared["minimum"] - 1, declared["maximum"] + 1, "1.5", "ten"]
            for value, accepted in [(v, True) for v in good] + [(v, False) for v in bad]:
                query = {**required, name: value}
                status = client.get(path, query_string=query, headers=headers).status_code
                assert (status < 300) == accepted, (path, name, value, status)
                checked += 1
    assert checked > 20


def _operations_with_views(app: Flask, document: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """Yield (view, operation) for every operation of the document."""
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                yield app.view_functions[rule.endpoint], operation


def test_security_lists_each_of_a_routes_scopes_as_an_alternative(
    app: Flask, client: FlaskClient
) -> None:
    """A route takes any one of its scopes; OpenAPI needs every scope of one requirement, so
    each scope is a requirement of its own, and each is one the token endpoint grants."""
    document = _document(client)
    granted = set(document["components"]["securitySchemes"]["oauth2"]["flows"]
                  ["clientCredentials"]["scopes"])  # fmt: skip
    either = 0
    for view, operation in _operations_with_views(app, document):
        expected = [{"oauth2": [scope]} for scope in view.access_policy.scopes]
        assert operation["security"] == expected, operation["summary"]
        assert set(view.access_policy.scopes) <= granted
        either += len(expected) > 1
    assert either >= 4  # the auditors' routes take audit:read or audit:read:all


def test_413_names_the_body_limit_the_app_enforces(make_app: MakeApp) -> None:
    app = make_app(MAX_CONTENT_LENGTH=4096)
    described = {
        operation["responses"]["413"]["description"]
        for item in _document(app.test_client())["paths"].values()
        for operation in item.values()
        if "413" in operation["responses"]
    }
    assert described == {"Request body too large: over 4096 bytes"}


def test_every_operation_declares_the_429_of_the_rate_limits(client: FlaskClient) -> None:
    # Every API request counts against a limit; over it, a 429 problem says when to retry.
    document = _document(client)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            refused = operation["responses"].get("429")
            assert refused is not None, f"{method.upper()} {path}"
            assert "application/problem+json" in refused["content"]
            retry_after = refused["headers"]["Retry-After"]
            assert retry_after["required"] is True
            assert retry_after["schema"] == {"type": "integer", "minimum": 1}
    # The health probes are never limited (and are not part of the API).
    assert not {"/healthz", "/readyz"} & set(document["paths"])


def _declared_by_validators(field: fields.Field[Any], declared: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema keywords ``field``'s validators enforce (ranges, lengths, choices)."""
    counts = isinstance(field, fields.List | fields.Nested)
    types = declared.get("type")
    numeric = bool({"integer", "number"} & set(types if isinstance(types, list) else [types]))
    expected: dict[str, Any] = {}
    for validator in field.validators:
        if isinstance(validator, Length):
            low, high = ("minItems", "maxItems") if counts else ("minLength", "maxLength")
            expected.update({low: validator.min, high: validator.max})
        elif isinstance(validator, Range):
            # JSON Schema bounds only numbers; a date range is declared as x-minimum/x-maximum.
            low, high = ("minimum", "maximum") if numeric else ("x-minimum", "x-maximum")
            bounds = {low: validator.min, high: validator.max}
            expected.update({k: field._serialize(v, None, None) for k, v in bounds.items()})
        elif isinstance(validator, OneOf):
            expected["enum"] = list(validator.choices)
        elif isinstance(validator, Regexp):
            assert "pattern" not in expected, "a field can declare one pattern"
            expected["pattern"] = validator.regex.pattern
        elif isinstance(validator, URL):
            pattern = re.compile(declared.get("pattern", "$^"))
            for scheme in validator.schemes or ():
                assert pattern.match(f"{scheme.upper()}://example.org"), (scheme, pattern)
            assert not pattern.match("ftp://example.org"), pattern
        else:
            # Checks the document describes in words (a check digit, distinct items) are plain
            # functions; a marshmallow validator class here would enforce a rule undeclared.
            assert not isinstance(validator, Validator), validator
    return {keyword: value for keyword, value in expected.items() if value is not None}


def _compare(schema: Any, properties: dict[str, Any], where: str, resolve: Any) -> int:
    """Assert that each field of ``schema``, nested ones too, declares what its validators
    enforce; return how many keywords were compared."""
    compared = 0
    for name, field in schema().fields.items():
        key = field.data_key or name
        pairs = [(f"{where}{key}", field, resolve(properties[key]))]
        if isinstance(field, fields.List):
            pairs.append((f"{where}{key}[]", field.inner, resolve(pairs[0][2]["items"])))
        for label, checked, declared in pairs:
            for keyword, value in _declared_by_validators(checked, declared).items():
                assert declared.get(keyword) == value, (label, keyword, declared)
                compared += 1
            if isinstance(checked, fields.Nested):
                nested = resolve_schema_cls(checked.nested)
                compared += _compare(nested, declared["properties"], f"{label}.", resolve)
    return compared


def test_every_range_the_schemas_enforce_is_declared(app: Flask, client: FlaskClient) -> None:
    """Lengths, item counts, numeric and date ranges, choices and patterns of every request
    body and query parameter, as their marshmallow validators enforce them."""
    document = _document(client)
    components = document["components"]["schemas"]

    def resolve(declared: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in declared:
            declared = components[declared["$ref"].rsplit("/", 1)[-1]]
        return declared

    compared = 0
    for view, operation in _operations_with_views(app, document):
        doc = getattr(view, "api_doc", None)
        if doc is not None and doc.request is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            compared += _compare(doc.request, resolve(body)["properties"], "", resolve)
        if doc is not None and doc.query is not None:
            query = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
            compared += _compare(doc.query, query, "?", resolve)
    assert compared > 150


# --- schemathesis against the app, in process ---------------------------------------------------


class World:
    """A seeded household, through the real API, and the agency fuzzing it: involved with it,
    holding its members, an incident and a warning. Valid generated requests are pointed at
    these records (not every time), so that they reach the code past "not found"."""

    def __init__(self, app: Flask) -> None:
        self.app, self.http = app, app.test_client()
        self.other_agency = create_agency(app, slug="fuzz-other", name="Other Agency")
        self.agency = create_agency(app, slug="fuzz-agency", name="Fuzzing Agency")
        mine = create_client(app, agency_id=self.agency, scopes=API_SCOPES)
        theirs = create_client(app, agency_id=self.other_agency, scopes=API_SCOPES)
        self.auth = {"Authorization": f"Bearer {get_token(self.http, mine)}"}
        self.their_auth = {"Authorization": f"Bearer {get_token(self.http, theirs)}"}
        self.examples: Counter[str] = Counter()
        involvement = self._post("/involvements", {
            "household": {"address": {"line1": "14 Orchard Way", "line2": None,
                                      "town": "Maidstone", "postcode": "ME14 2AB"}},
            "case_reference": "CSC-REF-88431",
            "lead_practitioner": {"name": "Alex Morgan", "contact": "07700 900461"},
        })  # fmt: skip
        self.household_id, self.involvement_id = involvement["household_id"], involvement["id"]
        path = f"/households/{self.household_id}/members"
        self.member_id = self._post(path, {
            "given_name": "Darren", "family_name": "Pike", "date_of_birth": "1984-05-02",
            "role": "adult", "relationship": "father",
        })["id"]  # fmt: skip
        self._post(path, {
            "given_name": "Mia", "family_name": "Pike", "date_of_birth": "2019-09-14",
            "role": "child", "relationship": "daughter", "nhs_number": "943 476 5919",
        })  # fmt: skip
        self.incident_id = self._post("/incidents", {
            "household": {"household_id": self.household_id},
            "occurred_on": str(TODAY - timedelta(days=3)), "categories": ["verbal_abuse"],
            "summary": "Shouted at on the doorstep", "police_reported": False,
        })["id"]  # fmt: skip
        self.warning_id, self.version = self._publish()
        self.webhook_id = self._register_webhook()
        # Another agency works with the family too, and warns in confidence (a flag, not detail).
        self._post("/involvements", {
            "household": {"household_id": self.household_id}, "case_reference": "HV-1",
            "lead_practitioner": {"name": "Sam Lee", "contact": "sam@example.org"},
            "contact_route": "duty desk first",
        }, auth=self.their_auth)  # fmt: skip
        self._post("/warnings", {
            "household": {"household_id": self.household_id}, "categories": ["harassment"],
            "risk_level": "medium", "handling": "restricted", "shared_with": [],
            "children_in_household": True,
            "subject_informed": {"informed": True, "informed_on": str(TODAY)},
            "incidents": [{"occurred_on": str(TODAY), "summary": "Followed to the car",
                           "police_reported": True, "crime_reference": "KE-26-1"}],
        }, auth=self.their_auth)  # fmt: skip
        self.notification_id, self.delivery_id = self._seeded_notification()

    def _post(
        self, path: str, body: dict[str, Any], auth: dict[str, str] | None = None
    ) -> dict[str, Any]:
        headers = {**(auth or self.auth), "X-Acting-Practitioner": "seed-1",
                   "X-Purpose-Of-Use": "case_work"}  # fmt: skip
        response = self.http.post(f"/api/v1{path}", json=body, headers=headers)
        assert response.status_code == 201, (path, response.get_json())
        document: dict[str, Any] = response.get_json()
        return document

    def _register_webhook(self) -> str:
        webhook = self._post("/webhooks", {"url": "http://127.0.0.1:9/alerts"})
        return str(webhook["id"])

    def _seeded_notification(self) -> tuple[str, str]:
        """A notification for the fuzzing agency (another agency's involvement was announced to
        it) and a delivery of it to the seeded webhook."""
        headers = {**self.auth, "X-Acting-Practitioner": "seed-1", "X-Purpose-Of-Use": "case_work"}
        feed = self.http.get("/api/v1/notifications", headers=headers).get_json()
        deliveries = self.http.get(
            f"/api/v1/webhooks/{self.webhook_id}/deliveries", headers=headers
        ).get_json()
        return feed["items"][0]["id"], deliveries["items"][0]["id"]

    def _publish(self) -> tuple[str, int]:
        warning = self._post("/warnings", {
            "household": {"household_id": self.household_id},
            "categories": ["weapons", "intimidating_animals"], "risk_level": "high",
            "incident_ids": [self.incident_id],
            "incidents": [{"occurred_on": str(TODAY - timedelta(days=2)),
                           "summary": "Threatened with a knife", "police_reported": True,
                           "crime_reference": "KE-26-112233"}],
            "persons_of_concern": [{"member_id": self.member_id}],
            "precautions": ["joint_visit", "animals_secured_before_entry"],
            "children_in_household": True,
            "subject_informed": {"informed": False, "reason_withheld": "Would escalate risk",
                                 "recheck_on": str(TODAY + timedelta(days=30))},
        })  # fmt: skip
        return warning["id"], warning["version"]

    # -- pointing valid requests at the seeded records --

    def prepare(self, case: schemathesis.Case) -> None:
        """Point the valid parts of ``case`` at the seeded records, two times in three."""
        self.examples[case.operation.label] += 1
        meta = case.meta
        valid = {location.value for location, info in (meta.components.items() if meta else ())
                 if not info.mode.is_negative}  # fmt: skip
        if _choice(case) == 0:
            return
        ids = {"household_id": self.household_id, "member_id": self.member_id,
               "warning_id": self.warning_id, "involvement_id": self.involvement_id,
               "notification_id": self.notification_id, "webhook_id": self.webhook_id,
               "delivery_id": self.delivery_id}  # fmt: skip
        if "path" in valid and case.path_parameters:
            for name in case.path_parameters:
                case.path_parameters[name] = ids[name]
        if "query" in valid and case.query:
            if "household_id" in case.query:
                case.query["household_id"] = self.household_id
            case.query.pop("cursor", None)  # opaque: only one the API gave is valid
        if "header" in valid and case.headers and "If-Match" in case.headers:
            case.headers["If-Match"] = f'"{self.version}"'
        if "body" in valid and isinstance(case.body, dict):
            # A new household by UPRN or address sometimes; mostly the seeded one.
            declaring = case.operation.label == "POST /api/v1/involvements"
            self._point_body(case.body, household=_choice(case) == 1 or not declaring)

    def _point_body(self, body: dict[str, Any], household: bool) -> None:
        if household and isinstance(body.get("household"), dict):
            body["household"] = {"household_id": self.household_id}
        if isinstance(body.get("incident_ids"), list):
            body["incident_ids"] = [self.incident_id]
        if body.get("shared_with"):
            body["shared_with"] = [self.other_agency]
        for person in body.get("persons_of_concern") or ():
            if isinstance(person, dict) and "member_id" in person:
                person["member_id"] = self.member_id
        # Dates the rules allow: what happened is past, what is planned is within a year.
        for report in [body, *(body.get("incidents") or ())]:
            if isinstance(report, dict) and "occurred_on" in report:
                report["occurred_on"] = str(TODAY - timedelta(days=1))
        informed = body.get("subject_informed")
        for name, value in (("review_by", body), ("recheck_on", informed),
                            ("informed_on", informed)):  # fmt: skip
            if isinstance(value, dict) and name in value:
                days = -1 if name == "informed_on" else 30
                value[name] = str(TODAY + timedelta(days=days))

    def repair(self, case: schemathesis.Case, response: schemathesis.Response) -> None:
        """Keep the seeded records usable: a new warning once it is closed or withdrawn, a new
        involvement once it is ended."""
        if not 200 <= response.status_code < 300 or case.path_parameters is None:
            return
        if case.path_parameters.get("warning_id") == self.warning_id and case.method != "GET":
            warning = response.json()
            if warning["status"] != "active":
                self.warning_id, self.version = self._publish()
            else:
                self.version = warning["version"]
        if case.path_parameters.get("webhook_id") == self.webhook_id and case.method == "DELETE":
            self.webhook_id = self._register_webhook()
        if case.path_parameters.get("involvement_id") == self.involvement_id:
            self.involvement_id = self._post("/involvements", {
                "household": {"household_id": self.household_id}, "case_reference": "CSC-2",
                "lead_practitioner": {"name": "Alex Morgan", "contact": "07700 900461"},
            })["id"]  # fmt: skip


def _choice(case: schemathesis.Case) -> int:
    """0, 1 or 2, from the generated values alone (so a replayed example chooses the same)."""
    raw = json.dumps(
        [case.path_parameters, case.query, case.headers, case.body], sort_keys=True, default=repr
    )
    return zlib.crc32(raw.encode()) % 3


@pytest.fixture
def world(app: Flask) -> Iterator[World]:
    world = World(app)
    yield world
    # The operation got its examples (a filter or a health check can quietly cut a run short).
    assert len(world.examples) == 1, world.examples
    assert min(world.examples.values()) >= EXAMPLES, world.examples


def _load_schema() -> schemathesis.BaseSchema:
    """Load the document from the app in process, as schemathesis's WSGI loader does; each test
    then sends its requests to its own app (a fresh database) through the same transport."""
    database = Path(_SCHEMA_APP_DIR.name) / "describe.db"
    engine = create_engine(f"sqlite:///{database}")
    upgrade(engine=engine)
    engine.dispose()
    app = build_app(f"sqlite:///{database}", Path(_SCHEMA_APP_DIR.name))
    loaded = schemathesis.openapi.from_wsgi(DOCUMENT, app, config=CONFIG)
    dispose_app(app)
    return loaded


_SCHEMA_APP_DIR = tempfile.TemporaryDirectory(prefix="alertshare-openapi-")
atexit.register(_SCHEMA_APP_DIR.cleanup)
schema = _load_schema()


def test_schemathesis_fuzzes_the_document_the_app_serves(client: FlaskClient) -> None:
    assert _document(client) == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
    # One seeded world per operation, kept (and repaired) across its examples on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)  # fmt: skip
def test_the_api_keeps_to_its_document(case: schemathesis.Case, world: World) -> None:
    checks = [getattr(schemathesis.checks, name) for name in CHECK_NAMES]
    world.prepare(case)
    # In process: schemathesis's WSGI transport calls this test's app directly.
    response = case.call_and_validate(app=world.app, headers=world.auth, checks=checks)
    world.repair(case, response)
