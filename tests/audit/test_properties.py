"""Property: whatever agencies do through the API, the audit log holds exactly one faithful,
chained entry per request.

A hypothesis state machine plays random sequences of calls by three agencies (all scopes, fewer
scopes, no token, revoked or forged tokens, missing acting-context headers, unknown paths, wrong
client secrets) against a fresh app and database per example, and checks after every step that
each request left exactly its entry: right action, status and outcome, every returned id named,
no token or secret anywhere, and an intact hash chain.

A new /api/v1 route joins by adding one ``ApiCall`` to ``API_CALLS``;
``test_every_audited_route_is_declared`` fails until it does.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
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
from werkzeug.test import TestResponse

from service.api.access import PRACTITIONER_HEADER, PURPOSE_HEADER, policy_of
from service.audit.verification import verify_log
from service.context import PURPOSES_OF_USE
from service.oauth.scopes import (
    ALL_SCOPES,
    API_SCOPES,
    AUDIT_READ,
    AUDIT_READ_ALL,
    TOKENS_INTROSPECT,
)
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
    max_examples=15,
    stateful_step_count=15,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# The first two agencies' clients hold every API scope; the third's may also introspect others'
# tokens (as a gateway would).
CLIENT_SCOPES = (API_SCOPES, API_SCOPES, ALL_SCOPES)
AGENCIES = len(CLIENT_SCOPES)
PRACTITIONERS = ("sw-0042", "hv-0007", "ho-0019")
OUTCOMES = ("allowed", "denied", "failed")
OAUTH_ACTIONS = {
    ("POST", "/oauth/token"): "token:issue",
    ("POST", "/oauth/introspect"): "token:introspect",
    ("POST", "/oauth/revoke"): "token:revoke",
}
UNROUTED = "request:unrouted"


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


@dataclass
class World:
    """What the machine knows: agencies, seeded households, tokens and every id seen so far."""

    started: datetime
    clients: list[ClientCredentials]
    involved: dict[str, set[str]]  # household id -> agencies involved with it
    log: Callable[[], list[dict[str, Any]]]  # the audit entries so far, in seq order
    tokens: list[Token] = field(default_factory=list)
    known: dict[str, set[str]] = field(default_factory=dict)  # ref type -> ids returned so far
    cursors: set[int] = field(default_factory=set)
    requests: int = 0  # audited requests sent so far

    def ids(self, ref_type: str) -> st.SearchStrategy[str]:
        """An id of this type seen before (if any), or one nobody has."""
        seen = sorted(self.known.get(ref_type, ()))
        fresh = st.uuids().map(str)
        return st.sampled_from(seen) | fresh if seen else fresh


@dataclass(frozen=True)
class Call:
    """One drawn API call, as the route's hooks see it."""

    token: Token | None
    ids: dict[str, str]
    params: dict[str, str]
    headers: dict[str, str]
    prior_entries: int  # entries in the log when the request was sent


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
Extract = Callable[[TestResponse], dict[str, set[str]]]


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
    path_ids: Mapping[str, Callable[[World], st.SearchStrategy[str]]] = field(default_factory=dict)
    query: Query = no_query
    body: Callable[[World], st.SearchStrategy[Any]] | None = None
    status: Callable[[World, Call], int] = always_ok  # for a caller past the access checks
    returned: Extract = nothing_returned  # ids of the records a successful response returns
    check: Callable[[World, Call, TestResponse], None] = no_check  # more about the body

    def path(self, ids: Mapping[str, str]) -> str:
        path = self.rule
        for name, value in ids.items():
            path = path.replace(f"<{name}>", value)
        return path


INVALID_FILTERS = ({"colour": "red"}, {"limit": "0"}, {"since": "yesterday"}, {"outcome": "maybe"})


def _timestamps(world: World) -> st.SearchStrategy[str]:
    return st.integers(-7200, 7200).map(
        lambda s: (world.started + timedelta(seconds=s)).isoformat()
    )


def _filter_values(world: World) -> dict[str, st.SearchStrategy[str]]:
    actions = [call.action for call in API_CALLS] + sorted(OAUTH_ACTIONS.values()) + [UNROUTED]
    return {
        "agency_id": st.sampled_from([c.agency_id for c in world.clients]),
        "practitioner": st.sampled_from(PRACTITIONERS),
        "action": st.sampled_from(actions),
        "outcome": st.sampled_from(OUTCOMES),
        "since": _timestamps(world),
        "until": _timestamps(world),
        "household_id": st.sampled_from(sorted(world.involved)) | st.uuids().map(str),
        "unusual": st.sampled_from(["true", "false"]),
    }


def _some_of(values: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """At most two of ``values`` (more would rarely match anything)."""
    names = st.lists(st.sampled_from(sorted(values)), max_size=2, unique=True)
    return names.flatmap(lambda chosen: st.fixed_dictionaries({n: values[n] for n in chosen}))


def _maybe_invalid(valid: st.SearchStrategy[dict[str, str]]) -> st.SearchStrategy[dict[str, str]]:
    broken = st.tuples(valid, st.sampled_from(INVALID_FILTERS)).map(lambda p: {**p[0], **p[1]})
    return valid | valid | broken


def _paging(world: World) -> dict[str, st.SearchStrategy[str]]:
    return {
        "limit": st.integers(1, 6).map(str),
        "cursor": st.sampled_from(sorted(world.cursors) or [1]).map(str),
    }


def event_filters(world: World) -> st.SearchStrategy[dict[str, str]]:
    """A few random filters, a page size and cursor, sometimes one invalid parameter."""
    return _maybe_invalid(_some_of({**_filter_values(world), **_paging(world)}))


def export_filters(world: World) -> st.SearchStrategy[dict[str, str]]:
    """As for events, and a format."""
    formats = {"format": st.sampled_from(["jsonl", "csv"])}
    return _maybe_invalid(_some_of({**_filter_values(world), **_paging(world), **formats}))


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


def _sees(world: World, call: Call, item: Mapping[str, Any]) -> bool:
    """Whether the caller may see this entry: all of them, or its own and its households'."""
    assert call.token is not None
    if AUDIT_READ_ALL in call.token.scopes:
        return True
    agency = call.token.creds.agency_id
    named = [*item["targets"].get("household", []), *item["returned"].get("household", [])]
    return item["agency_id"] == agency or any(agency in world.involved.get(h, ()) for h in named)


def _check_listing(world: World, call: Call, items: list[dict[str, Any]], limit: int) -> None:
    """Newest first, within the caller's view; without filters, exactly the newest it may see."""
    seqs = [item["seq"] for item in items]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert len(seqs) <= limit
    assert all(seq <= call.prior_entries for seq in seqs)  # never the request's own entry
    assert all(_sees(world, call, item) for item in items)
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
    assert ids == {c.agency_id for c in world.clients}


def _report_status(world: World, call: Call) -> int:
    assert call.token is not None
    if AUDIT_READ_ALL in call.token.scopes:
        return 200
    involved = world.involved.get(call.ids["household_id"], set())
    return 200 if call.token.creds.agency_id in involved else 404


def _check_report(world: World, call: Call, response: TestResponse) -> None:
    assert response.get_json()["household_id"] == call.ids["household_id"]


def _households(world: World) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(world.involved)) | world.ids("household")


AUDITORS = (AUDIT_READ, AUDIT_READ_ALL)
API_CALLS: tuple[ApiCall, ...] = (
    ApiCall("GET", "/api/v1/me", "caller:read", API_SCOPES,
            returned=lambda r: {"agency": {r.get_json()["agency"]["id"]}}, check=_check_me),
    ApiCall("GET", "/api/v1/agencies", "agency:list", API_SCOPES,
            returned=lambda r: {"agency": {item["id"] for item in r.get_json()["items"]}},
            check=_check_agencies),
    ApiCall("GET", "/api/v1/openapi.json", "api:describe", acting_context=False,
            check=_check_openapi),
    ApiCall("GET", "/api/v1/audit/events", "audit:search", AUDITORS, query=event_filters,
            status=_valid_filters, returned=_returned_seqs, check=_check_events),
    ApiCall("GET", "/api/v1/audit/events/export", "audit:export", AUDITORS,
            query=export_filters, status=_valid_filters, returned=_exported_seqs,
            check=_check_export),
    ApiCall("GET", "/api/v1/audit/households/<household_id>/access-report",
            "audit:access-report", AUDITORS, path_ids={"household_id": _households},
            status=_report_status, check=_check_report),
    ApiCall("GET", "/api/v1/audit/verify", "audit:verify", (AUDIT_READ_ALL,),
            check=_check_verify),
)  # fmt: skip


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
            datetime.now(UTC), clients, self._seed_households(clients),
            log=lambda: audit_entries(self.app),
        )  # fmt: skip
        self.scopes_of = {
            c.client_id: frozenset(s) for c, s in zip(clients, CLIENT_SCOPES, strict=True)
        }
        for creds in clients:  # every agency starts with a token holding all its scopes
            self._issue(creds, self.scopes_of[creds.client_id], wrong_secret=False)

    def _seed_households(self, clients: list[ClientCredentials]) -> dict[str, set[str]]:
        """One household per agency, each worked with by that agency and the next one."""
        involved: dict[str, set[str]] = {}
        with self.app.app_context():
            for n, creds in enumerate(clients):
                partner = clients[(n + 1) % len(clients)].agency_id
                household_id = create_household(
                    self.app, created_by=creds.agency_id, involved=(creds.agency_id, partner)
                )
                involved[household_id] = {creds.agency_id, partner}
        return involved

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
        return data.draw(held | held | st.sampled_from([None, forged]), label="token")

    def _draw_scopes(self, data: st.DataObject, creds: ClientCredentials) -> frozenset[str]:
        """Some of the scopes ``creds`` holds, to ask a token for."""
        held = sorted(self.scopes_of[creds.client_id])
        return frozenset(data.draw(st.sets(st.sampled_from(held), min_size=1, max_size=3)))

    @initialize(data=st.data())
    def every_route_twice(self, data: st.DataObject) -> None:
        """Each route once past the access checks, then once with any token and headers."""
        creds = data.draw(st.sampled_from(self.world.clients), label="client")
        self._issue(creds, self._draw_scopes(data, creds), wrong_secret=False)
        for api in API_CALLS:
            token = data.draw(st.sampled_from(self.world.tokens[:AGENCIES]), label="token")
            self._call(data, api, token, data.draw(acting_headers, label="acting"))
            self._call(data, api, self._draw_token(data), data.draw(some_acting_headers))

    @rule(data=st.data(), api=st.sampled_from(API_CALLS))
    def call_api(self, data: st.DataObject, api: ApiCall) -> None:
        self._call(
            data, api, self._draw_token(data), data.draw(some_acting_headers, label="acting")
        )

    def _call(
        self, data: st.DataObject, api: ApiCall, token: Token | None, acting: dict[str, str]
    ) -> None:
        ids = {name: data.draw(pick(self.world), label=name) for name, pick in api.path_ids.items()}
        params = data.draw(api.query(self.world), label="query")
        body = data.draw(api.body(self.world), label="body") if api.body else None
        headers = {**acting, **({"Authorization": f"Bearer {token.value}"} if token else {})}
        call = Call(token, ids, params, headers, self.world.requests)
        status = self._expected_status(api, call)
        who: dict[str, str | None] = {}
        if status < 400 and api.scopes and token is not None:
            who = {**_named(token.creds), "practitioner": acting.get(PRACTITIONER_HEADER),
                   "purpose": acting.get(PURPOSE_HEADER)}  # fmt: skip
        elif status == 401:
            who = {"agency_id": None, "client_id": None}
        targets = {name.removesuffix("_id"): value for name, value in ids.items()
                   if name.endswith("_id")}  # fmt: skip
        expected = Sent(self._request_id(), api.action, status, targets=targets, who=who)
        response = self._send(api.method, api.path(ids), expected, headers=headers,
                              query_string=params, json=body)  # fmt: skip
        if status < 400:
            returned = api.returned(response)
            self.sent[-1] = replace(expected, returned=returned)
            for ref_type, found in returned.items():
                self.world.known.setdefault(ref_type, set()).update(found)
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
