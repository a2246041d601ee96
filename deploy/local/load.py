#!/usr/bin/env python3
"""Drive a mixed workload through the local layout's nginx, then reconcile what it did.

    deploy/local/up
    .venv/bin/python deploy/local/load.py [--duration 600] [--clients 50] [--agencies 5]

Against the layout ``deploy/local/up`` brought up (its state directory: ALERTSHARE_LOCAL_DIR,
default /tmp/alertshare-local), over https verified against the layout's CA:

- several agencies, each with its own OAuth clients, made with the layout's CLI
  (``$state/alertshare agency add`` / ``client add``) and kept in ``$state/load/cast.json``
  so a second run reuses them. **One OAuth client per simulated client**: the layout keeps
  production's rate limits (600 requests a minute per client, 60 per source address for
  token requests) and none is raised for the load; a case system's instances would each hold
  their own client the same way. Tokens are fetched once per client (15 minutes) and again
  when near expiry.
- one https receiver per agency on 127.0.0.1 (keep-alive; certificate from the layout's CA;
  every delivery's Standard Webhooks signature verified), registered through
  ``POST /api/v1/webhooks`` (the layout lists 127.0.0.0/8 in
  ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS: production mode refuses loopback otherwise);
- households seeded through the API: each declared by three agencies (``POST /involvements``);
- then ``--clients`` concurrent clients for ``--duration`` seconds, each in a closed loop of
  look-ups (35%), briefings (30%), feed polls (25%) and publishes (10%).

Then it reconciles, and exits 1 if any check fails:

- no server error (5xx) and no request without an answer;
- audit entries == requests made, per client: every request carries an ``X-Request-Id`` of this
  run, and the audit log (read from the layout's PostgreSQL) must hold exactly one entry per
  request, token requests included, under the client that made it;
- the hash chain verifies (``alertshare audit verify``);
- every published warning reaches the receiver of every other agency involved with the
  household (``warning.published``), within ``--wait`` seconds.

It prints throughput and p50/p95/p99 latency per operation. ``faults.py`` reuses its parts.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import itertools
import json
import os
import random
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import urllib3
from standardwebhooks.webhooks import Webhook as Verifier

SCOPES = ("households:read", "involvements:write", "warnings:write", "notifications:manage")
AGENCY_TYPES = ("children_social_care", "health", "housing", "police", "education")
INVOLVED_PER_HOUSEHOLD = 3
MIX = (("lookup", 35), ("briefing", 30), ("feed", 25), ("publish", 10))
TOKEN_MARGIN = 120.0  # seconds before expiry a client fetches a new token


# --- the layout ------------------------------------------------------------------------------


def env_file(path: Path) -> dict[str, str]:
    """Read a KEY=value file as deploy/local/up writes them."""
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass
class Layout:
    """Where the local layout's parts are, read from its state directory."""

    state: Path
    ports: dict[str, str]
    app_env: dict[str, str]
    owner_env: dict[str, str]

    @classmethod
    def from_state(cls, state: str | None = None) -> Layout:
        path = Path(state or os.environ.get("ALERTSHARE_LOCAL_DIR", "/tmp/alertshare-local"))
        if not (path / ".alertshare-local").exists():
            sys.exit(f"no layout in {path}: run deploy/local/up first")
        return cls(
            path,
            env_file(path / "ports.env"),
            env_file(path / "app.env"),
            env_file(path / "owner.env"),
        )

    @property
    def https_port(self) -> int:
        return int(self.ports["HTTPS_PORT"])

    @property
    def ca(self) -> str:
        return str(self.state / "tls" / "ca.crt")

    @property
    def repo(self) -> Path:
        return Path(__file__).resolve().parents[2]

    def database_url(self, owner: bool = False) -> str:
        env = self.owner_env if owner else self.app_env
        return env["ALERTSHARE_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")

    def sql(self, query: str, params: Sequence[Any] = (), *, owner: bool = False) -> list[Any]:
        """Run one statement on the layout's database; return its rows (if any)."""
        with psycopg.connect(self.database_url(owner), autocommit=True, connect_timeout=5) as c:
            cursor = c.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def cli(self, *args: str) -> str:
        """Run the layout's CLI (the app's database role); return its output."""
        done = subprocess.run(
            [str(self.state / "alertshare"), *args], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"alertshare {' '.join(args[:2])}: {done.stderr.strip()}")
        return done.stdout

    def verify_chain(self) -> dict[str, Any]:
        """``alertshare audit verify``: the report, ``ok`` true when the chain is intact."""
        done = subprocess.run(
            [str(self.state / "alertshare"), "audit", "verify"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            return {"ok": False, "problem": done.stderr.strip()[-300:]}
        report: dict[str, Any] = json.loads(lines[-1])
        return report


# --- what every request did --------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One request as the client saw it. ``status`` 0: no answer (connection failed or cut)."""

    op: str
    client_id: str
    request_id: str
    status: int
    started: float  # time.monotonic()
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Recorder:
    """Every request of a run, with request ids of the run's own prefix."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"ld{secrets.token_hex(4)}"
        self.records: list[Record] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def next_id(self) -> str:
        with self._lock:
            return f"{self.prefix}-{next(self._numbers):07d}"

    def add(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def between(self, start: float, end: float) -> list[Record]:
        with self._lock:
            return [r for r in self.records if start <= r.started < end]

    def all(self) -> list[Record]:
        with self._lock:
            return list(self.records)


# --- receivers ---------------------------------------------------------------------------------


@dataclass
class Delivery:
    agency: str
    webhook_id: str
    event_type: str
    data: dict[str, Any]
    at: float


class Receivers:
    """One https receiver per agency on 127.0.0.1, keeping every verified delivery."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.secrets: dict[str, str] = {}
        self.deliveries: list[Delivery] = []
        self.refused = 0  # bad signature: must stay 0
        self.delay = 0.0  # seconds each answer waits (a slow receiver)
        self._lock = threading.Lock()
        self._servers: dict[str, ThreadingHTTPServer] = {}

    def start(self, agency: str) -> str:
        """Start the agency's receiver; return its URL."""
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the worker keeps its connections

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receivers.receive(agency, dict(self.headers.items()), body)
                if receivers.delay:
                    time.sleep(receivers.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls = self.layout.state / "tls"
        context.load_cert_chain(tls / "tls.crt", tls / "tls.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers[agency] = server
        return f"https://127.0.0.1:{server.server_address[1]}/alertshare/{agency}"

    def receive(self, agency: str, headers: dict[str, str], body: bytes) -> int:
        secret = self.secrets.get(agency)
        if secret is None:
            return 503  # registered a moment ago, secret not yet noted: the worker retries
        try:
            event = Verifier(secret).verify(body, headers)
        except Exception:  # noqa: BLE001 (forged, stale or unknown: refused, and counted)
            with self._lock:
                self.refused += 1
            return 400
        lowered = {k.lower(): v for k, v in headers.items()}
        delivery = Delivery(
            agency,
            lowered.get("webhook-id", ""),
            event.get("type", ""),
            event.get("data", {}),
            time.monotonic(),
        )
        with self._lock:
            self.deliveries.append(delivery)
        return 204

    def published(self) -> set[tuple[str, str]]:
        """(warning id, agency) of every warning.published received."""
        with self._lock:
            return {
                (d.data.get("warning_id", ""), d.agency)
                for d in self.deliveries
                if d.event_type == "warning.published"
            }

    def counts(self) -> tuple[int, int]:
        """Deliveries received, and how many repeated a webhook-id already received."""
        with self._lock:
            ids = Counter((d.agency, d.webhook_id) for d in self.deliveries)
        return sum(ids.values()), sum(n - 1 for n in ids.values())

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()


# --- clients -----------------------------------------------------------------------------------


class Client:
    """One simulated case-system client: its own OAuth client, token and kept connection."""

    def __init__(
        self,
        layout: Layout,
        recorder: Recorder,
        agency: str,
        client_id: str,
        secret: str,
        practitioner: str,
    ) -> None:
        self.agency, self.client_id, self.secret = agency, client_id, secret
        self.practitioner = practitioner
        self.recorder = recorder
        self.token: str | None = None
        self.token_until = 0.0
        self.token_status = 0
        self.cursor = "0"
        self.pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1",
            layout.https_port,
            ca_certs=layout.ca,
            cert_reqs="CERT_REQUIRED",
            maxsize=1,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=5.0, read=60.0),
        )

    def request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        purpose: str = "pre_visit",
    ) -> tuple[int, Any]:
        """Send one request; record it; return its status (0: no answer) and JSON body."""
        request_id = self.recorder.next_id()
        headers = {"X-Request-Id": request_id}
        body: bytes | None = None
        if form is not None:
            raw = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
            headers.update(Authorization=f"Basic {raw}")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form).encode()
        else:
            headers.update(
                {
                    "Authorization": f"Bearer {self.token}",
                    "X-Acting-Practitioner": self.practitioner,
                    "X-Purpose-Of-Use": purpose,
                }
            )
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(json_body).encode()
        started = time.monotonic()
        try:
            response = self.pool.urlopen(method, path, body=body, headers=headers, retries=False)
            status, data = response.status, response.data
        except (urllib3.exceptions.HTTPError, OSError):
            status, data = 0, b""
        self.recorder.add(Record(op, self.client_id, request_id, status, started, time.monotonic()))
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    def ensure_token(self) -> bool:
        """Fetch a token if there is none or it expires soon; say whether one is held."""
        if self.token and time.monotonic() < self.token_until - TOKEN_MARGIN:
            return True
        status, body = self.request(
            "token", "POST", "/oauth/token", form={"grant_type": "client_credentials"}
        )
        self.token_status = status
        if status != 200:
            return False
        self.token = body["access_token"]
        self.token_until = time.monotonic() + float(body.get("expires_in", 900))
        return True


# --- the cast: agencies and their clients, made with the CLI ------------------------------------


def make_cast(layout: Layout, agencies: int, clients: int) -> dict[str, Any]:
    """Return the agencies and OAuth clients (made with the CLI, kept for later runs)."""
    path = layout.state / "load" / "cast.json"
    cast: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    cast.setdefault("agencies", [])
    cast.setdefault("clients", [])
    for index in range(len(cast["agencies"]), agencies):
        slug = f"load-{chr(ord('a') + index)}"
        layout.cli(
            "agency",
            "add",
            slug,
            "--name",
            f"Load agency {slug[-1].upper()}",
            "--type",
            AGENCY_TYPES[index % len(AGENCY_TYPES)],
            "--duty-contact",
            "0300 000 0000",
        )
        cast["agencies"].append(slug)
    names = cast["agencies"][:agencies]
    missing = [names[i % len(names)] for i in range(len(cast["clients"]), clients)]

    def add_client(agency: str) -> dict[str, str]:
        scopes = [word for scope in SCOPES for word in ("--scope", scope)]
        out = layout.cli("client", "add", agency, "--name", "Load case system", *scopes)
        found = dict(re.findall(r"^(client_id|client_secret): (\S+)", out, re.MULTILINE))
        return {"agency": agency, "client_id": found["client_id"], "secret": found["client_secret"]}

    if missing:
        print(f"making {len(missing)} OAuth clients with the CLI...", file=sys.stderr)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            cast["clients"].extend(pool.map(add_client, missing))
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps(cast, indent=1))
    path.chmod(0o600)
    return cast


# --- the world: clients with tokens, receivers, webhooks, households ----------------------------


@dataclass
class Publish:
    warning_id: str
    household_id: str
    issuer: str
    client: Client


@dataclass
class World:
    layout: Layout
    recorder: Recorder
    receivers: Receivers
    clients: list[Client]
    agencies: list[str]
    households: list[dict[str, Any]] = field(default_factory=list)  # id, address, involved
    publishes: list[Publish] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def of_agency(self, agency: str) -> list[Client]:
        return [c for c in self.clients if c.agency == agency]

    def involving(self, agency: str) -> list[dict[str, Any]]:
        return [h for h in self.households if agency in h["involved"]]

    def published(self, publish: Publish) -> None:
        with self._lock:
            self.publishes.append(publish)

    def expected_deliveries(
        self, publishes: Iterable[Publish] | None = None
    ) -> set[tuple[str, str]]:
        """(warning id, agency) for every agency involved with a published warning's household
        other than its issuer."""
        by_id = {h["id"]: h for h in self.households}
        return {
            (p.warning_id, agency)
            for p in (self.publishes if publishes is None else publishes)
            for agency in by_id[p.household_id]["involved"]
            if agency != p.issuer
        }


def build_world(
    layout: Layout, *, agencies: int, clients: int, households: int, recorder: Recorder
) -> World:
    """Make (or reuse) the cast, start receivers, register webhooks, seed households."""
    cast = make_cast(layout, agencies, clients)
    names = cast["agencies"][:agencies]
    people = [
        Client(layout, recorder, c["agency"], c["client_id"], c["secret"], f"load-{i:02d}")
        for i, c in enumerate(c for c in cast["clients"] if c["agency"] in names)
    ][:clients]
    world = World(layout, recorder, Receivers(layout), people, names)
    # Tokens one at a time: the token endpoint's limit is per source address (60 a minute),
    # so a run started soon after another may have to wait for the next minute.
    for person in people:
        for _ in range(30):
            if person.ensure_token() or person.token_status != 429:
                break
            time.sleep(5)
        if person.token is None:
            sys.exit(f"no token for {person.client_id} ({person.token_status}): is it up?")
    for agency in names:
        register_receiver(world, agency)
    seed_households(world, households)
    return world


def register_receiver(world: World, agency: str) -> None:
    """Replace the agency's webhook endpoints by one to a fresh local receiver."""
    client = world.of_agency(agency)[0]
    status, listed = client.request("setup", "GET", "/api/v1/webhooks")
    if status != 200:
        sys.exit(f"cannot list {agency}'s webhooks: {status} {listed}")
    for old in listed["items"]:
        client.request("setup", "DELETE", f"/api/v1/webhooks/{old['id']}")
    url = world.receivers.start(agency)
    status, created = client.request("setup", "POST", "/api/v1/webhooks", json_body={"url": url})
    if status != 201:
        sys.exit(f"cannot register {agency}'s receiver {url}: {status} {created}")
    world.receivers.secrets[agency] = created["secret"]


def seed_households(world: World, count: int) -> None:
    """Each household declared through the API by three agencies (the first registers it)."""
    tag = world.recorder.prefix

    def seed(number: int) -> dict[str, Any]:
        involved = [
            world.agencies[(number + k) % len(world.agencies)]
            for k in range(min(INVOLVED_PER_HOUSEHOLD, len(world.agencies)))
        ]
        address = {"line1": f"{number} {tag} Road", "postcode": "SW1A 1AA"}
        household: dict[str, Any] = {"address": address, "involved": involved}
        for agency in involved:
            client = random.choice(world.of_agency(agency))
            ref = {"household_id": household["id"]} if "id" in household else {"address": address}
            status, body = client.request(
                "setup",
                "POST",
                "/api/v1/involvements",
                purpose="case_work",
                json_body={
                    "household": ref,
                    "case_reference": f"LD-{number}-{agency}",
                    "lead_practitioner": {"name": "Sam Patel", "contact": "01634 555010"},
                },
            )
            if status != 201:
                raise RuntimeError(f"involvement {number}/{agency}: {status} {body}")
            household["id"] = body["household_id"]
        return household

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        world.households = list(pool.map(seed, range(count)))


# --- the workload ------------------------------------------------------------------------------


def warning_body(household_id: str) -> dict[str, Any]:
    yesterday = date.today() - timedelta(days=1)
    return {
        "household": {"household_id": household_id},
        "categories": [random.choice(["verbal_abuse", "aggressive_behaviour", "harassment"])],
        "risk_level": random.choice(["low", "medium", "high"]),
        "children_in_household": False,
        "subject_informed": {"informed": True, "informed_on": str(yesterday)},
        "incidents": [
            {
                "occurred_on": str(yesterday),
                "police_reported": False,
                "summary": "Shouted at and threatened the visiting officer",
            }
        ],
    }


def one_operation(world: World, client: Client, rng: random.Random) -> None:
    """One step of a client's loop: an operation chosen by the mix."""
    if not client.ensure_token():
        time.sleep(0.2)  # the token endpoint failed (a fault step): do not spin on it
        return
    op = rng.choices([name for name, _ in MIX], weights=[w for _, w in MIX])[0]
    mine = world.involving(client.agency)
    if op == "lookup":
        household = rng.choice(world.households)
        client.request(
            "lookup",
            "POST",
            "/api/v1/households/lookup",
            json_body={"address": household["address"]},
        )
    elif op == "briefing":
        household = rng.choice(mine)
        client.request("briefing", "GET", f"/api/v1/households/{household['id']}/briefing")
    elif op == "feed":
        status, body = client.request(
            "feed", "GET", f"/api/v1/notifications?after={client.cursor}&limit=100"
        )
        if status == 200:
            client.cursor = body["next"]
    else:
        publish(world, client, rng.choice(mine))


def publish(world: World, client: Client, household: dict[str, Any]) -> tuple[int, Any]:
    """Publish a warning on ``household`` as ``client``; one answered 201 is noted, so the
    reconciliation expects its deliveries."""
    status, body = client.request(
        "publish",
        "POST",
        "/api/v1/warnings",
        purpose="case_work",
        json_body=warning_body(household["id"]),
    )
    if status == 201:
        world.published(Publish(body["id"], household["id"], client.agency, client))
    return status, body


def run_load(
    world: World,
    seconds: float,
    *,
    stop: threading.Event | None = None,
    clients: Sequence[Client] | None = None,
) -> tuple[float, float]:
    """Run every client's loop for ``seconds`` (or until ``stop``); return (start, end)."""
    stop = stop or threading.Event()
    start = time.monotonic()
    deadline = start + seconds

    def loop(index: int, client: Client) -> None:
        rng = random.Random(index)
        while not stop.is_set() and time.monotonic() < deadline:
            one_operation(world, client, rng)

    threads = [
        threading.Thread(target=loop, args=(i, c), daemon=True)
        for i, c in enumerate(clients or world.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return start, time.monotonic()


# --- reconciliation and figures ----------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def latency_table(records: Sequence[Record], seconds: float) -> str:
    """Requests, rate and p50/p95/p99 per operation (milliseconds)."""
    lines = [
        f"{'operation':<10} {'requests':>8} {'per s':>7} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8}  statuses"
    ]
    by_op: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_op[record.op].append(record)
    for op in sorted(by_op, key=lambda o: -len(by_op[o])) + ["all"]:
        group = list(records) if op == "all" else by_op[op]
        times = [r.seconds * 1000 for r in group]
        statuses = ", ".join(
            f"{s}: {n}" for s, n in sorted(Counter(r.status for r in group).items())
        )
        lines.append(
            f"{op:<10} {len(group):>8} {len(group) / seconds:>7.1f} {percentile(times, 0.5):>8.1f} "
            f"{percentile(times, 0.95):>8.1f} {percentile(times, 0.99):>8.1f} "
            f"{max(times, default=0):>8.1f}  {statuses}"
        )
    return "\n".join(lines)


@dataclass
class AuditCheck:
    requests: int
    entries: int
    clients_matching: int
    clients: int
    missing: list[str]  # request ids with no entry
    doubled: list[str]  # request ids with more than one entry
    misattributed: int  # entries under another client than the one that sent the request

    @property
    def ok(self) -> bool:
        return (
            self.requests == self.entries
            and not self.missing
            and not self.doubled
            and not self.misattributed
            and self.clients_matching == self.clients
        )


def reconcile_audit(layout: Layout, records: Sequence[Record]) -> AuditCheck:
    """Compare the run's requests with the audit entries carrying their request ids.

    A refusal over a rate limit (429) is counted into a summary entry, not one of its own: such
    requests are left out (and the run reports them; there should be none)."""
    prefix = records[0].request_id.rsplit("-", 1)[0] if records else "none"
    rows = layout.sql(
        "SELECT request_id, client_id FROM audit_entry WHERE request_id LIKE %s",
        (f"{prefix}-%",),
    )
    entries: dict[str, list[str | None]] = defaultdict(list)
    for request_id, client_id in rows:
        entries[request_id].append(client_id)
    counted = [r for r in records if r.status != 429]
    sent_by = {r.request_id: r.client_id for r in counted}
    per_client_sent = Counter(r.client_id for r in counted)
    per_client_logged = Counter(c for ids in entries.values() for c in ids)
    return AuditCheck(
        requests=len(counted),
        entries=len(rows),
        clients_matching=sum(
            1 for c, n in per_client_sent.items() if per_client_logged.get(c, 0) == n
        ),
        clients=len(per_client_sent),
        missing=[rid for rid in sent_by if rid not in entries],
        doubled=[rid for rid, ids in entries.items() if len(ids) > 1],
        misattributed=sum(
            1 for rid, ids in entries.items() for c in ids if c != sent_by.get(rid, c)
        ),
    )


def wait_for_deliveries(
    world: World, expected: set[tuple[str, str]], seconds: float
) -> tuple[set[tuple[str, str]], float]:
    """Wait until every expected (warning, agency) was received; return what is still missing
    and how long the wait was."""
    started = time.monotonic()
    while True:
        missing = expected - world.receivers.published()
        if not missing or time.monotonic() - started > seconds:
            return missing, time.monotonic() - started
        time.sleep(0.5)


def check(label: str, ok: bool, detail: str) -> bool:
    print(f"  [{'ok' if ok else 'FAIL'}] {label}: {detail}")
    return ok


def reconcile(world: World, records: Sequence[Record], wait: float) -> bool:
    """Print the reconciliation; return whether every check passed."""
    statuses = Counter(r.status for r in records)
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    results = [
        check("server errors (5xx)", server_errors == 0, f"{server_errors}"),
        check("requests without an answer", statuses.get(0, 0) == 0, f"{statuses.get(0, 0)}"),
        check("rate-limited (429)", statuses.get(429, 0) == 0, f"{statuses.get(429, 0)}"),
    ]
    audit = reconcile_audit(world.layout, records)
    results.append(
        check(
            "audit entries == requests, per client",
            audit.ok,
            f"{audit.entries} entries for {audit.requests} requests; {audit.clients_matching} of "
            f"{audit.clients} clients match; {len(audit.missing)} requests without an entry, "
            f"{len(audit.doubled)} with two or more, {audit.misattributed} misattributed",
        )
    )
    report = world.layout.verify_chain()
    results.append(
        check(
            "audit chain verifies",
            bool(report.get("ok")),
            f"{report.get('checked')} entries checked, head seq {report.get('head_seq')}"
            + (
                f"; {report.get('problem')} at {report.get('first_bad_seq')}"
                if not report.get("ok")
                else ""
            ),
        )
    )
    expected = world.expected_deliveries()
    missing, waited = wait_for_deliveries(world, expected, wait)
    received, repeated = world.receivers.counts()
    results.append(
        check(
            "every publish delivered to every involved agency",
            not missing,
            f"{len(expected) - len(missing)} of {len(expected)} (warning, agency) pairs from "
            f"{len(world.publishes)} publishes, all in within {waited:.1f} s of the load's end; "
            f"{received} deliveries received in all, {repeated} repeats of a webhook-id, "
            f"{world.receivers.refused} bad signatures",
        )
    )
    return all(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--agencies", type=int, default=5, help="agencies (5)")
    parser.add_argument("--households", type=int, default=100, help="households seeded (100)")
    parser.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for deliveries after the load (120)",
    )
    parser.add_argument("--state", help="the layout's state directory (ALERTSHARE_LOCAL_DIR)")
    args = parser.parse_args(argv)

    layout = Layout.from_state(args.state)
    recorder = Recorder()
    setup_started = time.monotonic()
    world = build_world(
        layout,
        agencies=args.agencies,
        clients=args.clients,
        households=args.households,
        recorder=recorder,
    )
    print(
        f"load {recorder.prefix}: {len(world.clients)} clients of {len(world.agencies)} "
        f"agencies, {len(world.households)} households, set up in "
        f"{time.monotonic() - setup_started:.1f} s; {args.duration:g} s of load through "
        f"https://127.0.0.1:{layout.https_port}"
    )
    start, end = run_load(world, args.duration)
    try:
        during = recorder.between(start, end)
        print(
            f"\n{len(during)} requests in {end - start:.1f} s: "
            f"{len(during) / (end - start):.1f} requests/s\n"
        )
        print(latency_table(during, end - start))
        print("\nreconciliation (setup and token requests included):")
        ok = reconcile(world, recorder.all(), args.wait)
    finally:
        world.receivers.stop()
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
