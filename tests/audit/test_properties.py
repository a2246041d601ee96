"""Property: whatever agencies do through the API, the audit log holds exactly one faithful,
chained entry per request.

A hypothesis state machine plays random sequences of calls by three agencies (all scopes, fewer
scopes, no token, revoked or forged tokens, missing acting-context headers, unknown paths, wrong
client secrets) against a fresh app and database per example, and checks after every step that
each request left exactly its entry: right action, status and outcome, every returned id named,
no token or secret anywhere, and an intact hash chain.

The machine keeps a model of what the API has done (households and how they are named, their
members and incidents, involvements, warnings with their issuer, handling, sharing, status and
version), and from it the status each call must get and what each listing must hold.

A new /api/v1 route joins by adding one ``ApiCall`` to ``API_CALLS``;
``test_every_audited_route_is_declared`` fails until it does.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from werkzeug.test import TestResponse

from service.api.access import PRACTITIONER_HEADER, PURPOSE_HEADER, policy_of
from service.api.recording import recordable_id
from service.audit.verification import verify_log
from service.context import PURPOSES_OF_USE, RECORD_ID_PATTERN
from service.crypto.normalise import (
    normalise_address_line,
    normalise_nhs_number,
    normalise_postcode,
    normalise_text,
    normalise_uprn,
)
from service.database import db
from service.models.household import Household as HouseholdRow
from service.models.involvement import Involvement as InvolvementRow
from service.models.warning import STATUSES
from service.oauth.scopes import (
    ALL_SCOPES,
    API_SCOPES,
    AUDIT_READ,
    AUDIT_READ_ALL,
    HOUSEHOLDS_READ,
    INVOLVEMENTS_WRITE,
    NOTIFICATIONS_MANAGE,
    TOKENS_INTROSPECT,
    WARNINGS_WRITE,
)
from service.vocabulary import CATEGORIES, MAX_REVIEW_MONTHS, PRECAUTIONS, RISK_LEVELS, add_months
from tests.audit.helpers import audit_entries
from tests.conftest import build_app, dispose_app, fresh_database
from tests.factories import (
    ClientCredentials,
    basic_auth,
    create_agency,
    create_client,
    create_household,
)

# No explain phase: on a failure it replays hundreds of variations of a slow, stateful example.
SETTINGS = settings(
    max_examples=8,
    stateful_step_count=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# The first agency's client holds every API scope; the second's audits only what its agency may
# (audit:read, not audit:read:all); the third's may also introspect others' tokens (as a gateway
# would).
CLIENT_SCOPES = (API_SCOPES, tuple(s for s in API_SCOPES if s != AUDIT_READ_ALL), ALL_SCOPES)
AGENCIES = len(CLIENT_SCOPES)
PRACTITIONERS = ("sw-0042", "hv-0007", "ho-0019")
OUTCOMES = ("allowed", "denied", "failed")
OAUTH_ACTIONS = {
    ("POST", "/oauth/token"): "token:issue",
    ("POST", "/oauth/introspect"): "token:introspect",
    ("POST", "/oauth/revoke"): "token:revoke",
}
UNROUTED = "request:unrouted"
WITHDRAWN = "entered-in-error"


def expected_outcome(status: int) -> str:
    # Only a success is an allowed access: a redirect is not one (pinned in test_entry.py).
    if status < 300:
        return "allowed"
    return "denied" if status in (401, 403, 404) else "failed"


# --- the model ------------------------------------------------------------------------------


@dataclass
class Token:
    """A bearer token the machine holds; forged ones were never issued."""

    value: str
    creds: ClientCredentials
    scopes: frozenset[str]
    revoked: bool = False
    forged: bool = False

    @property
    def live(self) -> bool:
        return not (self.revoked or self.forged)


Name = tuple[str, ...]  # how a request can name a household: ("uprn", u) or ("address", pc, line1)


def name_of(ref: Mapping[str, Any]) -> Name:
    """The normalised name a household reference by UPRN or address gives (as blind-indexed)."""
    if "uprn" in ref:
        return ("uprn", normalise_uprn(ref["uprn"]))
    address = ref["address"]
    return ("address", normalise_postcode(address["postcode"]),
            normalise_address_line(address["line1"]))  # fmt: skip


@dataclass
class Member:
    """Someone living in a household, as a person look-up finds them (normalised)."""

    family_name: str
    born: str | None
    nhs_number: str | None


@dataclass
class Home:
    """A household: how requests may name it, who lives there, the incidents recorded there."""

    id: str
    names: set[Name] = field(default_factory=set)
    members: dict[str, Member] = field(default_factory=dict)
    incidents: dict[str, str] = field(default_factory=dict)  # id -> the agency that recorded it


@dataclass
class Involvement:
    id: str
    household: str
    agency: str
    active: bool = True


@dataclass
class Hook:
    """A webhook endpoint an agency registered."""

    agency: str
    deleted: bool = False


@dataclass
class Marker:
    """A warning: where it is, who issued it, who may read it, where it stands."""

    id: str
    household: str
    issuer: str
    handling: str
    shared_with: frozenset[str]
    order: int  # the n-th published: lists are newest first
    status: str = "active"
    version: int = 1
    risk_level: str = "low"
    categories: frozenset[str] = frozenset()
    review_by: date = date.max
    incidents: frozenset[str] = frozenset()  # those it rests on


@dataclass
class World:
    """What the machine knows: agencies, tokens, every id seen so far, and the state the API calls
    made (households, members, incidents, involvements, warnings)."""

    started: datetime
    clients: list[ClientCredentials]
    log: Callable[[], list[dict[str, Any]]]  # the audit entries so far, in seq order
    involvement_of: Callable[[str, str], str]  # an agency's current involvement, from the database
    homes: dict[str, Home] = field(default_factory=dict)
    addresses: list[tuple[str, str]] = field(default_factory=list)  # (line1, postcode) spellings
    involvements: dict[str, Involvement] = field(default_factory=dict)
    warnings: dict[str, Marker] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    cursors: set[int] = field(default_factory=set)
    pages: dict[str, str] = field(default_factory=dict)  # warnings cursor -> its page's last id
    notifications: dict[str, str] = field(default_factory=dict)  # id -> recipient agency
    webhooks: dict[str, Hook] = field(default_factory=dict)
    deliveries: dict[str, str] = field(default_factory=dict)  # id -> its webhook
    told_of_reads: dict[str, bool] = field(default_factory=dict)  # agency -> its setting
    requests: int = 0  # audited requests sent so far

    @property
    def today(self) -> date:
        return self.started.date()  # UTC, as the service judges dates

    @property
    def agency_ids(self) -> list[str]:
        return [c.agency_id for c in self.clients]

    # --- the need-to-know rule, as the service states it ---

    def involved(self, agency: str | None, household: str) -> bool:
        return any(i.active and (i.agency, i.household) == (agency, household)
                   for i in self.involvements.values())  # fmt: skip

    def ever_involved(self, agency: str, household: str) -> bool:
        return any((i.agency, i.household) == (agency, household)
                   for i in self.involvements.values())  # fmt: skip

    def may_see_household(self, agency: str | None, household: str) -> bool:
        """Involved now, or the issuer of a warning about it (withdrawn ones aside)."""
        if household not in self.homes:
            return False
        return self.involved(agency, household) or any(
            (w.household, w.issuer) == (household, agency) and w.status != WITHDRAWN
            for w in self.warnings.values()
        )

    def may_read(self, agency: str | None, warning: Marker) -> bool:
        """The issuer always; an involved agency unless withdrawn, or restricted and not shared."""
        if warning.issuer == agency:
            return True
        return (
            warning.status != WITHDRAWN
            and self.involved(agency, warning.household)
            and (warning.handling == "involved" or agency in warning.shared_with)
        )

    def readable_incidents(self, agency: str | None, household: str) -> set[str]:
        """The household's incidents the agency recorded, those no warning rests on, and those
        a warning it may read rests on (not those resting only on others: restricted ones, or
        withdrawn ones)."""
        readable = set()
        for incident, recorder in self.homes[household].incidents.items():
            resting = [w for w in self.warnings.values() if incident in w.incidents]
            if recorder == agency or not resting or any(self.may_read(agency, w) for w in resting):
                readable.add(incident)
        return readable

    def newest_first(self) -> list[Marker]:
        return sorted(self.warnings.values(), key=lambda w: w.order, reverse=True)

    # --- naming households ---

    def resolve(self, ref: Mapping[str, Any]) -> str | None:
        """The registered household a (valid) household reference names, if any."""
        if "household_id" in ref:
            return ref["household_id"] if ref["household_id"] in self.homes else None
        name = name_of(ref)
        return next((home.id for home in self.homes.values() if name in home.names), None)

    def settle(self, ref: Mapping[str, Any], household_id: str) -> Home:
        """The household a successful request named by ``ref``: known, or registered by it."""
        known = self.resolve(ref)
        if known is None:
            assert "household_id" not in ref and household_id not in self.homes
            self.homes[household_id] = Home(household_id, names={name_of(ref)})
        else:
            assert known == household_id, (ref, known, household_id)
        return self.homes[household_id]

    def involve(self, agency: str, household: str, involvement_id: str | None = None) -> None:
        found = involvement_id or self.involvement_of(agency, household)
        self.involvements[found] = Involvement(found, household, agency)

    def looked_up(self, query: Mapping[str, Any]) -> set[str]:
        """The households a (valid) look-up must find."""
        if "person" not in query:
            name = name_of(query)
            return {home.id for home in self.homes.values() if name in home.names}
        person = query["person"]
        if "nhs_number" in person:
            number = normalise_nhs_number(person["nhs_number"])
            return {home.id for home in self.homes.values()
                    if any(m.nhs_number == number for m in home.members.values())}  # fmt: skip
        key = (normalise_text(person["family_name"]), person["date_of_birth"])
        return {home.id for home in self.homes.values()
                if any((m.family_name, m.born) == key for m in home.members.values())}  # fmt: skip

    def review_date_ok(self, value: str) -> bool:
        return self.today < date.fromisoformat(value) <= add_months(self.today, MAX_REVIEW_MONTHS)


@dataclass(frozen=True)
class Body:
    """A drawn request body, and what the service must make of it."""

    json: Any
    invalid: bool = False  # the schema refuses it: 400 before any access check
    refused: bool = False  # a rule the use case checks after the access checks refuses it: 400


@dataclass(frozen=True)
class Call:
    """One drawn API call, as the route's hooks see it."""

    token: Token | None
    ids: dict[str, str]
    params: dict[str, str]
    headers: dict[str, str]
    prior_entries: int  # entries in the log when the request was sent
    body: Body | None = None


@dataclass(frozen=True)
class Sent:
    """What one request's audit entry must say."""

    request_id: str
    action: str
    status: int
    returned: dict[str, set[str]] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    who: dict[str, str | None] = field(default_factory=dict)  # entry fields and their values


# --- the route table ------------------------------------------------------------------------

Query = Callable[[World], st.SearchStrategy[dict[str, str]]]
PathIds = Callable[[World, str | None], st.SearchStrategy[dict[str, str]]]  # world, caller
DrawBody = Callable[[World, str | None, Mapping[str, str]], st.SearchStrategy[Body]]
DrawHeaders = Callable[[World, Mapping[str, str]], st.SearchStrategy[dict[str, str]]]
Extract = Callable[[TestResponse], dict[str, set[str]]]


def no_ids(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    return st.just({})


def no_query(world: World) -> st.SearchStrategy[dict[str, str]]:
    return st.just({})


def always_ok(world: World, call: Call) -> int:
    return 200


def nothing_returned(response: TestResponse) -> dict[str, set[str]]:
    return {}


def no_check(world: World, call: Call, response: TestResponse) -> None:
    return None


@dataclass(frozen=True)
class ApiCall:
    """A route as the machine calls it: a new route joins the properties by declaring one."""

    method: str
    rule: str  # exactly as in Flask's URL map, e.g. "/api/v1/things/<thing_id>"
    action: str  # the audit action its entry must carry
    scopes: tuple[str, ...] = ()  # any one suffices; empty for a public route
    acting_context: bool = True
    path_ids: PathIds = no_ids
    query: Query = no_query
    body: DrawBody | None = None
    preconditions: DrawHeaders | None = None  # e.g. If-Match
    status: Callable[[World, Call], int] = always_ok  # for a caller past the access checks
    returned: Extract = nothing_returned  # ids of the records a successful response returns
    # What a successful response must hold, and what the world learns from it.
    check: Callable[[World, Call, TestResponse], None] = no_check
    query_targets: tuple[str, ...] = ()  # query parameters a successful request names as targets
    # The agencies whose practitioners have most to do on the route (their tokens come first).
    actors: Callable[[World], Iterable[str]] | None = None

    def path(self, ids: Mapping[str, str]) -> str:
        path = self.rule
        for name, value in ids.items():
            path = path.replace(f"<{name}>", value)
        return path


# Path ids no record of ours can have: 404 before any query, the entry naming their digest.
ODD_IDS = ("x" * 65, "no~such~id")


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight (``one_of`` merges repeated ones)."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


def pick(*pools: Iterable[str], odd: bool = True) -> st.SearchStrategy[str]:
    """Mostly an id from the pools (each as likely), else one nobody has (or, with ``odd``,
    sometimes one not even shaped like ours)."""
    # In the order the records were made, never by id: a replayed example makes other ids.
    known = [st.sampled_from(list(dict.fromkeys(pool))) for pool in pools if pool]
    unknown = weighted((3, st.uuids().map(str)), (int(odd), st.sampled_from(ODD_IDS)))
    return weighted(*((3, pool) for pool in known), (1, unknown)) if known else unknown


def _agency(call: Call) -> str:
    assert call.token is not None
    return call.token.creds.agency_id


def _collect(pairs: Iterable[tuple[str, str | None]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for ref_type, ref_id in pairs:
        if ref_id is not None:
            found.setdefault(ref_type, set()).add(ref_id)
    return found


# --- the auditors' routes ---

INVALID_FILTERS = ({"colour": "red"}, {"limit": "0"}, {"since": "yesterday"}, {"outcome": "maybe"})


def _timestamps(world: World) -> st.SearchStrategy[str]:
    return st.integers(-7200, 7200).map(
        lambda s: (world.started + timedelta(seconds=s)).isoformat()
    )


def _filter_values(world: World) -> dict[str, st.SearchStrategy[str]]:
    actions = [call.action for call in API_CALLS] + sorted(OAUTH_ACTIONS.values()) + [UNROUTED]
    return {
        "agency_id": st.sampled_from(world.agency_ids),
        "practitioner": st.sampled_from(PRACTITIONERS),
        "action": st.sampled_from(actions),
        "outcome": st.sampled_from(OUTCOMES),
        "since": _timestamps(world),
        "until": _timestamps(world),
        "household_id": pick(world.homes, odd=False),
        "warning_id": pick(world.warnings, odd=False),
        "unusual": st.sampled_from(["true", "false"]),
    }


def _some_of(values: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """At most two of ``values`` (more would rarely match anything)."""
    names = st.lists(st.sampled_from(sorted(values)), max_size=2, unique=True)
    return names.flatmap(lambda chosen: st.fixed_dictionaries({n: values[n] for n in chosen}))


def _maybe_invalid(
    valid: st.SearchStrategy[dict[str, str]], invalid: Iterable[dict[str, str]] = INVALID_FILTERS
) -> st.SearchStrategy[dict[str, str]]:
    broken = st.tuples(valid, st.sampled_from(list(invalid))).map(lambda p: {**p[0], **p[1]})
    return weighted((2, valid), (1, broken))


def _paging(world: World) -> dict[str, st.SearchStrategy[str]]:
    return {
        "limit": st.integers(1, 6).map(str),
        "cursor": st.sampled_from(sorted(world.cursors) or [1]).map(str),
    }


def event_filters(world: World) -> st.SearchStrategy[dict[str, str]]:
    """None (the newest the caller may see), or a few random filters, a page size and cursor,
    sometimes one invalid parameter."""
    some = _maybe_invalid(_some_of({**_filter_values(world), **_paging(world)}))
    return weighted((1, st.just({})), (2, some))


def export_filters(world: World) -> st.SearchStrategy[dict[str, str]]:
    """As for events, and a format."""
    formats = {"format": st.sampled_from(["jsonl", "csv"])}
    some = _maybe_invalid(_some_of({**_filter_values(world), **_paging(world), **formats}))
    return weighted((1, st.fixed_dictionaries({}, optional=formats)), (2, some))


def _valid_filters(world: World, call: Call) -> int:
    invalid = any(call.params.get(k) == v for bad in INVALID_FILTERS for k, v in bad.items())
    return 400 if invalid else 200


def _returned_seqs(response: TestResponse) -> dict[str, set[str]]:
    return {"audit_entry": {str(item["seq"]) for item in response.get_json()["items"]}}


def _export_rows(response: TestResponse) -> list[dict[str, Any]]:
    body = response.get_data(as_text=True)
    if response.mimetype == "application/jsonl":
        return [json.loads(line) for line in body.splitlines()]
    assert response.mimetype == "text/csv"
    rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(body)))
    for row in rows:
        row.update({k: json.loads(row[k]) for k in ("seq", "targets", "returned", "flags")})
    return rows


def _names_in(item: Mapping[str, Any], ref_type: str) -> set[str]:
    """The ids of ``ref_type`` an entry names, as target or as returned."""
    return {*item["targets"].get(ref_type, []), *item["returned"].get(ref_type, [])}


def _sees(world: World, call: Call, item: Mapping[str, Any]) -> bool:
    """Whether the caller may see this entry: all of them (audit:read:all); else its own, and
    others' (but not their auditors') about households its agency works or worked with, or
    about warnings its agency issued."""
    assert call.token is not None
    if AUDIT_READ_ALL in call.token.scopes:
        return True
    agency = call.token.creds.agency_id
    if item["agency_id"] == agency:
        return True
    if item["action"].startswith("audit:"):
        return False
    issued = {w.id for w in world.warnings.values() if w.issuer == agency}
    return bool(_names_in(item, "warning") & issued) or any(
        world.ever_involved(agency, h) for h in _names_in(item, "household")
    )


def _check_listing(world: World, call: Call, items: list[dict[str, Any]], limit: int) -> None:
    """Newest first, within the caller's view; without filters, exactly the newest it may see."""
    seqs = [item["seq"] for item in items]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert len(seqs) <= limit
    assert all(seq <= call.prior_entries for seq in seqs)  # never the request's own entry
    assert all(_sees(world, call, item) for item in items)
    for name in ("household_id", "warning_id"):
        if name in call.params:
            ref_type = name.removesuffix("_id")
            assert all(call.params[name] in _names_in(item, ref_type) for item in items)
    if "cursor" in call.params:
        assert all(seq < int(call.params["cursor"]) for seq in seqs)
    if set(call.params) <= {"limit", "format"}:
        earlier = world.log()[: call.prior_entries]
        visible = [e["seq"] for e in reversed(earlier) if _sees(world, call, e)]
        assert seqs == visible[:limit]


def _exported_seqs(response: TestResponse) -> dict[str, set[str]]:
    return {"audit_entry": {str(row["seq"]) for row in _export_rows(response)}}


def _check_export(world: World, call: Call, response: TestResponse) -> None:
    rows = _export_rows(response)
    assert response.headers["X-Total-Count"] == str(len(rows))
    _check_listing(world, call, rows, int(call.params.get("limit", "10000")))
    if "X-Next-Cursor" in response.headers:
        world.cursors.add(int(response.headers["X-Next-Cursor"]))


def _check_events(world: World, call: Call, response: TestResponse) -> None:
    page = response.get_json()
    _check_listing(world, call, page["items"], int(call.params.get("limit", "50")))
    if page["next_cursor"] is not None:
        world.cursors.add(page["next_cursor"])


def _check_verify(world: World, call: Call, response: TestResponse) -> None:
    report = response.get_json()
    assert report["ok"] is True, report
    assert report["checked"] == call.prior_entries
    assert report["head_seq"] == (call.prior_entries or None)


def _check_me(world: World, call: Call, response: TestResponse) -> None:
    assert call.token is not None
    assert response.get_json()["agency"]["id"] == call.token.creds.agency_id


def _check_openapi(world: World, call: Call, response: TestResponse) -> None:
    assert response.get_json()["openapi"].startswith("3.1")


def _check_agencies(world: World, call: Call, response: TestResponse) -> None:
    ids = {item["id"] for item in response.get_json()["items"]}
    assert ids == set(world.agency_ids)


def _report_status(world: World, call: Call) -> int:
    assert call.token is not None
    if AUDIT_READ_ALL in call.token.scopes:
        return 200
    return 200 if world.ever_involved(_agency(call), call.ids["household_id"]) else 404


def _check_report(world: World, call: Call, response: TestResponse) -> None:
    assert response.get_json()["household_id"] == call.ids["household_id"]


def _report_path(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({"household_id": pick(world.homes)})


# --- bodies: mostly valid, sometimes refused by the schema or by the use case ---

Spoiler = Callable[[Any], Any]
# Refused by every request schema: a field only the server sets, an unknown field, not an object.
ANY_BODY_SPOILERS: tuple[Spoiler, ...] = (
    lambda body: {**body, "id": "x"},
    lambda body: {**body, "version": 2},
    lambda body: {**body, "colour": "red"},
    lambda body: [],
)


def _with(name: str, value: Any) -> Spoiler:
    return lambda body: {**body, name: value}


def _without(name: str) -> Spoiler:
    return lambda body: {k: v for k, v in body.items() if k != name}


def spoilable(make: DrawBody, *spoilers: Spoiler) -> DrawBody:
    """Bodies from ``make``; one in six spoiled by one of ``spoilers`` (or a generic one)."""

    def draw_body(
        world: World, agency: str | None, ids: Mapping[str, str]
    ) -> st.SearchStrategy[Body]:
        valid = make(world, agency, ids)
        spoil = st.sampled_from([*spoilers, *ANY_BODY_SPOILERS])
        spoiled = st.builds(lambda b, s: Body(s(b.json), invalid=True), valid, spoil)
        return weighted((5, valid), (1, spoiled))

    return draw_body


UPRN_SPELLINGS = ("10033544614", "010033544614", "200004", "000200004")
DWELLINGS = (  # one dwelling, written differently (case, spacing, punctuation)
    (("14 Orchard Way", "14, ORCHARD  way", "14 orchard way."), ("ME14 2AB", "me142ab")),
    (("Flat 3, 2 Mill Lane", "flat 3 2 mill lane"), ("CT1 1AA", "ct1 1aa")),
)
# Schema-refused references (a UPRN of zeros is no UPRN: it must be a 400, not a look-up).
BAD_REFS = (
    {}, {"uprn": "0"}, {"uprn": "000"}, {"uprn": "12ab"}, {"uprn": "1234567890123"},
    {"household_id": "h-1", "uprn": "200004"},
    {"address": {"line1": "1 A Road", "postcode": "NOT A CODE"}},
    {"address": {"postcode": "ME14 2AB"}},
)  # fmt: skip
FAMILY_SPELLINGS = ("Pike", "PIKE", " pike ", "O'Brien", "OBrien", "o’brien")
GIVEN_NAMES = ("Darren", "Mia", "Jo")
BIRTH_DATES = ("1984-05-02", "2019-09-14")
NHS_SPELLINGS = ("9434765919", "943 476 5919", "4010232137", "4000000004")
BAD_NHS_NUMBER = "9434765918"
NO_SUCH_AGENCY = "agency-none"


def _addresses(world: World) -> st.SearchStrategy[dict[str, Any]]:
    spellings = [(line1, postcode) for lines, postcodes in DWELLINGS
                 for line1 in lines for postcode in postcodes] + world.addresses  # fmt: skip
    extra = st.fixed_dictionaries({}, optional={"line2": st.none(), "town": st.just("Maidstone")})
    return st.tuples(st.sampled_from(spellings), extra).map(
        lambda p: {"line1": p[0][0], "postcode": p[0][1], **p[1]}
    )


def _seen_homes(world: World, agency: str | None) -> list[str]:
    return [h for h in world.homes if world.may_see_household(agency, h)]


@st.composite
def household_ref(draw: st.DrawFn, world: World, agency: str | None, by_id: int = 3) -> Body:
    """A household named by id (mostly one the caller may see), UPRN or address (of a
    registered dwelling or a new one); rarely badly."""
    kind = "bad" if rarely(draw) else draw(st.sampled_from(["id"] * by_id + ["uprn", "address"]))
    if kind == "id":
        household_id = draw(pick(_seen_homes(world, agency), world.homes))
        return Body({"household_id": household_id},
                    invalid=not RECORD_ID_PATTERN.fullmatch(household_id))  # fmt: skip
    if kind == "uprn":
        return Body({"uprn": draw(st.sampled_from(UPRN_SPELLINGS))})
    if kind == "address":
        return Body({"address": draw(_addresses(world))})
    return Body(draw(st.sampled_from(BAD_REFS)), invalid=True)


@st.composite
def lookup_body(draw: st.DrawFn, world: World, agency: str | None, ids: Mapping[str, str]) -> Body:
    kind = draw(st.sampled_from(["uprn", "address", "address", "name", "nhs"]))
    if kind == "uprn":
        return Body({"uprn": draw(st.sampled_from(UPRN_SPELLINGS))})
    if kind == "address":
        return Body({"address": draw(_addresses(world))})
    if kind == "name":
        return Body({"person": {"family_name": draw(st.sampled_from(FAMILY_SPELLINGS)),
                                "date_of_birth": draw(st.sampled_from(BIRTH_DATES))}})  # fmt: skip
    return Body({"person": {"nhs_number": draw(st.sampled_from(NHS_SPELLINGS))}})


_MEMBER_FIELDS = {
    "given_name": st.sampled_from(GIVEN_NAMES),
    "family_name": st.sampled_from(FAMILY_SPELLINGS),
    "date_of_birth": st.sampled_from(BIRTH_DATES) | st.none(),
    "role": st.sampled_from(["adult", "child"]),
    "relationship": st.sampled_from(["father", "daughter"]) | st.none(),
    "nhs_number": st.sampled_from(NHS_SPELLINGS) | st.none(),
}
_REQUIRED_MEMBER_FIELDS = ("given_name", "family_name", "role")


def member_body(
    world: World, agency: str | None, ids: Mapping[str, str]
) -> st.SearchStrategy[Body]:
    required = {name: _MEMBER_FIELDS[name] for name in _REQUIRED_MEMBER_FIELDS}
    optional = {k: v for k, v in _MEMBER_FIELDS.items() if k not in required}
    return st.fixed_dictionaries(required, optional=optional).map(Body)


def member_changes(
    world: World, agency: str | None, ids: Mapping[str, str]
) -> st.SearchStrategy[Body]:
    """Some of a member's fields; none at all is refused (change at least one)."""
    changes = st.fixed_dictionaries({}, optional=_MEMBER_FIELDS)
    return changes.map(lambda c: Body(c, invalid=not c))


@st.composite
def involvement_body(
    draw: st.DrawFn, world: World, agency: str | None, ids: Mapping[str, str]
) -> Body:
    ref = draw(household_ref(world, agency))
    body = {"household": ref.json, "case_reference": "CSC-REF-88431",
            "lead_practitioner": {"name": "Alex Morgan", "contact": "07700 900461"}}  # fmt: skip
    if draw(st.booleans()):
        body["contact_route"] = "duty desk first"
    return Body(body, invalid=ref.invalid)


def reason_body(
    world: World, agency: str | None, ids: Mapping[str, str]
) -> st.SearchStrategy[Body]:
    return st.sampled_from(["Case closed", "Entered against the wrong family"]).map(
        lambda reason: Body({"reason": reason})
    )


def _days(world: World, low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: (world.today + timedelta(days=n)).isoformat())


def _codes(choices: Iterable[str], at_least: int) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(sorted(choices)), min_size=at_least, max_size=3, unique=True)


def rarely(draw: st.DrawFn) -> bool:
    """True about one time in eight: for the faults a practitioner's system rarely makes.
    (Hypothesis favours the simplest choice, the first: that must be the usual one.)"""
    return bool(draw(st.sampled_from((False,) * 7 + (True,))))


def fault(draw: st.DrawFn, *kinds: str) -> str | None:
    """Now and then one of ``kinds``: the one rule a drawn body breaks (else None)."""
    return draw(st.sampled_from(kinds)) if rarely(draw) else None


@st.composite
def incident_report(
    draw: st.DrawFn, world: World, *, inline: bool, flaw: str | None = None
) -> dict[str, Any]:
    """An incident as reported; with ``flaw`` "future" or "stray" (a crime reference the
    police never had), refused once the caller is past the access checks."""
    occurred = draw(_days(world, 2, 30) if flaw == "future" else _days(world, -400, -2))
    reported = flaw != "stray" and draw(st.booleans())
    report: dict[str, Any] = {"occurred_on": occurred, "summary": "Shouted at on the doorstep",
                              "police_reported": reported}  # fmt: skip
    if not inline or draw(st.booleans()):
        report["categories"] = draw(_codes(CATEGORIES, 1))
    if draw(st.booleans()):
        report["description"] = "Told to leave and not come back, with threats"
    if flaw == "stray" or (reported and draw(st.booleans())):
        report["crime_reference"] = "KE-26-112233"
    return report


@st.composite
def incident_body(
    draw: st.DrawFn, world: World, agency: str | None, ids: Mapping[str, str]
) -> Body:
    ref = draw(household_ref(world, agency, by_id=8))  # recording one registers no household
    flaw = fault(draw, "future", "stray")
    report = draw(incident_report(world, inline=False, flaw=flaw))
    return Body({"household": ref.json, **report}, invalid=ref.invalid, refused=flaw is not None)


def _subject_informed(world: World) -> st.SearchStrategy[dict[str, Any]]:
    informed = _days(world, -60, -1).map(lambda d: {"informed": True, "informed_on": d})
    withheld = _days(world, 5, 90).map(lambda d: {
        "informed": False, "reason_withheld": "Telling him would raise the risk",
        "recheck_on": d})  # fmt: skip
    return informed | withheld


def _review_date(world: World, flawed: bool = False) -> st.SearchStrategy[str]:
    """A review date after today and within twelve months; ``flawed``, today or past, or later."""
    if flawed:
        return _days(world, -30, 0) | _days(world, 400, 500)
    return _days(world, 2, 300)


@st.composite
def sharers(
    draw: st.DrawFn, world: World, issuer: str | None, flawed: bool = False, at_least: int = 0
) -> list[str]:
    """Other agencies to share a restricted warning with; ``flawed``, with the issuer itself or
    an agency that does not exist."""
    others = [a for a in world.agency_ids if a != issuer]
    chosen = draw(st.lists(st.sampled_from(others), min_size=at_least, max_size=2, unique=True))
    if flawed:
        chosen.append(draw(st.sampled_from([issuer or NO_SUCH_AGENCY, NO_SUCH_AGENCY])))
    return chosen


@st.composite
def persons(
    draw: st.DrawFn, world: World, home: Home | None, flawed: bool = False
) -> list[dict[str, str]]:
    """No one, a member of the household, or someone named; ``flawed``, someone not a member
    of the household."""
    if flawed:
        strangers = [m for h in world.homes.values() if h is not home for m in h.members]
        return [{"member_id": draw(pick(strangers, odd=False))}]
    kind = draw(st.sampled_from(["none", "member", "member", "named"]))
    members = list(home.members) if home else []
    if kind == "member" and members:
        return [{"member_id": draw(st.sampled_from(members))}]
    if kind == "none":
        return []
    return [{"given_name": "Darren", "family_name": "Pike"}]


# The rules of a warning's content checked after the access checks (a 400 then).
CONTENT_FLAWS = ("stranger", "sharer", "shared-but-involved", "review-date")


def _content(
    world: World, issuer: str | None, home: Home | None, flaw: str | None
) -> dict[str, st.SearchStrategy[Any]]:
    """Strategies for the optional fields of a warning's content, breaking ``flaw`` if any."""
    handling = st.just("involved") if flaw == "shared-but-involved" else st.sampled_from(
        ["involved", "restricted", "restricted"])  # fmt: skip
    return {
        "persons_of_concern": persons(world, home, flaw == "stranger"),
        "precautions": _codes(PRECAUTIONS, 0), "review_by": _review_date(world),
        "handling": handling, "shared_with": sharers(world, issuer, flaw == "sharer"),
    }  # fmt: skip


def _flawed(
    draw: st.DrawFn,
    content: dict[str, Any],
    options: dict[str, st.SearchStrategy[Any]],
    world: World,
    issuer: str | None,
    flaw: str | None,
) -> dict[str, Any]:
    """Make sure the field ``flaw`` breaks is in the content."""
    if flaw == "stranger":
        content["persons_of_concern"] = draw(options["persons_of_concern"])
    elif flaw == "review-date":
        content["review_by"] = draw(_review_date(world, flawed=True))
    elif flaw == "sharer":
        content.setdefault("handling", "restricted")
        content["shared_with"] = draw(options["shared_with"])
    elif flaw == "shared-but-involved":
        content["handling"] = "involved"
        content["shared_with"] = draw(sharers(world, issuer, at_least=1))
    return content


@st.composite
def warning_body(draw: st.DrawFn, world: World, agency: str | None, ids: Mapping[str, str]) -> Body:
    ref = draw(household_ref(world, agency))
    home = world.homes.get(world.resolve(ref.json) or "") if not ref.invalid else None
    flaw = fault(draw, "future", "stray", "unfounded", "foreign", *CONTENT_FLAWS)
    body: dict[str, Any] = {
        "household": ref.json, "categories": draw(_codes(CATEGORIES, 1)),
        "risk_level": draw(st.sampled_from(RISK_LEVELS)),
        "children_in_household": draw(st.booleans()),
        "subject_informed": draw(_subject_informed(world)),
    }  # fmt: skip
    # Evidence: new incidents, recorded ones of the household, or both.
    evidence = draw(st.sampled_from(["new", "recorded", "both"]))
    recorded = list(home.incidents) if home else []
    if evidence != "new" and recorded:
        body["incident_ids"] = draw(st.lists(st.sampled_from(recorded), min_size=1, max_size=2))
    if evidence != "recorded" or not recorded or flaw in ("future", "stray"):
        report_flaw = flaw if flaw in ("future", "stray") else None
        body["incidents"] = [draw(incident_report(world, inline=True, flaw=report_flaw))]
    if flaw == "foreign":  # an incident recorded at another household
        elsewhere = [i for h in world.homes.values() if h is not home for i in h.incidents]
        body["incident_ids"] = [*body.get("incident_ids", ()), draw(pick(elsewhere, odd=False))]
    if flaw == "unfounded":
        body.pop("incidents", None)
        body["incident_ids"] = []
    options = _content(world, agency, home, flaw)
    content = draw(st.fixed_dictionaries({}, optional=options))
    if content.get("handling") != "restricted":
        content.pop("shared_with", None)
    body.update(_flawed(draw, content, options, world, agency, flaw))
    return Body(body, invalid=ref.invalid, refused=flaw is not None)


@st.composite
def warning_changes(
    draw: st.DrawFn, world: World, agency: str | None, ids: Mapping[str, str]
) -> Body:
    """One to three fields of a warning's content; now and then breaking a content rule (the
    model says whether the change is refused: it depends on the warning as it stands)."""
    warning = world.warnings.get(ids["warning_id"])
    home = world.homes.get(warning.household) if warning else None
    flaw = fault(draw, *CONTENT_FLAWS)
    options = {
        **_content(world, agency, home, flaw),
        "risk_level": st.sampled_from(RISK_LEVELS), "categories": _codes(CATEGORIES, 1),
        "children_in_household": st.booleans(), "subject_informed": _subject_informed(world),
    }  # fmt: skip
    names = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True))
    chosen = {name: draw(options[name]) for name in names}
    changes = _flawed(draw, chosen, options, world, agency, flaw)
    return Body(changes)


@st.composite
def review_body(draw: st.DrawFn, world: World, agency: str | None, ids: Mapping[str, str]) -> Body:
    if draw(st.booleans()):
        flawed = rarely(draw)
        review_by = draw(_review_date(world, flawed))
        return Body({"outcome": "continue", "review_by": review_by}, refused=flawed)
    return Body({"outcome": "close", "reason": "No further incidents in six months"})


def if_match(world: World, ids: Mapping[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """None (428), the current version's ETag, a stale or future one, or a weak one (412)."""
    warning = world.warnings.get(ids.get("warning_id", ""))
    version = warning.version if warning else 1
    current, stale, ahead = (f'"{v}"' for v in (version, version - 1, version + 1))
    tags = [current] * 6 + [stale, ahead, f"W/{current}"]
    return st.sampled_from([*({"If-Match": tag} for tag in tags), {}])


# --- path ids: mostly records the caller may reach, else any known, else unknown or odd ---


def household_path(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({"household_id": pick(_seen_homes(world, agency), world.homes)})


@st.composite
def member_path(draw: st.DrawFn, world: World, agency: str | None) -> dict[str, str]:
    household_id = draw(household_path(world, agency))["household_id"]
    home = world.homes.get(household_id)
    everyone = [m for h in world.homes.values() for m in h.members]
    return {"household_id": household_id,
            "member_id": draw(pick(home.members if home else (), everyone))}  # fmt: skip


def involvement_path(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    mine = [i.id for i in world.involvements.values() if i.agency == agency and i.active]
    return st.fixed_dictionaries({"involvement_id": pick(mine, world.involvements)})


def warning_path(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    """A warning the caller may read (its own, among others), any other, or none."""
    issued = [w.id for w in world.warnings.values() if w.issuer == agency]
    readable = [w.id for w in world.warnings.values() if world.may_read(agency, w)]
    return st.fixed_dictionaries({"warning_id": pick(issued, readable, world.warnings)})


def issuers(world: World) -> list[str]:
    """The agencies with an active warning to change."""
    return [w.issuer for w in world.warnings.values() if w.status == "active"]


def readers(world: World) -> list[str]:
    """The agencies that may read a warning."""
    return [
        a for a in world.agency_ids if any(world.may_read(a, w) for w in world.warnings.values())
    ]


def own_warning_path(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    """Mostly one of the caller's own active warnings, to change; else as ``warning_path``."""
    mine = [w.id for w in world.warnings.values() if w.issuer == agency]
    active = [w for w in mine if world.warnings[w].status == "active"]
    readable = [w.id for w in world.warnings.values() if world.may_read(agency, w)]
    return st.fixed_dictionaries({"warning_id": pick(active, active, mine, readable,
                                                     world.warnings)})  # fmt: skip


# --- queries ---


def involvement_query(world: World) -> st.SearchStrategy[dict[str, str]]:
    valid = st.just({}) | st.fixed_dictionaries({"household_id": pick(world.homes, odd=False)})
    return _maybe_invalid(valid, ({"household_id": "no~such~id"}, {"colour": "red"}))


def incident_query(world: World) -> st.SearchStrategy[dict[str, str]]:
    valid = st.fixed_dictionaries({"household_id": pick(world.homes, odd=False)})
    return (
        valid
        | st.sampled_from([{}, {"household_id": "no~such~id"}])
        | valid.map(lambda q: {**q, "since": "2026-01-01"})
    )


BAD_WARNING_FILTERS = (
    {"status": "gone"}, {"issued_by": "yours"}, {"limit": "0"}, {"limit": "201"},
    {"cursor": "not-a-cursor"}, {"household_id": "no~such~id"}, {"colour": "red"},
)  # fmt: skip


def warning_filters(world: World) -> st.SearchStrategy[dict[str, str]]:
    values = {
        "household_id": pick(world.homes, odd=False), "status": st.sampled_from(STATUSES),
        "issued_by": st.just("mine"), "review_due_before": _days(world, 1, 400),
        "limit": st.integers(1, 3).map(str),
    }  # fmt: skip
    if world.pages:
        values["cursor"] = st.sampled_from(list(world.pages))
    return _maybe_invalid(_some_of(values), BAD_WARNING_FILTERS)


# --- statuses, from the model (for a caller past the scope and acting-context checks) ---


def _body(call: Call) -> Body:
    assert call.body is not None
    return call.body


def household_status(world: World, call: Call) -> int:
    return 200 if world.may_see_household(_agency(call), call.ids["household_id"]) else 404


def member_added_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    return 201 if household_status(world, call) == 200 else 404


def member_corrected_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    if household_status(world, call) == 404:
        return 404
    return 200 if call.ids["member_id"] in world.homes[call.ids["household_id"]].members else 404


def involvement_declared_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    ref = _body(call).json["household"]
    household = world.resolve(ref)
    if household is None:
        return 404 if "household_id" in ref else 201  # a new dwelling is registered
    return 409 if world.involved(_agency(call), household) else 201


def involvement_ended_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    involvement = world.involvements.get(call.ids["involvement_id"])
    if involvement is None or involvement.agency != _agency(call):
        return 404
    return 200 if involvement.active else 409


def involvement_query_status(world: World, call: Call) -> int:
    params = call.params
    if set(params) - {"household_id"}:
        return 400
    if "household_id" in params and not RECORD_ID_PATTERN.fullmatch(params["household_id"]):
        return 400
    return 200


def incident_recorded_status(world: World, call: Call) -> int:
    body = _body(call)
    if body.invalid:
        return 400
    household = world.resolve(body.json["household"])  # recording one registers no household
    if household is None or not world.involved(_agency(call), household):
        return 404
    return 400 if body.refused else 201


def incident_query_status(world: World, call: Call) -> int:
    params = call.params
    if set(params) != {"household_id"} or not RECORD_ID_PATTERN.fullmatch(params["household_id"]):
        return 400
    return 200 if world.may_see_household(_agency(call), params["household_id"]) else 404


def _draft_refused(world: World, issuer: str, home: Home | None, draft: Mapping[str, Any]) -> bool:
    """Whether the publish or change rules refuse a warning's content (a 400 after access)."""
    shared = draft.get("shared_with", ())
    if draft.get("handling", "involved") == "involved" and shared:
        return True
    if any(a not in world.agency_ids or a == issuer for a in shared):
        return True
    members = home.members if home else {}
    persons = draft.get("persons_of_concern", ())
    if any("member_id" in p and p["member_id"] not in members for p in persons):
        return True
    return "review_by" in draft and not world.review_date_ok(draft["review_by"])


def warning_published_status(world: World, call: Call) -> int:
    body = _body(call)
    if body.invalid:
        return 400
    ref = body.json["household"]
    household = world.resolve(ref)
    if household is None and "household_id" in ref:
        return 404
    home = world.homes.get(household or "")
    cited = set(body.json.get("incident_ids", ()))
    unfounded = not (body.json.get("incidents") or cited)
    foreign = not cited <= set(home.incidents if home else ())
    if body.refused or unfounded or foreign:
        return 400
    return 400 if _draft_refused(world, _agency(call), home, body.json) else 201


def warning_read_status(world: World, call: Call) -> int:
    warning = world.warnings.get(call.ids["warning_id"])
    return 200 if warning is not None and world.may_read(_agency(call), warning) else 404


def _owned(world: World, call: Call) -> tuple[int | None, Marker | None]:
    """404 for a warning the caller may not read, 403 for one it may read but did not issue."""
    warning = world.warnings.get(call.ids["warning_id"])
    if warning is None or not world.may_read(_agency(call), warning):
        return 404, None
    if warning.issuer != _agency(call):
        return 403, None
    return None, warning


def _sharing(warning: Marker, changes: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """Handling and sharing after a change: back to involved without sharers clears them."""
    handling = changes.get("handling", warning.handling)
    if "shared_with" in changes:
        return handling, frozenset(changes["shared_with"])
    if changes.get("handling") == "involved":
        return handling, frozenset()
    return handling, warning.shared_with


def warning_changed_status(world: World, call: Call) -> int:
    body = _body(call)
    if body.invalid:
        return 400
    refused, warning = _owned(world, call)
    if warning is None:
        return refused or 404
    tag = call.headers.get("If-Match")
    if tag is None:
        return 428
    if tag != f'"{warning.version}"':
        return 412
    if warning.status != "active":
        return 409
    handling, shared = _sharing(warning, body.json)
    draft = {**body.json, "handling": handling, "shared_with": sorted(shared)}
    return (
        400 if _draft_refused(world, warning.issuer, world.homes[warning.household], draft) else 200
    )


def warning_withdrawn_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    refused, warning = _owned(world, call)
    if warning is None:
        return refused or 404
    return 409 if warning.status == WITHDRAWN else 200


def warning_closed_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    refused, warning = _owned(world, call)
    if warning is None:
        return refused or 404
    return 409 if warning.status != "active" else 200


def warning_reviewed_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    refused, warning = _owned(world, call)
    if warning is None:
        return refused or 404
    if warning.status != "active":
        return 409
    return 400 if _body(call).refused else 200


def warning_query_status(world: World, call: Call) -> int:
    params = call.params
    valid = {
        "household_id": lambda v: RECORD_ID_PATTERN.fullmatch(v) is not None,
        "status": lambda v: v in STATUSES,
        "issued_by": lambda v: v == "mine",
        "review_due_before": lambda v: True,  # drawn as dates
        "limit": lambda v: 1 <= int(v) <= 200,
        "cursor": lambda v: v in world.pages,
    }
    ok = all(name in valid and valid[name](value) for name, value in params.items())
    return 200 if ok else 400


# --- the ids a response shows (its entry must name every one) ---


def _shown_by_warning(doc: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    yield "warning", doc["id"]
    yield "household", doc["household_id"]
    for incident in doc["incidents"]:
        yield "incident", incident["id"]
    for person in doc["persons_of_concern"]:
        yield "member", person["member_id"]


def matches_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect(("household", m["household_id"]) for m in response.get_json()["matches"])


def household_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect([("household", response.get_json()["id"])])


def members_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect(("member", m["id"]) for m in response.get_json()["items"])


def member_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect([("member", response.get_json()["id"])])


def briefing_returned(response: TestResponse) -> dict[str, set[str]]:
    doc = response.get_json()
    return _collect([
        ("household", doc["household"]["id"]),
        *(("member", m["id"]) for m in doc["members"]),
        *(pair for warning in doc["warnings"] for pair in _shown_by_warning(warning)),
    ])  # fmt: skip


def _involvement_pairs(doc: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    return [("involvement", doc["id"]), ("household", doc["household_id"])]


def involvement_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect(_involvement_pairs(response.get_json()))


def involvements_returned(response: TestResponse) -> dict[str, set[str]]:
    items = response.get_json()["items"]
    return _collect(pair for item in items for pair in _involvement_pairs(item))


def incident_returned(response: TestResponse) -> dict[str, set[str]]:
    doc = response.get_json()
    return _collect([("incident", doc["id"]), ("household", doc["household_id"])])


def incidents_returned(response: TestResponse) -> dict[str, set[str]]:
    items = response.get_json()["items"]
    return _collect(pair for i in items for pair in (("incident", i["id"]),
                                                     ("household", i["household_id"])))  # fmt: skip


def warning_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect(_shown_by_warning(response.get_json()))


def warnings_returned(response: TestResponse) -> dict[str, set[str]]:
    items = response.get_json()["items"]
    return _collect(pair for item in items for pair in _shown_by_warning(item))


def versions_returned(response: TestResponse) -> dict[str, set[str]]:
    """Each version's snapshot names the incidents the warning rests on and its persons."""
    snapshots = [item["warning"] for item in response.get_json()["items"]]
    return _collect([
        *(("incident", i) for s in snapshots for i in s["incident_ids"]),
        *(("member", p.get("member_id")) for s in snapshots for p in s["persons_of_concern"]),
    ])  # fmt: skip


# --- what successful responses must hold, and what the world learns from them ---


def _doc(response: TestResponse) -> Any:
    return response.get_json()


def check_lookup(world: World, call: Call, response: TestResponse) -> None:
    """The households the look-up names, and each one's flag as the caller may know it."""
    agency = _agency(call)
    matches = _doc(response)["matches"]
    assert {m["household_id"] for m in matches} == world.looked_up(_body(call).json), matches
    for match in matches:
        household = match["household_id"]
        assert match["involved"] == world.involved(agency, household)
        active = [w for w in world.warnings.values()
                  if w.household == household and w.status == "active"]  # fmt: skip
        known = [
            w for w in active if w.handling == "involved" or agency in (w.issuer, *w.shared_with)
        ]
        flag = match["flag"]
        assert flag["active_warnings"] == bool(active)
        levels = [RISK_LEVELS.index(w.risk_level) for w in active]
        assert flag["risk_level"] == (RISK_LEVELS[max(levels)] if levels else None)
        assert set(flag["categories"]) == {c for w in known for c in w.categories}


def check_household(world: World, call: Call, response: TestResponse) -> None:
    assert _doc(response)["id"] == call.ids["household_id"]


def check_members(world: World, call: Call, response: TestResponse) -> None:
    ids = {m["id"] for m in _doc(response)["items"]}
    assert ids == set(world.homes[call.ids["household_id"]].members)


def _member(fields: Mapping[str, Any], member: Member | None = None) -> Member:
    member = member or Member("", None, None)
    if "family_name" in fields:
        member.family_name = normalise_text(fields["family_name"])
    if "date_of_birth" in fields:
        member.born = fields["date_of_birth"]
    if "nhs_number" in fields:
        number = fields["nhs_number"]
        member.nhs_number = normalise_nhs_number(number) if number is not None else None
    return member


def member_added(world: World, call: Call, response: TestResponse) -> None:
    home = world.homes[call.ids["household_id"]]
    home.members[_doc(response)["id"]] = _member(_body(call).json)


def member_corrected(world: World, call: Call, response: TestResponse) -> None:
    home = world.homes[call.ids["household_id"]]
    assert _doc(response)["id"] == call.ids["member_id"]
    _member(_body(call).json, home.members[call.ids["member_id"]])


def check_briefing(world: World, call: Call, response: TestResponse) -> None:
    """The detail of the active warnings the caller may read, a flag for each other one."""
    agency, household = _agency(call), call.ids["household_id"]
    doc = _doc(response)
    active = [w for w in world.warnings.values()
              if w.household == household and w.status == "active"]  # fmt: skip
    shown = {w.id for w in active if world.may_read(agency, w)}
    assert {w["id"] for w in doc["warnings"]} == shown
    assert len(doc["restricted_warnings"]) == len(active) - len(shown)
    assert {m["id"] for m in doc["members"]} == set(world.homes[household].members)
    others = [i for i in world.involvements.values()
              if i.household == household and i.active and i.agency != agency]  # fmt: skip
    assert len(doc["other_agencies"]) == len(others)


def involvement_declared(world: World, call: Call, response: TestResponse) -> None:
    doc = _doc(response)
    home = world.settle(_body(call).json["household"], doc["household_id"])
    assert doc["agency_id"] == _agency(call) and doc["ended_at"] is None
    world.involve(_agency(call), home.id, doc["id"])


def involvement_ended(world: World, call: Call, response: TestResponse) -> None:
    involvement = world.involvements[call.ids["involvement_id"]]
    assert _doc(response)["household_id"] == involvement.household
    assert _doc(response)["ended_at"] is not None
    involvement.active = False


def check_involvements(world: World, call: Call, response: TestResponse) -> None:
    """The caller's own involvements, ended ones too; none of other agencies'."""
    household = call.params.get("household_id")
    mine = {i.id for i in world.involvements.values() if i.agency == _agency(call)
            and household in (None, i.household)}  # fmt: skip
    assert {item["id"] for item in _doc(response)["items"]} == mine


def incident_recorded(world: World, call: Call, response: TestResponse) -> None:
    doc = _doc(response)
    assert world.resolve(_body(call).json["household"]) == doc["household_id"]
    world.homes[doc["household_id"]].incidents[doc["id"]] = _agency(call)


def check_incidents(world: World, call: Call, response: TestResponse) -> None:
    ids = {item["id"] for item in _doc(response)["items"]}
    assert ids == world.readable_incidents(_agency(call), call.params["household_id"])


def _absorb(world: World, doc: Mapping[str, Any], response: TestResponse | None = None) -> Marker:
    """Check a warning document against the model; take the fields the model does not derive."""
    warning = world.warnings[doc["id"]]
    got = (doc["household_id"], doc["issuing_agency"]["agency_id"], doc["status"],
           doc["version"], doc["handling"], set(doc["shared_with"]))  # fmt: skip
    assert got == (warning.household, warning.issuer, warning.status, warning.version,
                   warning.handling, set(warning.shared_with)), (doc, warning)  # fmt: skip
    warning.risk_level, warning.categories = doc["risk_level"], frozenset(doc["categories"])
    warning.review_by = date.fromisoformat(doc["review_by"])
    assert {incident["id"] for incident in doc["incidents"]} == warning.incidents
    if response is not None:
        assert response.headers["ETag"] == f'"{warning.version}"'
    return warning


def warning_published(world: World, call: Call, response: TestResponse) -> None:
    agency, body, doc = _agency(call), _body(call).json, _doc(response)
    home = world.settle(body["household"], doc["household_id"])
    cited = set(body.get("incident_ids", ()))
    shown = {incident["id"] for incident in doc["incidents"]}
    assert cited <= shown and len(shown - cited) == len(body.get("incidents", ()))
    for incident in doc["incidents"]:
        home.incidents.setdefault(incident["id"], incident["agency_id"])
    if not world.involved(agency, home.id):  # publishing registers the issuer's involvement
        world.involve(agency, home.id)
    world.warnings[doc["id"]] = Marker(
        doc["id"], home.id, agency, body.get("handling", "involved"),
        frozenset(body.get("shared_with", ())), order=len(world.warnings),
        incidents=frozenset(shown),
    )  # fmt: skip
    _absorb(world, doc, response)


def warning_read(world: World, call: Call, response: TestResponse) -> None:
    _absorb(world, _doc(response), response)


def warning_changed(world: World, call: Call, response: TestResponse) -> None:
    warning = world.warnings[call.ids["warning_id"]]
    warning.handling, warning.shared_with = _sharing(warning, _body(call).json)
    warning.version += 1
    _absorb(world, _doc(response), response)


def _moved_to(status: str) -> Callable[[World, Call, TestResponse], None]:
    def moved(world: World, call: Call, response: TestResponse) -> None:
        warning = world.warnings[call.ids["warning_id"]]
        warning.status, warning.version = status, warning.version + 1
        _absorb(world, _doc(response), response)

    return moved


def warning_reviewed(world: World, call: Call, response: TestResponse) -> None:
    closing = _body(call).json["outcome"] == "close"
    _moved_to("inactive" if closing else "active")(world, call, response)


def check_versions(world: World, call: Call, response: TestResponse) -> None:
    warning = world.warnings[call.ids["warning_id"]]
    versions = [item["version"] for item in _doc(response)["items"]]
    assert versions == list(range(1, warning.version + 1))


def _filtered(world: World, agency: str, params: Mapping[str, str]) -> list[Marker]:
    found = [w for w in world.newest_first() if world.may_read(agency, w)]
    if "household_id" in params:
        found = [w for w in found if w.household == params["household_id"]]
    if "status" in params:
        found = [w for w in found if w.status == params["status"]]
    if "issued_by" in params:
        found = [w for w in found if w.issuer == agency]
    if "review_due_before" in params:
        before = date.fromisoformat(params["review_due_before"])
        found = [w for w in found if w.review_by < before]
    if "cursor" in params:
        after = world.warnings[world.pages[params["cursor"]]].order
        found = [w for w in found if w.order < after]
    return found


def check_warnings(world: World, call: Call, response: TestResponse) -> None:
    """Exactly the next page of the warnings the caller may read, newest first."""
    page = _doc(response)
    expected = _filtered(world, _agency(call), call.params)
    limit = int(call.params.get("limit", "50"))
    assert [item["id"] for item in page["items"]] == [w.id for w in expected[:limit]]
    assert (page["next"] is None) == (len(expected) <= limit)
    if page["next"] is not None:
        world.pages[page["next"]] = page["items"][-1]["id"]
    for item in page["items"]:
        _absorb(world, item)


# --- notifications and webhook endpoints ---

MAX_HOOKS = 10


def _params_status(call: Call, rules: Mapping[str, Callable[[str], bool]]) -> int:
    """400 for an unknown parameter or a value its rule refuses; else 200."""
    params = call.params
    if set(params) - set(rules):
        return 400
    return 200 if all(rules[name](value) for name, value in params.items()) else 400


def _within(low: int, high: int) -> Callable[[str], bool]:
    return lambda value: value.isascii() and value.isdigit() and low <= int(value) <= high


FEED_RULES = {"after": _within(0, 10**18 - 1), "limit": _within(1, 500)}
UNACKNOWLEDGED_RULES = {"older_than_hours": _within(0, 24 * 90), "limit": _within(1, 500)}
DELIVERY_RULES = {"status": lambda v: v in ("pending", "delivered", "failed", "dead"),
                  "limit": _within(1, 500)}  # fmt: skip


def feed_query(world: World) -> st.SearchStrategy[dict[str, str]]:
    valid = _some_of({"after": st.integers(0, 40).map(str), "limit": st.integers(1, 4).map(str)})
    return _maybe_invalid(valid, ({"after": "-1"}, {"limit": "0"}, {"limit": "501"},
                                  {"colour": "red"}))  # fmt: skip


def unacknowledged_query(world: World) -> st.SearchStrategy[dict[str, str]]:
    valid = _some_of({"older_than_hours": st.integers(0, 48).map(str),
                      "limit": st.integers(1, 4).map(str)})  # fmt: skip
    return _maybe_invalid(valid, ({"older_than_hours": "-1"}, {"limit": "0"}, {"colour": "red"}))


def delivery_query(world: World) -> st.SearchStrategy[dict[str, str]]:
    valid = _some_of({"status": st.sampled_from(["pending", "dead"]),
                      "limit": st.integers(1, 4).map(str)})  # fmt: skip
    return _maybe_invalid(valid, ({"status": "lost"}, {"limit": "0"}, {"colour": "red"}))


def _notification_pairs(doc: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    data = doc["data"]
    return [("notification", doc["id"]), ("household", data.get("household_id")),
            ("warning", data.get("warning_id"))]  # fmt: skip


def notifications_returned(response: TestResponse) -> dict[str, set[str]]:
    items = response.get_json()["items"]
    return _collect(pair for item in items for pair in _notification_pairs(item))


def notification_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect(_notification_pairs(response.get_json()))


def check_feed(world: World, call: Call, response: TestResponse) -> None:
    """The caller's own notifications (learnt here, for acknowledging); the next cursor moves
    on from the one given, never back."""
    page = _doc(response)
    for item in page["items"]:
        world.notifications[item["id"]] = _agency(call)
    assert int(page["next"]) >= int(call.params.get("after", "0"))
    assert (page["items"] == []) == (page["next"] == call.params.get("after", "0"))


def check_unacknowledged(world: World, call: Call, response: TestResponse) -> None:
    for item in _doc(response)["items"]:
        assert item["type"] == "warning.published" and item["acknowledged"] is None
        world.notifications[item["id"]] = _agency(call)


def notification_path(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    mine = [n for n, owner in world.notifications.items() if owner == agency]
    return st.fixed_dictionaries({"notification_id": pick(mine, world.notifications)})


def acknowledged_status(world: World, call: Call) -> int:
    return 200 if world.notifications.get(call.ids["notification_id"]) == _agency(call) else 404


def check_acknowledged(world: World, call: Call, response: TestResponse) -> None:
    assert _doc(response)["acknowledged"]["practitioner"] in PRACTITIONERS


def settings_body(
    world: World, agency: str | None, ids: Mapping[str, str]
) -> st.SearchStrategy[Body]:
    return st.booleans().map(lambda told: Body({"warning_accessed": told}))


def settings_changed(world: World, call: Call, response: TestResponse) -> None:
    world.told_of_reads[_agency(call)] = _body(call).json["warning_accessed"]
    assert _doc(response) == _body(call).json


def check_settings(world: World, call: Call, response: TestResponse) -> None:
    assert _doc(response) == {"warning_accessed": world.told_of_reads.get(_agency(call), True)}


def _live_hooks(world: World, agency: str | None) -> list[str]:
    return [h for h, hook in world.webhooks.items() if hook.agency == agency and not hook.deleted]


@st.composite
def webhook_body(draw: st.DrawFn, world: World, agency: str | None,
                 ids: Mapping[str, str]) -> Body:  # fmt: skip
    body: dict[str, Any] = {"url": f"http://127.0.0.1:9/{draw(st.integers(0, 99))}"}
    if draw(st.booleans()):
        body["event_types"] = draw(_codes(("warning.published", "incident.recorded"), 0))
    return Body(body)


def webhook_created_status(world: World, call: Call) -> int:
    if _body(call).invalid:
        return 400
    return 409 if len(_live_hooks(world, _agency(call))) >= MAX_HOOKS else 201


def webhook_created(world: World, call: Call, response: TestResponse) -> None:
    doc = _doc(response)
    assert doc["secret"].startswith("whsec_") and doc["url"] == _body(call).json["url"]
    world.webhooks[doc["id"]] = Hook(_agency(call))


def webhook_path(world: World, agency: str | None) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({"webhook_id": pick(_live_hooks(world, agency), world.webhooks)})


@st.composite
def delivery_path(draw: st.DrawFn, world: World, agency: str | None) -> dict[str, str]:
    webhook_id = draw(webhook_path(world, agency))["webhook_id"]
    own = [d for d, hook in world.deliveries.items() if hook == webhook_id]
    return {"webhook_id": webhook_id, "delivery_id": draw(pick(own, world.deliveries))}


def webhook_status(world: World, call: Call, found: int = 200) -> int:
    hook = world.webhooks.get(call.ids["webhook_id"])
    mine = hook is not None and hook.agency == _agency(call) and not hook.deleted
    return found if mine else 404


def rotate_body(
    world: World, agency: str | None, ids: Mapping[str, str]
) -> st.SearchStrategy[Body]:
    return st.sampled_from([{}, {"overlap_hours": 0}, {"overlap_hours": 48}]).map(Body)


def rotated_status(world: World, call: Call) -> int:
    return 400 if _body(call).invalid else webhook_status(world, call)


def deliveries_status(world: World, call: Call) -> int:
    return _params_status(call, DELIVERY_RULES) if webhook_status(world, call) == 200 else (
        400 if _params_status(call, DELIVERY_RULES) == 400 else 404)  # fmt: skip


def replay_status(world: World, call: Call) -> int:
    """Nothing is dead here (no worker runs): a delivery found is still pending, a 409."""
    if webhook_status(world, call) == 404:
        return 404
    return 409 if world.deliveries.get(call.ids["delivery_id"]) == call.ids["webhook_id"] else 404


def check_webhooks(world: World, call: Call, response: TestResponse) -> None:
    assert {item["id"] for item in _doc(response)["items"]} == set(
        _live_hooks(world, _agency(call))
    )


def webhook_deleted(world: World, call: Call, response: TestResponse) -> None:
    world.webhooks[call.ids["webhook_id"]].deleted = True


def delivery_queued(world: World, call: Call, response: TestResponse) -> None:
    doc = _doc(response)
    assert (doc["event_type"], doc["status"]) == ("webhook.test", "pending")
    world.deliveries[doc["id"]] = call.ids["webhook_id"]


def check_deliveries(world: World, call: Call, response: TestResponse) -> None:
    for item in _doc(response)["items"]:
        world.deliveries[item["id"]] = call.ids["webhook_id"]


def webhooks_returned(response: TestResponse) -> dict[str, set[str]]:
    return {"webhook": {item["id"] for item in response.get_json()["items"]}}


def webhook_returned(response: TestResponse) -> dict[str, set[str]]:
    return {"webhook": {response.get_json()["id"]}}


def _deliveries_shown(items: list[dict[str, Any]]) -> dict[str, set[str]]:
    pairs = [("delivery", item["id"]) for item in items]
    return _collect(pairs + [("notification", item["notification_id"]) for item in items])


def delivery_returned(response: TestResponse) -> dict[str, set[str]]:
    return _deliveries_shown([response.get_json()])


def deliveries_returned(response: TestResponse) -> dict[str, set[str]]:
    return _deliveries_shown(response.get_json()["items"])


def acknowledgements_returned(response: TestResponse) -> dict[str, set[str]]:
    return _collect(("agency", item["agency_id"]) for item in response.get_json()["items"])


def acknowledgements_status(world: World, call: Call) -> int:
    warning = world.warnings.get(call.ids["warning_id"])
    if warning is None or not world.may_read(_agency(call), warning):
        return 404
    return 200 if warning.issuer == _agency(call) else 403


AUDITORS = (AUDIT_READ, AUDIT_READ_ALL)
READ, WRITE, INVOLVE = (HOUSEHOLDS_READ,), (WARNINGS_WRITE,), (INVOLVEMENTS_WRITE,)
MANAGE = (NOTIFICATIONS_MANAGE,)
HOUSEHOLD = "/api/v1/households/<household_id>"
WARNING = "/api/v1/warnings/<warning_id>"
BAD_REASONS = (_without("reason"), _with("reason", ""))
# In the order the first step calls them, so that each finds records the ones before it made.
API_CALLS: tuple[ApiCall, ...] = (
    ApiCall("GET", "/api/v1/me", "caller:read", API_SCOPES,
            returned=lambda r: {"agency": {r.get_json()["agency"]["id"]}}, check=_check_me),
    ApiCall("GET", "/api/v1/agencies", "agency:list", API_SCOPES,
            returned=lambda r: {"agency": {item["id"] for item in r.get_json()["items"]}},
            check=_check_agencies),
    ApiCall("GET", "/api/v1/openapi.json", "api:describe", acting_context=False,
            check=_check_openapi),
    # households, members, involvements
    ApiCall("POST", "/api/v1/involvements", "involvement:create", INVOLVE,
            body=spoilable(involvement_body, _without("case_reference"),
                           _with("lead_practitioner", {"name": "Alex Morgan"}),
                           _with("household", {"uprn": "0"})),
            status=involvement_declared_status, returned=involvement_returned,
            check=involvement_declared),
    ApiCall("POST", "/api/v1/households/lookup", "household:lookup", READ,
            body=spoilable(lookup_body, lambda b: {}, _with("uprn", "0"),
                           lambda b: {"uprn": "200004", "person": {"nhs_number": NHS_SPELLINGS[0]}},
                           lambda b: {"person": {"family_name": "Pike"}},
                           lambda b: {"person": {"nhs_number": BAD_NHS_NUMBER}}),
            status=lambda w, c: 400 if _body(c).invalid else 200, returned=matches_returned,
            check=check_lookup),
    ApiCall("GET", HOUSEHOLD, "household:read", READ, path_ids=household_path,
            status=household_status, returned=household_returned, check=check_household),
    ApiCall("POST", f"{HOUSEHOLD}/members", "member:create", INVOLVE, path_ids=household_path,
            body=spoilable(member_body, _without("given_name"), _with("role", "parent"),
                           _with("nhs_number", BAD_NHS_NUMBER),
                           _with("date_of_birth", "1850-01-01")),
            status=member_added_status, returned=member_returned, check=member_added),
    ApiCall("GET", f"{HOUSEHOLD}/members", "member:list", READ, path_ids=household_path,
            status=household_status, returned=members_returned, check=check_members),
    ApiCall("PATCH", f"{HOUSEHOLD}/members/<member_id>", "member:update", INVOLVE,
            path_ids=member_path,
            body=spoilable(member_changes, _with("role", "parent"), _with("given_name", "")),
            status=member_corrected_status, returned=member_returned, check=member_corrected),
    # incidents and warnings
    ApiCall("POST", "/api/v1/incidents", "incident:create", WRITE,
            body=spoilable(incident_body, _with("categories", []), _without("summary"),
                           _with("categories", ["rudeness"]), _without("police_reported")),
            status=incident_recorded_status, returned=incident_returned,
            check=incident_recorded),
    ApiCall("GET", "/api/v1/incidents", "incident:list", READ, query=incident_query,
            status=incident_query_status, returned=incidents_returned, check=check_incidents,
            query_targets=("household_id",)),
    ApiCall("POST", "/api/v1/warnings", "warning:create", WRITE,
            body=spoilable(warning_body, _with("categories", []), _with("risk_level", "extreme"),
                           _with("status", "active"), _without("subject_informed"),
                           _with("subject_informed", {"informed": True}),
                           _with("persons_of_concern", [{"given_name": "Darren"}]),
                           _with("shared_with", ["no~such~id"])),
            status=warning_published_status, returned=warning_returned,
            check=warning_published),
    ApiCall("GET", WARNING, "warning:read", READ, path_ids=warning_path, actors=readers,
            status=warning_read_status, returned=warning_returned, check=warning_read),
    ApiCall("GET", "/api/v1/warnings", "warning:list", READ, query=warning_filters,
            status=warning_query_status, returned=warnings_returned, check=check_warnings),
    ApiCall("PATCH", WARNING, "warning:update", WRITE, path_ids=own_warning_path, actors=issuers,
            body=spoilable(warning_changes, lambda b: {}, _with("risk_level", "extreme"),
                           _with("status", "inactive"), _with("incidents", [])),
            preconditions=if_match, status=warning_changed_status, returned=warning_returned,
            check=warning_changed),
    ApiCall("GET", f"{WARNING}/versions", "warning:versions", READ, path_ids=warning_path,
            actors=readers, status=warning_read_status, returned=versions_returned,
            check=check_versions),
    ApiCall("GET", f"{HOUSEHOLD}/briefing", "household:briefing", READ, path_ids=household_path,
            status=household_status, returned=briefing_returned, check=check_briefing),
    ApiCall("POST", f"{WARNING}/review", "warning:review", WRITE, path_ids=own_warning_path,
            actors=issuers,
            body=spoilable(review_body, _without("outcome"), _with("outcome", "pause"),
                           lambda b: {"outcome": "continue"},
                           lambda b: {"outcome": "close", "reason": "x",
                                      "review_by": "2027-01-01"}),
            status=warning_reviewed_status, returned=warning_returned, check=warning_reviewed),
    ApiCall("POST", f"{WARNING}/close", "warning:close", WRITE, path_ids=own_warning_path,
            actors=issuers, body=spoilable(reason_body, *BAD_REASONS),
            status=warning_closed_status, returned=warning_returned,
            check=_moved_to("inactive")),
    ApiCall("POST", f"{WARNING}/withdraw", "warning:withdraw", WRITE, path_ids=own_warning_path,
            actors=issuers, body=spoilable(reason_body, *BAD_REASONS),
            status=warning_withdrawn_status, returned=warning_returned,
            check=_moved_to(WITHDRAWN)),
    ApiCall("GET", "/api/v1/involvements", "involvement:list", INVOLVE + READ,
            query=involvement_query, status=involvement_query_status,
            returned=involvements_returned, check=check_involvements),
    ApiCall("POST", "/api/v1/involvements/<involvement_id>/end", "involvement:end", INVOLVE,
            path_ids=involvement_path, body=spoilable(reason_body, *BAD_REASONS),
            status=involvement_ended_status, returned=involvement_returned,
            check=involvement_ended),
    ApiCall("GET", f"{WARNING}/acknowledgements", "warning:acknowledgements", READ,
            path_ids=warning_path, actors=issuers, status=acknowledgements_status,
            returned=acknowledgements_returned),
    # notifications and webhook endpoints
    ApiCall("GET", "/api/v1/notifications", "notification:list", READ, query=feed_query,
            status=lambda w, c: _params_status(c, FEED_RULES), returned=notifications_returned,
            check=check_feed),
    ApiCall("GET", "/api/v1/notifications/unacknowledged", "notification:unacknowledged", READ,
            query=unacknowledged_query, status=lambda w, c: _params_status(c, UNACKNOWLEDGED_RULES),
            returned=notifications_returned, check=check_unacknowledged),
    ApiCall("POST", "/api/v1/notifications/<notification_id>/ack", "notification:ack", READ,
            path_ids=notification_path, status=acknowledged_status,
            returned=notification_returned, check=check_acknowledged),
    ApiCall("PUT", "/api/v1/notifications/settings", "notification:settings", MANAGE,
            body=spoilable(settings_body, _without("warning_accessed"),
                           _with("warning_accessed", "yes")),
            status=lambda w, c: 400 if _body(c).invalid else 200, check=settings_changed),
    ApiCall("GET", "/api/v1/notifications/settings", "notification:settings-read",
            MANAGE + READ, check=check_settings),
    ApiCall("POST", "/api/v1/webhooks", "webhook:create", MANAGE,
            body=spoilable(webhook_body, _with("url", "ftp://example.org/x"),
                           _with("url", "not a url"), _with("event_types", ["warning.exploded"])),
            status=webhook_created_status, returned=webhook_returned, check=webhook_created),
    ApiCall("GET", "/api/v1/webhooks", "webhook:list", MANAGE, returned=webhooks_returned,
            check=check_webhooks),
    ApiCall("GET", "/api/v1/webhooks/<webhook_id>", "webhook:read", MANAGE,
            path_ids=webhook_path, status=webhook_status, returned=webhook_returned),
    ApiCall("POST", "/api/v1/webhooks/<webhook_id>/rotate-secret", "webhook:rotate-secret",
            MANAGE, path_ids=webhook_path,
            body=spoilable(rotate_body, _with("overlap_hours", 500), _with("overlap_hours", "2")),
            status=rotated_status, returned=webhook_returned),
    ApiCall("POST", "/api/v1/webhooks/<webhook_id>/test", "webhook:test", MANAGE,
            path_ids=webhook_path, status=lambda w, c: webhook_status(w, c, 202),
            returned=delivery_returned, check=delivery_queued),
    ApiCall("GET", "/api/v1/webhooks/<webhook_id>/deliveries", "webhook:deliveries", MANAGE,
            path_ids=webhook_path, query=delivery_query, status=deliveries_status,
            returned=deliveries_returned, check=check_deliveries),
    ApiCall("POST", "/api/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/replay",
            "webhook:replay", MANAGE, path_ids=delivery_path, status=replay_status),
    ApiCall("DELETE", "/api/v1/webhooks/<webhook_id>", "webhook:delete", MANAGE,
            path_ids=webhook_path, status=lambda w, c: webhook_status(w, c, 204),
            check=webhook_deleted),
    # the auditors'
    ApiCall("GET", "/api/v1/audit/events", "audit:search", AUDITORS, query=event_filters,
            status=_valid_filters, returned=_returned_seqs, check=_check_events),
    ApiCall("GET", "/api/v1/audit/events/export", "audit:export", AUDITORS,
            query=export_filters, status=_valid_filters, returned=_exported_seqs,
            check=_check_export),
    ApiCall("GET", "/api/v1/audit/households/<household_id>/access-report",
            "audit:access-report", AUDITORS, path_ids=_report_path,
            status=_report_status, check=_check_report),
    ApiCall("GET", "/api/v1/audit/verify", "audit:verify", (AUDIT_READ_ALL,),
            check=_check_verify),
)  # fmt: skip


CASE_SUBJECTS = ("household", "member", "involvement", "incident", "warning")
CASE_WORK = tuple(api for api in API_CALLS if api.action.split(":")[0] in CASE_SUBJECTS)
AUDIT_LISTINGS = tuple(api for api in API_CALLS if api.action in ("audit:search", "audit:export"))


# --- a fresh database per example -----------------------------------------------------------


@dataclass
class FreshApps:
    """Apps on fresh copies of the migrated template, one per example, made as conftest makes
    them."""

    template: str
    workdir: Path

    def open(self) -> tuple[Flask, Callable[[], None]]:
        database = ExitStack()
        app = build_app(database.enter_context(fresh_database(self.template, self.workdir)),
                        self.workdir)  # fmt: skip

        def close() -> None:
            dispose_app(app)
            database.close()

        return app, close


@pytest.fixture(scope="session")
def fresh_apps(template_database: str, tmp_path_factory: pytest.TempPathFactory) -> FreshApps:
    return FreshApps(template_database, tmp_path_factory.mktemp("properties"))


def _named(creds: ClientCredentials) -> dict[str, str | None]:
    """The entry fields naming the client that made a request."""
    return {"agency_id": creds.agency_id, "client_id": creds.client_id}


# --- the machine ----------------------------------------------------------------------------

acting_headers = st.fixed_dictionaries(
    {PRACTITIONER_HEADER: st.sampled_from(PRACTITIONERS),
     PURPOSE_HEADER: st.sampled_from(PURPOSES_OF_USE)}
)  # fmt: skip
some_acting_headers = acting_headers | acting_headers.flatmap(
    lambda full: st.sampled_from([{}, *({k: v} for k, v in full.items())])
)


class AuditedApi(RuleBasedStateMachine):
    """Three agencies calling the API at random; the audit log must keep up exactly."""

    def __init__(self, apps: FreshApps) -> None:
        super().__init__()
        self.app, self._close = apps.open()
        self.http = self.app.test_client()
        self.sent: list[Sent] = []
        self.checked = 0
        self.secrets: set[str] = set()
        self._ids = itertools.count(1)
        clients = [
            create_client(self.app, agency_id=create_agency(self.app), scopes=scopes)
            for scopes in CLIENT_SCOPES
        ]
        self.secrets.update(c.secret for c in clients if c.secret)
        self.world = World(
            datetime.now(UTC), clients, log=lambda: audit_entries(self.app),
            involvement_of=self._current_involvement,
        )  # fmt: skip
        self._seed_households(clients)
        self.scopes_of = {
            c.client_id: frozenset(s) for c, s in zip(clients, CLIENT_SCOPES, strict=True)
        }
        for creds in clients:  # every agency starts with a token holding all its scopes
            self._issue(creds, self.scopes_of[creds.client_id], wrong_secret=False)

    def _seed_households(self, clients: list[ClientCredentials]) -> None:
        """One household per agency, each worked with by that agency and the next one."""
        for n, creds in enumerate(clients):
            partner = clients[(n + 1) % len(clients)].agency_id
            household_id = create_household(
                self.app, created_by=creds.agency_id, involved=(creds.agency_id, partner)
            )
            with self.app.app_context():
                row = db.session.get(HouseholdRow, household_id)
                assert row is not None and row.postcode and row.address_line1
                address = {"line1": row.address_line1, "postcode": row.postcode}
                involvements = db.session.scalars(
                    select(InvolvementRow).where(InvolvementRow.household_id == household_id)
                ).all()
                self.world.homes[household_id] = Home(
                    household_id, names={name_of({"address": address})}
                )
                self.world.addresses.append((row.address_line1, row.postcode))
                agencies = [creds.agency_id, partner]  # (never by id: see ``pick``)
                for involvement in sorted(involvements, key=lambda i: agencies.index(i.agency_id)):
                    self.world.involve(involvement.agency_id, household_id, involvement.id)

    def _current_involvement(self, agency_id: str, household_id: str) -> str:
        with self.app.app_context():
            query = select(InvolvementRow.id).where(
                InvolvementRow.agency_id == agency_id,
                InvolvementRow.household_id == household_id,
                InvolvementRow.ended_at.is_(None),
            )
            return db.session.scalars(query).one()

    def teardown(self) -> None:
        self._close()

    # --- sending, with what each entry must say ---

    def _request_id(self) -> str:
        return f"prop-{next(self._ids)}-{uuid.uuid4().hex[:8]}"

    def _send(self, method: str, path: str, expected: Sent, **kwargs: Any) -> TestResponse:
        headers = {**kwargs.pop("headers", {}), "X-Request-Id": expected.request_id}
        response = self.http.open(path, method=method, headers=headers, **kwargs)
        self.world.requests += 1
        self.sent.append(expected)
        assert response.status_code == expected.status, (path, response.get_data(as_text=True))
        assert response.headers["X-Request-Id"] == expected.request_id
        return response

    # --- rules ---

    def _draw_token(self, data: st.DataObject) -> Token | None:
        """Mostly a token held (all scopes, fewer, revoked); sometimes none or a forged one."""
        creds = self.world.clients[0]
        forged = Token(uuid.uuid4().hex, creds, frozenset(API_SCOPES), forged=True)
        held = st.sampled_from(self.world.tokens[::-1])  # newest first: fewer scopes, revoked
        return data.draw(weighted((2, held), (1, st.sampled_from([None, forged]))), label="token")

    def _draw_scopes(self, data: st.DataObject, creds: ClientCredentials) -> frozenset[str]:
        """Some of the scopes ``creds`` holds, to ask a token for."""
        held = sorted(self.scopes_of[creds.client_id])
        return frozenset(data.draw(st.sets(st.sampled_from(held), min_size=1, max_size=3)))

    @initialize(data=st.data())
    def every_route_twice(self, data: st.DataObject) -> None:
        """Each route once past the access checks, then once with any token and headers; then
        the case work routes once more past the access checks (what the first round made, the
        second reads, changes, reviews, closes or withdraws)."""
        creds = data.draw(st.sampled_from(self.world.clients), label="client")
        self._issue(creds, self._draw_scopes(data, creds), wrong_secret=False)
        for api in API_CALLS:
            token = self._practitioner_token(data, api, self.world.tokens[:AGENCIES])
            self._call(data, api, token, data.draw(acting_headers, label="acting"))
            self._call(data, api, self._draw_token(data), data.draw(some_acting_headers))
        for api in (*CASE_WORK, *AUDIT_LISTINGS):
            self._practitioner_call(data, api)

    @rule(data=st.data(), api=st.sampled_from(API_CALLS))
    def call_api(self, data: st.DataObject, api: ApiCall) -> None:
        self._call(
            data, api, self._draw_token(data), data.draw(some_acting_headers, label="acting")
        )

    @rule(data=st.data(), api=st.sampled_from(API_CALLS))
    def call_api_as_practitioner(self, data: st.DataObject, api: ApiCall) -> None:
        """A live token with the route's scope and the acting context: into the use case."""
        self._practitioner_call(data, api)

    @rule(data=st.data(), api=st.sampled_from(CASE_WORK))
    def work_with_households(self, data: st.DataObject, api: ApiCall) -> None:
        """As a practitioner, on the households, incidents and warnings routes (the most
        states to reach)."""
        self._practitioner_call(data, api)

    def _practitioner_call(self, data: st.DataObject, api: ApiCall) -> None:
        token = self._practitioner_token(data, api, self.world.tokens)
        self._call(data, api, token, data.draw(acting_headers, label="acting"))

    def _practitioner_token(
        self, data: st.DataObject, api: ApiCall, tokens: list[Token]
    ) -> Token | None:
        """A live token with the route's scope, mostly of one of its actors' agencies."""
        scopes = set(api.scopes)
        fit = [t for t in tokens if t.live and (t.scopes & scopes or not scopes)]
        if not fit:
            return self._draw_token(data)
        actors = set(api.actors(self.world)) if api.actors else set()
        keen = [t for t in fit if t.creds.agency_id in actors]
        choices = [(3, st.sampled_from(keen))] if keen else []
        return data.draw(weighted(*choices, (1, st.sampled_from(fit))), label="token")

    def _call(
        self, data: st.DataObject, api: ApiCall, token: Token | None, acting: dict[str, str]
    ) -> None:
        agency = token.creds.agency_id if token else None
        ids = data.draw(api.path_ids(self.world, agency), label="path ids")
        params = data.draw(api.query(self.world), label="query")
        body = data.draw(api.body(self.world, agency, ids), label="body") if api.body else None
        extra = data.draw(api.preconditions(self.world, ids)) if api.preconditions else {}
        headers = {**acting, **extra,
                   **({"Authorization": f"Bearer {token.value}"} if token else {})}  # fmt: skip
        call = Call(token, ids, params, headers, self.world.requests, body)
        status = self._expected_status(api, call)
        who: dict[str, str | None] = {}
        if status < 400 and api.scopes and token is not None:
            who = {**_named(token.creds), "practitioner": acting.get(PRACTITIONER_HEADER),
                   "purpose": acting.get(PURPOSE_HEADER)}  # fmt: skip
        elif status == 401:
            who = {"agency_id": None, "client_id": None}
        targets = {name.removesuffix("_id"): recordable_id(value) for name, value in ids.items()
                   if name.endswith("_id")}  # fmt: skip
        if status < 400:
            targets.update({name.removesuffix("_id"): params[name] for name in api.query_targets})
        expected = Sent(self._request_id(), api.action, status, targets=targets, who=who)
        response = self._send(api.method, api.path(ids), expected, headers=headers,
                              query_string=params, json=body.json if body else None)  # fmt: skip
        if status < 400:
            returned = api.returned(response)
            # The record the request names (path or query) is on its entry already, as target.
            returned = {ref_type: found - {targets.get(ref_type)}
                        for ref_type, found in returned.items()}  # fmt: skip
            self.sent[-1] = replace(expected, returned=returned)
            api.check(self.world, call, response)

    def _expected_status(self, api: ApiCall, call: Call) -> int:
        if api.scopes:
            if call.token is None or not call.token.live:
                return 401
            if not call.token.scopes & set(api.scopes):
                return 403
            acting = (PRACTITIONER_HEADER, PURPOSE_HEADER)
            if api.acting_context and not all(h in call.headers for h in acting):
                return 400
        if not all(RECORD_ID_PATTERN.fullmatch(value) for value in call.ids.values()):
            return 404  # no record of ours has such an id
        return api.status(self.world, call)

    @rule(data=st.data(), wrong_secret=st.booleans())
    def ask_for_token(self, data: st.DataObject, wrong_secret: bool) -> None:
        creds = data.draw(st.sampled_from(self.world.clients), label="client")
        self._issue(creds, self._draw_scopes(data, creds), wrong_secret=wrong_secret)

    def _issue(
        self, creds: ClientCredentials, scopes: frozenset[str], *, wrong_secret: bool
    ) -> None:
        assert creds.secret is not None
        secret = creds.secret + ("-wrong" if wrong_secret else "")
        expected = Sent(self._request_id(), "token:issue", 401 if wrong_secret else 200,
                        who=_named(creds))  # fmt: skip
        response = self._send(
            "POST", "/oauth/token", expected,
            data={"grant_type": "client_credentials", "scope": " ".join(sorted(scopes))},
            headers=basic_auth(creds.client_id, secret),
        )  # fmt: skip
        if not wrong_secret:
            body = response.get_json()
            assert set(body["scope"].split()) == scopes
            self.secrets.add(body["access_token"])
            self.world.tokens.append(Token(body["access_token"], creds, scopes))

    @rule(
        data=st.data(),
        endpoint=st.sampled_from(["introspect", "revoke"]),
        by_owner=st.booleans(),
        wrong_secret=st.booleans(),
    )
    def manage_token(
        self, data: st.DataObject, endpoint: str, by_owner: bool, wrong_secret: bool
    ) -> None:
        token = self._draw_token(data) or self.world.tokens[0]
        others = [c for c in self.world.clients if c.client_id != token.creds.client_id]
        asker = token.creds if by_owner else data.draw(st.sampled_from(others), label="asker")
        assert asker.secret is not None
        secret = asker.secret + ("-wrong" if wrong_secret else "")
        if wrong_secret:
            status = 401
        elif endpoint == "revoke" and not (by_owner or token.forged):
            status = 400  # another client may not revoke a token (invalid_grant)
        else:
            status = 200
        expected = Sent(self._request_id(), f"token:{endpoint}", status, who=_named(asker))
        response = self._send("POST", f"/oauth/{endpoint}", expected, data={"token": token.value},
                              headers=basic_auth(asker.client_id, secret))  # fmt: skip
        if status == 200 and endpoint == "introspect":
            may_see = by_owner or TOKENS_INTROSPECT in self.scopes_of[asker.client_id]
            assert response.get_json()["active"] is (token.live and may_see)
        if status == 200 and endpoint == "revoke" and by_owner:
            token.revoked = True

    @rule(
        data=st.data(),
        suffix=st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
        health=st.sampled_from(["/healthz", "/readyz"]),
    )
    def call_outside_the_routes(self, data: st.DataObject, suffix: str, health: str) -> None:
        """An unknown path under /api/v1 (audited, 404), then a health check (not audited)."""
        token = self._draw_token(data)
        headers = {"Authorization": f"Bearer {token.value}"} if token else {}
        expected = Sent(self._request_id(), UNROUTED, 404)
        self._send("GET", f"/api/v1/zz-unknown-{suffix}", expected,
                   headers={**headers, **data.draw(acting_headers)})  # fmt: skip
        assert self.http.get(health).status_code == 200

    # --- invariants ---

    @invariant()
    def one_faithful_entry_per_request(self) -> None:
        entries = audit_entries(self.app)
        assert len(entries) == len(self.sent)
        by_request = {entry["request_id"]: entry for entry in entries}
        assert set(by_request) == {sent.request_id for sent in self.sent}
        for sent in self.sent[self.checked :]:
            entry = by_request[sent.request_id]
            got = (entry["action"], entry["status"], entry["outcome"])
            assert got == (sent.action, sent.status, expected_outcome(sent.status)), entry
            for name, value in sent.who.items():
                assert entry[name] == value, (name, entry)
            for ref_type, ref_id in sent.targets.items():
                assert ref_id in entry["targets"].get(ref_type, []), entry
            if sent.status >= 400:
                assert entry["returned"] == {}, entry
            for ref_type, ids in sent.returned.items():
                missing = ids - set(entry["returned"].get(ref_type, []))
                assert not missing, f"{sent.action} returned {ref_type} {missing} unrecorded"
        self.checked = len(self.sent)
        dump = json.dumps(entries)
        leaked = [secret for secret in self.secrets if secret in dump]
        assert not leaked, "a token or client secret is in the audit log"

    @invariant()
    def chain_verifies(self) -> None:
        with self.app.app_context():
            report = verify_log()
        assert report.ok, report
        assert report.checked == len(self.sent)


def test_audit_log_records_every_request_faithfully(fresh_apps: FreshApps) -> None:
    run_state_machine_as_test(lambda: AuditedApi(fresh_apps), settings=SETTINGS)


def test_every_audited_route_is_declared(fresh_apps: FreshApps) -> None:
    """Each /api/ and /oauth/ route is in the machine's tables, with its real action and scopes."""
    app, close = fresh_apps.open()
    try:
        routes = {
            (method, rule.rule): policy_of(app.view_functions[rule.endpoint])
            for rule in app.url_map.iter_rules()
            if rule.rule.startswith(("/api/", "/oauth/"))
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
        }
        declared = {(api.method, api.rule): api for api in API_CALLS}
        assert set(routes) == set(declared) | set(OAUTH_ACTIONS)
        for key, policy in routes.items():
            assert policy is not None, key
            if key in OAUTH_ACTIONS:
                assert (policy.public, policy.action) == (True, OAUTH_ACTIONS[key])
                continue
            api = declared[key]
            assert (policy.action, policy.scopes) == (api.action, api.scopes), key
            assert policy.acting_context == (api.acting_context and not policy.public), key
    finally:
        close()
