"""Benchmark the core API on PostgreSQL: household look-up, pre-visit briefing, publishing.

What it does, in one run:
  0. starts a PostgreSQL cluster of its own (initdb into a temporary directory, removed at the
     end), configured as a dedicated production server is: shared_buffers a quarter of the
     machine's memory, effective_cache_size half, autovacuum, fsync and synchronous commits on
     (support.production_settings). --database-url names a server to use instead: this
     machine's shared one runs with 128MB of shared_buffers and autovacuum off. There, at
     1,000,000 households, reads wait on the disk: this machine's kernel runs a DAMON scheme
     (kdamond, action pageout) that pages out memory left nearly untouched for a minute, so the
     page cache does not keep a database most of whose rows are read once a minute or less;
     shared_buffers (shared memory, and no swap here) does (see README.md, Performance);
  1. creates a fresh PostgreSQL database (dropped at the end unless --keep), migrates it, adds
     10 agencies and one OAuth client (agency-01, the caller), and takes a bearer token from the
     real token endpoint;
  2. seeds N households (--households, default 100,000) with members, involvements (1-3
     agencies each), incidents (~30% of households) and warnings (~15%: some restricted, some
     closed, some past review), each warning with its published (and closed) versions;
  3. seeds the bare-stack reference (../shared/bench/reference_app.py) in its own database;
  4. serves alertshare with gunicorn sync workers (2 x cores + 1) in production settings
     (ALERTSHARE_ENV=production, a production key ring, service.gunicorn_conf, INFO request
     log) and the reference beside it with as many workers;
  5. at each connection count (--connections, default 8 and 32) drives with wrk, rounds
     interleaved: the reference's `full` level, look-ups (POST /api/v1/households/lookup by
     UPRN of a random seeded household), briefings (GET /api/v1/households/{id}/briefing of a
     random household agency-01 is involved with) and publishes (POST /api/v1/warnings with
     one new incident, on households agency-01 had no involvement with; none of them is a
     look-up or briefing target);
  6. prints per endpoint the medians of req/s, p50 and p99, the ratio to the reference's
     `full` at the same connection count, and PASS/MISS against PERFORMANCE.md's targets:
     look-up >= 0.85x reference, briefing >= 0.6x, their p99 <= 100 ms at 8 connections and
     <= 300 ms at 32 (more connections: 300 ms), publish >= 150/s.

Beside each figure it prints the CPU time per request of the server's gunicorn workers (app)
and of its database's PostgreSQL backends (db), read from /proc, and the `cpu ratio` (the
reference's CPU per request over the endpoint's): on a machine shared with other work req/s
swings from round to round, CPU per request much less. Statuses >= 400 are counted from the
alertshare request log. Before each round every database is ANALYZEd, as autovacuum would
(see analyze()).

--compare-sizes instead seeds two databases (--small, default 10,000 households, and --large,
default 1,000,000), serves one alertshare per database, interleaves look-up and briefing rounds
between them, and prints the large/small ratio of p50 and p99 latency (target <= 1.5x).

Seeding goes through the real model and encryption code, in bulk: every row is built as a
model instance (Household, Person, Involvement, Incident, WarningMarker, WarningShare,
WarningVersion), so its constructor seals each personal field under a fresh per-record data key
wrapped by the key ring's active KEK and computes the blind indexes the model declares; a
version's snapshot is service.warnings.snapshot() of its warning. Only the writing is bulk: the
instances' column values go to PostgreSQL by COPY, in parallel processes (--jobs), with no ORM
session and no audit entries. Household ids are version-4 UUIDs drawn from a generator seeded
by the household's number, so data and request targets are reproducible.

Usage (from the repository root; needs wrk: apt-get install -y wrk):
    PYTHONPATH=. .venv/bin/python benchmarks/bench_core_api.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_core_api.py --households 1000000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_core_api.py --compare-sizes
    ... [--duration 10] [--rounds 3] [--connections 8,32] [--workers 5] [--jobs 2]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/alertshare_bench_core]
        [--profile-dir DIR] [--keep]

--profile-dir records each alertshare endpoint once more under py-spy after the measured rounds
(all workers, samples taken while holding the GIL, i.e. Python CPU rather than waits on
PostgreSQL; raw collapsed stacks, one file per endpoint).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.client
import json
import multiprocessing
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from gunicorn.config import Config as GunicornConfig
from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url
from support import (  # benchmarks/support.py
    free_port,
    private_cluster,
    production_settings,
    recreate_database,
    stop_process_group,
)

from service import agencies, clients, create_app, migrate
from service.crypto import generate_keyring, save_keyring
from service.crypto.normalise import normalise_postcode
from service.database import db
from service.keys import Keys, keys_in_use, load_keys
from service.models.household import Household, Person
from service.models.incident import Incident
from service.models.involvement import Involvement
from service.models.warning import WarningMarker, WarningShare, WarningVersion, warning_incident
from service.oauth.scopes import ALL_SCOPES
from service.vocabulary import CATEGORIES, LOW_LEVEL_CATEGORIES, PRECAUTIONS, default_review_date
from service.warnings import snapshot

DATABASE = "alertshare_bench_core"  # on the server --database-url names, if it does
HOST = "127.0.0.1"
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "bench"
REFERENCE_TOKEN = "bench-token-0001"
AGENCIES, CALLER = 10, 1  # agency-01 calls
TOKEN_LIFETIME = 24 * 3600
UPRN_BASE = 100_000_000_000
CHUNK = 2_000  # households per COPY transaction
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGETS = 10_000  # distinct households per request kind, at most
ACTING = "X-Acting-Practitioner: sw-0042|X-Purpose-Of-Use: pre_visit"
AGENCY_TYPES = ("children_social_care", "adult_social_care", "health", "education", "police")
STREETS = ("Orchard Way", "High Street", "Station Road", "Mill Lane", "Church Road", "Park View")
TOWNS = ("Maidstone", "Medway", "Ashford", "Canterbury", "Dartford", "Tonbridge")
OUTWARD = ("ME14", "ME15", "ME4", "TN23", "CT1", "DA1", "TN9", "CT2")
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
GIVEN = ("Alex", "Sam", "Jordan", "Mia", "Noah", "Leah", "Darren", "Chloe", "Tyler", "Ruby")
FAMILY = ("Pike", "Morgan", "Patel", "Okafor", "Smith", "Nowak", "Hughes", "Begum", "Kelly")
ROUTES = ("duty desk first", "lead practitioner's mobile", "secure email to the team inbox")


# --- the seeded world: one plan per household, drawn from a generator seeded by its number ---


@dataclass
class Plan:
    """What household ``index`` holds; its generator goes on to draw the details."""

    index: int
    household_id: str
    uprn: str
    agencies: tuple[int, ...]  # agency numbers involved; the first registered the household
    members: int
    incidents: int
    warnings: int
    rng: random.Random = field(repr=False)


def plan(index: int) -> Plan:
    rng = random.Random(index)
    household_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    count = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
    involved = tuple(rng.sample(range(1, AGENCIES + 1), count))
    members = rng.randint(1, 4)
    incidents = rng.choice((1, 1, 2, 3)) if rng.random() < 0.3 else 0
    warnings = rng.choice((1, 1, 1, 2)) if incidents and rng.random() < 0.5 else 0
    uprn = str(UPRN_BASE + index)
    return Plan(index, household_id, uprn, involved, members, incidents, warnings, rng)


def slug(agency: int) -> str:
    return f"agency-{agency:02d}"


def _postcode(rng: random.Random) -> str:
    letters = "".join(rng.choice(INWARD_LETTERS) for _ in range(2))
    return normalise_postcode(f"{rng.choice(OUTWARD)} {rng.randint(1, 9)}{letters}")


def _nhs_number(rng: random.Random) -> str | None:
    digits = [rng.randint(0, 9) for _ in range(9)]
    check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
    if check == 10:
        return None  # no valid NHS number starts with these nine digits
    return "".join(map(str, digits)) + str(check % 11)


# --- building rows through the models ----------------------------------------------------------


class Batch:
    """Rows for COPY, per table, read from model instances' mapped columns."""

    ORDER = ("household", "person", "involvement", "incident", "warning", "warning_share",
             "warning_incident", "warning_version")  # fmt: skip

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)

    def add(self, *records: Any) -> None:
        for record in records:
            keys = _column_keys(type(record))
            self.rows[record.__tablename__].append(tuple(getattr(record, k) for k, _ in keys))

    def link(self, warning_id: str, incident_id: str) -> None:
        self.rows[warning_incident.name].append((warning_id, incident_id))

    def copy_into(self, connection: psycopg.Connection[Any]) -> int:
        with connection.cursor() as cursor:
            for table in self.ORDER:
                names = ", ".join(f'"{name}"' for name in _column_names(table))
                with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                    for row in self.rows.get(table, ()):
                        copy.write_row(row)
        return sum(len(rows) for rows in self.rows.values())


@functools.cache
def _column_keys(model: type) -> tuple[tuple[str, str], ...]:
    """(attribute key, column name) of every column the model maps."""
    mapper = inspect(model)
    return tuple((mapper.get_property_by_column(c).key, c.name) for c in mapper.local_table.c)


def _column_names(table: str) -> list[str]:
    if table == warning_incident.name:
        return [c.name for c in warning_incident.c]
    model = {m.__tablename__: m for m in SEEDED_MODELS}[table]
    return [name for _, name in _column_keys(model)]


SEEDED_MODELS: tuple[type, ...] = (Household, Person, Involvement, Incident, WarningMarker,
                                   WarningShare, WarningVersion)  # fmt: skip


def add_household(batch: Batch, p: Plan, now: datetime) -> None:
    """Build household ``p`` (members, involvements, incidents, warnings) into ``batch``."""
    rng = p.rng
    household = Household(
        id=p.household_id, created_by=slug(p.agencies[0]), uprn=p.uprn,
        address_line1=f"{p.index % 397 + 1} {rng.choice(STREETS)}",
        address_line2=f"Flat {rng.randint(1, 30)}" if rng.random() < 0.2 else None,
        town=rng.choice(TOWNS), postcode=_postcode(rng),
        created_at=now - timedelta(days=rng.randint(800, 3000)),
    )  # fmt: skip
    members = _members(p, household)
    batch.add(household, *members, *(_involvement(p, household, a, now) for a in p.agencies))
    incidents = [_incident(p, household, now) for _ in range(p.incidents)]
    batch.add(*incidents)
    for n in range(p.warnings):  # the first rests on every incident, a second on the last
        _add_warning(batch, p, members, incidents[-1:] if n else incidents, now)


def _members(p: Plan, household: Household) -> list[Person]:
    rng = p.rng
    family = rng.choice(FAMILY)
    people = []
    for n in range(p.members):
        child = n >= 2 or (n == 1 and rng.random() < 0.4)
        born = date(rng.randint(2009, 2024) if child else rng.randint(1960, 2002),
                    rng.randint(1, 12), rng.randint(1, 28))  # fmt: skip
        people.append(Person(
            household_id=household.id, role="child" if child else "adult",
            given_name=rng.choice(GIVEN), family_name=family, date_of_birth=born.isoformat(),
            nhs_number=_nhs_number(rng) if rng.random() < 0.6 else None,
            relationship=("son", "daughter") [n % 2] if child else ("mother", "father")[n % 2],
            created_at=household.created_at + timedelta(minutes=n), updated_at=None,
        ))  # fmt: skip
    return people


def _involvement(p: Plan, household: Household, agency: int, now: datetime) -> Involvement:
    rng = p.rng
    return Involvement(
        household_id=household.id, agency_id=slug(agency),
        case_reference=f"A{agency:02d}-REF-{rng.randint(10_000, 99_999)}",
        lead_practitioner=f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}",
        lead_contact=f"07700 9{rng.randint(0, 99_999):05d}", contact_route=rng.choice(ROUTES),
        started_at=now - timedelta(days=rng.randint(400, 700)), ended_at=None, ended_reason=None,
    )  # fmt: skip


LOW_LEVEL = tuple(sorted(LOW_LEVEL_CATEGORIES))


def _incident(p: Plan, household: Household, now: datetime) -> Incident:
    rng = p.rng
    pool = LOW_LEVEL if rng.random() < 0.6 else CATEGORIES
    reported = rng.random() < 0.4
    return Incident(
        household_id=household.id, agency_id=slug(rng.choice(p.agencies)),
        occurred_on=(now - timedelta(days=rng.randint(20, 700))).date(),
        categories=" ".join(sorted(set(rng.sample(pool, rng.randint(1, 2))))),
        police_reported=reported,
        summary="Shouted at and threatened on the doorstep during a planned home visit",
        description="The practitioner was followed to the car and the door was slammed on "
        "them; a neighbour witnessed it. Recorded the same afternoon with the team manager.",
        crime_reference=f"KE-26-{rng.randint(100_000, 999_999)}" if reported else None,
        recorded_at=now - timedelta(days=10),
    )  # fmt: skip


def _add_warning(
    batch: Batch, p: Plan, members: list[Person], incidents: list[Incident], now: datetime
) -> None:
    """A warning on its incidents, as publish_warning would write it, with its versions."""
    rng, issuer = p.rng, incidents[0].agency_id
    warning = _warning(p, members, incidents, issuer, now)
    others = [slug(a) for a in p.agencies if slug(a) != issuer]
    if rng.random() < 0.15:
        warning.handling = "restricted"
        shared = rng.sample(others, min(len(others), rng.randint(0, 1)))
        warning.shares = [WarningShare(warning_id=warning.id, agency_id=a) for a in shared]
    warning.incidents = incidents
    changes = ["published"] + (["closed"] if rng.random() < 0.1 else [])
    for version, change in enumerate(changes, start=1):
        if change == "closed":
            warning.status, warning.status_reason = "inactive", "Family moved; risk reassessed"
        warning.version = version
        batch.add(WarningVersion(
            warning_id=warning.id, version=version, change=change, changed_by=issuer,
            changed_at=warning.created_at, snapshot=json.dumps(snapshot(warning), default=str),
        ))  # fmt: skip
    batch.add(warning, *warning.shares)
    for incident in incidents:
        batch.link(warning.id, incident.id)


def _warning(
    p: Plan, members: list[Person], incidents: list[Incident], issuer: str, now: datetime
) -> WarningMarker:
    rng = p.rng
    created = now - timedelta(days=rng.randint(1, 300))
    categories = sorted({c for i in incidents for c in i.category_list})
    informed = rng.random() < 0.7
    return WarningMarker(
        household_id=p.household_id, issuing_agency_id=issuer, status="active", version=1,
        risk_level=rng.choice(("low", "medium", "medium", "high")),
        categories=" ".join(categories),
        precautions=" ".join(rng.sample(list(PRECAUTIONS), rng.randint(1, 3))),
        persons_of_concern=json.dumps([{"member_id": members[0].id}]), handling="involved",
        children_in_household=any(m.role == "child" for m in members),
        subject_informed=informed, informed_on=created.date() if informed else None,
        reason_withheld=None if informed else "Telling him would raise the risk to the children",
        recheck_on=None if informed else created.date() + timedelta(days=90),
        review_by=default_review_date(categories, created.date()), status_reason=None,
        created_at=created, updated_at=created,
    )  # fmt: skip


# --- seeding ------------------------------------------------------------------------------------


@functools.cache
def _keys(keyring: str) -> Keys:
    return load_keys({"KEYRING_JSON": None, "KEYRING": keyring, "ENV": "production"})


def _libpq(url: str | URL) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def seed_range(job: tuple[str, str, int, int]) -> int:
    """Build households [start, stop) through the models and COPY them (one transaction)."""
    url, keyring, start, stop = job
    batch, now = Batch(), datetime.now(UTC)
    with keys_in_use(_keys(keyring)):
        for index in range(start, stop):
            add_household(batch, plan(index), now)
    with psycopg.connect(_libpq(url)) as connection:
        connection.execute("SET synchronous_commit = off")  # this loader's commits only
        return batch.copy_into(connection)


def seed_households(url: str, keyring: str, households: int, jobs: int) -> None:
    started, rows, done = time.monotonic(), 0, 0
    work = [(url, keyring, s, min(s + CHUNK, households)) for s in range(0, households, CHUNK)]
    step = max(1, len(work) // 10)
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for n, added in enumerate(pool.imap_unordered(seed_range, work), start=1):
            rows, done = rows + added, done + 1
            if n % step == 0 or n == len(work):
                elapsed = time.monotonic() - started
                print(f"  seeded {min(done * CHUNK, households):,} households, {rows:,} rows, "
                      f"{elapsed:.0f} s", flush=True)  # fmt: skip
    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
        # Write the seeding's dirty pages out now: otherwise the checkpoint that follows a bulk
        # load lands in the first measured round (a 1,000,000-household round 1 once had a p99
        # of 512 ms, round 2 28 ms). A database in service has no such backlog.
        connection.execute("CHECKPOINT")


def prepare(url: str, data_dir: Path, keyring: str) -> str:
    """Migrate, add the agencies and the caller's client; return its bearer token."""
    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": url, "KEYRING": keyring,
                      "LOG_LEVEL": "WARNING", "TOKEN_EXPIRES_IN": TOKEN_LIFETIME})  # fmt: skip
    try:
        with app.app_context():
            migrate.upgrade()
            for n in range(1, AGENCIES + 1):
                kind = AGENCY_TYPES[n % len(AGENCY_TYPES)]
                duty = f"Duty desk 0300 555 {n:04d}; out of hours 0300 555 9{n:03d}"
                agencies.add_agency(slug(n), f"Agency {n:02d} {kind.replace('_', ' ')}", kind, duty)
            issued = clients.add_client(slug(CALLER), "Benchmark case system", list(ALL_SCOPES))
            db.session.commit()
            basic = f"{issued.client.client_id}:{issued.secret}".encode()
        response = app.test_client().post(
            "/oauth/token", data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {base64.b64encode(basic).decode()}"},
        )  # fmt: skip
        if response.status_code != 200:
            raise RuntimeError(f"token request failed: {response.status_code} {response.data!r}")
        return str(response.get_json()["access_token"])
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def seed_alertshare(url: str, data_dir: Path, households: int, jobs: int) -> str:
    """A fresh database with ``households`` seeded; return the caller's token."""
    keyring = str(data_dir / "keyring.json")
    if not Path(keyring).exists():
        save_keyring(generate_keyring(development=False), keyring)
    print(f"seeding {households:,} households into {make_url(url).database}", flush=True)
    recreate_database(url)
    token = prepare(url, data_dir, keyring)
    seed_households(url, keyring, households, jobs)
    return token


def seed_reference(url: str) -> None:
    recreate_database(url)
    env = dict(os.environ, BENCH_DB=url, PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, str(REFERENCE_DIR / "reference_app.py"), "seed"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)


# --- request targets ----------------------------------------------------------------------------


@dataclass
class Targets:
    """Request lines (method, path, body separated by tabs) for each kind of request."""

    lookups: list[str] = field(default_factory=list)
    briefings: list[str] = field(default_factory=list)
    publishes: list[str] = field(default_factory=list)
    flagged: int = 0  # briefing targets with at least one warning


def choose_targets(households: int, seed: int = 8) -> Targets:
    """Look-ups of any household; briefings of the caller's; publishes on others, apart."""
    targets, today = Targets(), datetime.now(UTC).date()
    publish_pool = min(TARGETS, households // 10)
    candidates = random.Random(seed).sample(range(households), min(households, 40 * TARGETS))
    for index in candidates:
        p = plan(index)
        if CALLER not in p.agencies and len(targets.publishes) < publish_pool:
            targets.publishes.append(f"POST\t/api/v1/warnings\t{_publish_body(p, today)}")
            continue
        if len(targets.lookups) < TARGETS:
            body = json.dumps({"uprn": p.uprn})
            targets.lookups.append(f"POST\t/api/v1/households/lookup\t{body}")
        if CALLER in p.agencies and len(targets.briefings) < TARGETS:
            targets.briefings.append(f"GET\t/api/v1/households/{p.household_id}/briefing\t")
            targets.flagged += p.warnings > 0
    return targets


def _publish_body(p: Plan, today: date) -> str:
    return json.dumps({
        "household": {"uprn": p.uprn}, "categories": ["verbal_abuse", "threat_of_violence"],
        "risk_level": "medium", "precautions": ["joint_visit", "no_lone_visit"],
        "incidents": [{"occurred_on": str(today - timedelta(days=1)), "police_reported": True,
                       "summary": "Threatened on the doorstep during a home visit",
                       "crime_reference": f"KE-26-{p.index % 1_000_000:06d}"}],
        "children_in_household": True,
        "subject_informed": {"informed": False, "reason_withheld": "Would raise the risk",
                             "recheck_on": str(today + timedelta(days=30))},
    })  # fmt: skip


# --- servers ------------------------------------------------------------------------------------


class Server:
    """A gunicorn process group on loopback, started and stopped by this script only."""

    def __init__(
        self, label: str, argv: list[str], env: dict[str, str], log: Path, database: str
    ) -> None:
        self.label, self.port, self.database = label, free_port(), database
        self.log_path, self.log_read = log, 0
        self.log = log.open("wb")
        command = [sys.executable, "-m", "gunicorn", "-b", f"{HOST}:{self.port}", *argv]
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, probe: Callable[[int], int], timeout: float = 120.0) -> None:
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label}: gunicorn exited ({self.process.returncode})")
            with suppress(OSError):
                status = probe(self.port)
                if status == 200:
                    return
                last = f"status {status}"
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s: {last}")

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time used so far by this server's workers, and by its database's backends."""
        workers, backends = 0, 0
        for proc in Path("/proc").iterdir():
            with suppress(OSError, ValueError, IndexError):
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                ticks = int(stat[11]) + int(stat[12])
                if int(stat[1]) == self.process.pid:
                    workers += ticks
                elif _is_backend_of(proc, self.database):
                    backends += ticks
        return workers / CLOCK_TICKS, backends / CLOCK_TICKS

    def refusals(self) -> dict[int, int]:
        """Statuses >= 400 in the request log since the last call (alertshare logs each)."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_read)
            lines, self.log_read = log.readlines(), log.tell()
        found: dict[int, int] = defaultdict(int)
        for line in lines:
            if line.startswith(b"{") and b'"status"' in line:
                status = int(json.loads(line).get("status", 0))
                if status >= 400:
                    found[status] += 1
        return dict(found)

    def stop(self) -> None:
        stop_process_group(self.process)
        self.log.close()


def _is_backend_of(proc: Path, database: str) -> bool:
    title = (proc / "cmdline").read_bytes()
    return title.startswith(b"postgres: ") and f" {database} ".encode() in title


def alertshare_server(label: str, url: str, data_dir: Path, workers: int, log_level: str) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTSHARE_")}
    env.update(
        ALERTSHARE_ENV="production", ALERTSHARE_SECRET_KEY=secrets.token_urlsafe(48),
        ALERTSHARE_ISSUER="https://alertshare.bench.invalid", ALERTSHARE_DATABASE_URL=url,
        ALERTSHARE_DATA_DIR=str(data_dir), ALERTSHARE_KEYRING=str(data_dir / "keyring.json"),
        ALERTSHARE_LOG_LEVEL=log_level, PYTHONPATH=_pythonpath(),
        # What is measured is the API, not its rate limits: none this load reaches (and, with
        # in-memory counts in several workers, production wants them declared a gateway's).
        ALERTSHARE_RATE_LIMIT_AUTHENTICATED="1000000/minute",
        ALERTSHARE_RATE_LIMIT_ANONYMOUS="1000000/minute", ALERTSHARE_RATE_LIMITS_BY_GATEWAY="true",
    )  # fmt: skip
    argv = ["-c", "python:service.gunicorn_conf", "-w", str(workers), "service.wsgi:app"]
    database = str(make_url(url).database)
    return Server(label, argv, env, data_dir / f"gunicorn-{label}.log", database)


def reference_server(url: str, data_dir: Path, workers: int) -> Server:
    env = dict(os.environ, BENCH_DB=url, PYTHONDONTWRITEBYTECODE="1")
    argv = ["--chdir", str(REFERENCE_DIR), "-w", str(workers), "reference_app:app"]
    if "control_socket_disable" in GunicornConfig().settings:
        argv.insert(0, "--no-control-socket")  # gunicorn 27: one default socket path per user
    database = str(make_url(url).database)
    return Server("reference", argv, env, data_dir / "gunicorn-reference.log", database)


def _pythonpath() -> str:
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))


def probe(method: str, path: str, headers: dict[str, str], body: str | None = None) -> Any:
    def call(port: int) -> int:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    return call


def header_dict(spec: str) -> dict[str, str]:
    return dict(
        (name.strip(), value.strip()) for name, value in (h.split(":", 1) for h in spec.split("|"))
    )


# --- load ---------------------------------------------------------------------------------------

# Like ../shared/bench/wrk_headers.lua, but each request is a random line of WRK_REQUESTS:
# method, path and body separated by tabs. Socket read errors are left out of the error count:
# sync workers close every connection after answering.
WRK_SCRIPT = r"""
local lines, counter = {}, 0
local plain, json = {}, {}
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 100 + (seed or 0))
  for pair in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^|]+") do
    local name, value = pair:match("^%s*([^:]+):%s*(.*)$")
    if name then plain[name] = value; json[name] = value end
  end
  json["Content-Type"] = "application/json"
  for line in io.lines(os.getenv("WRK_REQUESTS")) do
    local method, path, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    table.insert(lines, {method, path, body})
  end
end
function request()
  local r = lines[math.random(#lines)]
  if r[3] == "" then return wrk.format(r[1], r[2], plain) end
  return wrk.format(r[1], r[2], json, r[3])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.2f p99_ms=%.2f requests=%d non2xx=%d sockerr=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.status, e.connect + e.write + e.timeout))
end
"""
RESULT = re.compile(
    r"RESULT rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) requests=(\d+) non2xx=(\d+) "
    r"sockerr=(\d+)"
)


@dataclass(frozen=True)
class Result:
    rps: float
    p50: float
    p99: float
    requests: int
    errors: int
    app_ms: float = 0.0  # CPU of the server's workers, per request
    db_ms: float = 0.0  # CPU of its PostgreSQL backends, per request
    refused: str = ""  # statuses >= 400 and how many, from the request log


@dataclass(frozen=True)
class Endpoint:
    """One kind of request against one server, as wrk drives it."""

    name: str
    server: Server
    url_path: str
    script: Path
    env: dict[str, str]

    def run(self, connections: int, seconds: float) -> Result:
        """Drive the endpoint; add the CPU its server and database used per request."""
        app, database = self.server.cpu_seconds()
        self.server.refusals()
        result = self._wrk(connections, seconds)
        app_after, database_after = self.server.cpu_seconds()
        per = 1000 / max(1, result.requests)
        refused = ", ".join(f"{n} x {status}" for status, n in self.server.refusals().items())
        return replace(result, app_ms=(app_after - app) * per, refused=refused,
                       db_ms=(database_after - database) * per)  # fmt: skip

    def _wrk(self, connections: int, seconds: float) -> Result:
        command = ["wrk", "-t", str(min(2, connections)), "-c", str(connections),
                   "-d", f"{seconds:g}s", "--timeout", "10s", "-s", str(self.script),
                   f"http://{HOST}:{self.server.port}{self.url_path}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                              env=dict(os.environ, **self.env))  # fmt: skip
        found = RESULT.search(done.stdout)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
        rps, p50, p99, requests, non2xx, sockerr = found.groups()
        return Result(float(rps), float(p50), float(p99), int(requests), int(non2xx) + int(sockerr))


def alertshare_endpoint(
    name: str, server: Server, lines: list[str], token: str, data_dir: Path
) -> Endpoint:
    """An endpoint driving ``lines`` (see Targets) against ``server`` with the caller's token."""
    requests = data_dir / f"requests-{server.label}-{name}.txt"
    requests.write_text("\n".join(lines) + "\n")
    script = data_dir / "requests.lua"
    script.write_text(WRK_SCRIPT)
    env = {"WRK_HEADERS": f"Authorization: Bearer {token}|{ACTING}",
           "WRK_REQUESTS": str(requests)}  # fmt: skip
    return Endpoint(name, server, "/", script, env)


def reference_endpoint(server: Server) -> Endpoint:
    env = {"WRK_HEADERS": f"Authorization: Bearer {REFERENCE_TOKEN}"}
    return Endpoint("reference full", server, "/full/", REFERENCE_DIR / "wrk_headers.lua", env)


def analyze(urls: list[str]) -> None:
    """ANALYZE every database, as autovacuum would. PostgreSQL here runs with autovacuum off:
    without this, a worker's cached plan for the audit_ref foreign-key check, made while
    audit_entry was nearly empty, goes on scanning the whole growing log (one scan per ref)."""
    for url in urls:
        with psycopg.connect(_libpq(url), autocommit=True) as connection:
            connection.execute("ANALYZE")


def measure(
    endpoints: list[Endpoint], connections: int, args: argparse.Namespace
) -> dict[str, list[Result]]:
    """Warm each endpoint, then run ``args.rounds`` interleaved rounds; return the results."""
    for endpoint in endpoints:
        endpoint.run(connections, args.warmup)
    results: dict[str, list[Result]] = {e.name: [] for e in endpoints}
    for n in range(1, args.rounds + 1):
        analyze(args.databases)
        for endpoint in endpoints:
            result = endpoint.run(connections, args.duration)
            results[endpoint.name].append(result)
            print_round(n, endpoint.name, result)
    return results


def print_round(n: int, name: str, r: Result) -> None:
    refused = f" ({r.refused})" if r.refused else ""
    print(f"  round {n}  {name:16s} {r.rps:8.1f} req/s  p50 {r.p50:7.1f} ms  p99 {r.p99:7.1f} ms"
          f"  CPU/request {r.app_ms:5.1f} ms app + {r.db_ms:4.1f} ms db  {r.requests} requests,"
          f" {r.errors} errors{refused}", flush=True)  # fmt: skip


# --- reporting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    rps: float
    p50: float
    p99: float
    cpu_ms: float  # app + db CPU per request
    errors: int

    @classmethod
    def of(cls, rounds: list[Result]) -> Summary:
        median = statistics.median
        return cls(median(r.rps for r in rounds), median(r.p50 for r in rounds),
                   median(r.p99 for r in rounds), median(r.app_ms + r.db_ms for r in rounds),
                   sum(r.errors for r in rounds))  # fmt: skip


def verdict(ok: bool, what: str) -> str:
    return f"{'PASS' if ok else 'MISS'} {what}"


def targets_for(name: str, s: Summary, ratio: float, connections: int) -> list[str]:
    """PERFORMANCE.md's targets for one endpoint at one connection count."""
    limit = 100.0 if connections <= 8 else 300.0
    found = []
    if name in ("look-up", "briefing"):
        floor = 0.85 if name == "look-up" else 0.6
        found.append(verdict(ratio >= floor, f"ratio>={floor:g}"))
        found.append(verdict(s.p99 <= limit, f"p99<={limit:g}ms"))
    if name == "publish":
        found.append(verdict(s.rps >= 150, "rps>=150"))
    if s.errors:
        found.append(f"ERRORS {s.errors}")
    return found


def report(results: dict[str, list[Result]], connections: int) -> None:
    summaries = {name: Summary.of(rounds) for name, rounds in results.items()}
    reference = summaries["reference full"]
    print(f"\nmedians at {connections} connections (ratio: req/s over the reference's; cpu "
          "ratio: the reference's CPU per request over this one's):")  # fmt: skip
    print(f"  {'endpoint':16s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'ratio':>6s} "
          f"{'CPU ms':>7s} {'cpu ratio':>9s}  targets")  # fmt: skip
    for name, s in summaries.items():
        ratio, cpu_ratio = s.rps / reference.rps, reference.cpu_ms / max(s.cpu_ms, 1e-9)
        checks = "  ".join(targets_for(name, s, ratio, connections))
        print(f"  {name:16s} {s.rps:8.1f} {s.p50:8.1f} {s.p99:8.1f} {ratio:6.2f} "
              f"{s.cpu_ms:7.2f} {cpu_ratio:9.2f}  {checks}")  # fmt: skip
    print(flush=True)


def report_sizes(results: dict[str, list[Result]], connections: int, args: Any) -> None:
    print(f"\nmedians at {connections} connections ({args.small:,} vs {args.large:,} households):")
    print(f"  {'endpoint':10s} {'size':>10s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for kind in ("look-up", "briefing"):
        small = Summary.of(results[f"{kind} small"])
        large = Summary.of(results[f"{kind} large"])
        for size, s in ((args.small, small), (args.large, large)):
            print(f"  {kind:10s} {size:>10,} {s.rps:8.1f} {s.p50:8.1f} {s.p99:8.1f}")
        p50, p99 = large.p50 / small.p50, large.p99 / small.p99
        checks = f"{verdict(p50 <= 1.5, 'p50<=1.5x')}  {verdict(p99 <= 1.5, 'p99<=1.5x')}"
        print(f"  {kind:10s} {'ratio':>10s} {'':8s} {p50:8.2f} {p99:8.2f}  {checks}")
    print(flush=True)


# --- profiling ----------------------------------------------------------------------------------


def profile(endpoints: list[Endpoint], connections: int, seconds: float, out: Path) -> None:
    """Record every worker of each alertshare endpoint's server under py-spy while wrk drives."""
    out.mkdir(parents=True, exist_ok=True)
    for endpoint in endpoints:
        if endpoint.name == "reference full":
            continue
        target = out / f"{endpoint.name.replace(' ', '-')}-c{connections}.txt"
        spy = subprocess.Popen(
            [_py_spy(), "record", "--pid", str(endpoint.server.process.pid), "--subprocesses",
             "--gil", "--format", "raw", "--rate", "250", "--nonblocking", "--duration",
             str(int(seconds) + 1), "--output", str(target)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)
        endpoint.run(connections, seconds)
        spy.wait(timeout=seconds + 60)
        print(f"  py-spy: {target}", flush=True)


def _py_spy() -> str:
    """py-spy on PATH, else beside this interpreter (pip install py-spy into the venv)."""
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


# --- driver -------------------------------------------------------------------------------------


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds``."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"benchmark exceeded its {seconds:.0f} s budget")

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGALRM, expired), signal.signal(signal.SIGTERM, terminated)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def wait_all(servers: list[Server], token: str, targets: Targets) -> None:
    acting = header_dict(f"Authorization: Bearer {token}|{ACTING}")
    lookup = targets.lookups[0].split("\t")[2]
    headers = {**acting, "Content-Type": "application/json"}
    for server in servers:
        if server.label == "reference":
            ref = {"Authorization": f"Bearer {REFERENCE_TOKEN}"}
            server.wait_ready(probe("GET", "/full/1", ref))
        else:
            server.wait_ready(probe("POST", "/api/v1/households/lookup", headers, lookup))


def bench(args: argparse.Namespace, data_dir: Path) -> None:
    """Seed both databases, serve both apps, measure each connection count, report."""
    reference_url = f"{args.database_url}_reference"
    args.databases += [args.database_url, reference_url]
    token = seed_alertshare(args.database_url, data_dir, args.households, args.jobs)
    seed_reference(reference_url)
    targets = choose_targets(args.households)
    print(f"targets: {len(targets.lookups):,} look-ups, {len(targets.briefings):,} briefings "
          f"({targets.flagged:,} with warnings), {len(targets.publishes):,} households to "
          "publish on")  # fmt: skip
    servers = [reference_server(reference_url, data_dir, args.workers),
               alertshare_server("alertshare", args.database_url, data_dir, args.workers,
                                 args.log_level)]  # fmt: skip
    args.servers += servers
    wait_all(servers, token, targets)
    reference, alertshare = servers
    endpoints = [reference_endpoint(reference)] + [
        alertshare_endpoint(name, alertshare, lines, token, data_dir)
        for name, lines in (("look-up", targets.lookups), ("briefing", targets.briefings),
                            ("publish", targets.publishes))
    ]  # fmt: skip
    _header(args, f"{args.households:,} households")
    for connections in args.connections:
        print(f"{connections} connections:", flush=True)
        report(measure(endpoints, connections, args), connections)
    if args.profile_dir:
        profile(endpoints, args.connections[0], args.duration, Path(args.profile_dir))


def bench_sizes(args: argparse.Namespace, data_dir: Path) -> None:
    """Seed a small and a large database; interleave look-ups and briefings on both."""
    sizes = {"small": args.small, "large": args.large}
    endpoints = []
    for label, households in sizes.items():
        url = f"{args.database_url}_{label}"
        args.databases.append(url)
        token = seed_alertshare(url, data_dir, households, args.jobs)
        targets = choose_targets(households)
        server = alertshare_server(label, url, data_dir, args.workers, args.log_level)
        args.servers.append(server)
        wait_all([server], token, targets)
        endpoints += [alertshare_endpoint(f"{kind} {label}", server, lines, token, data_dir)
                      for kind, lines in (("look-up", targets.lookups),
                                          ("briefing", targets.briefings))]  # fmt: skip
    _header(args, f"{args.small:,} vs {args.large:,} households")
    for connections in args.connections:
        print(f"{connections} connections:", flush=True)
        report_sizes(measure(endpoints, connections, args), connections, args)


def _header(args: argparse.Namespace, what: str) -> None:
    server = "a private cluster" if args.private else make_url(args.database_url).render_as_string()
    print(f"\nPostgreSQL ({server}, shared_buffers {_shared_buffers(args.database_url)}), {what}, "
          f"gunicorn {args.workers} sync workers per server (production settings), wrk, "
          f"{args.rounds} x {args.duration:g} s rounds", flush=True)  # fmt: skip


def _shared_buffers(url: str) -> str:
    # Printed with the figures: at 1,000,000 households the look-up's ratio moved with it
    # (0.80x and 0.81x on the shared cluster's 128MB, 0.89x and 0.95x on 4GB, 2026-11-24).
    with psycopg.connect(_libpq(make_url(url).set(database="postgres"))) as connection:
        row = connection.execute("SHOW shared_buffers").fetchone()
    return str(row[0]) if row else "unknown"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--households", type=int, default=100_000)
    add("--compare-sizes", action="store_true", help="latency at --small vs --large households")
    add("--small", type=int, default=10_000)
    add("--large", type=int, default=1_000_000)
    add("--database-url", help="use this database, not a private cluster (suffixes: the rest)")
    add("--connections", type=lambda s: [int(c) for c in s.split(",")], default=[8, 32])
    add("--duration", type=float, default=10.0, help="seconds per round")
    add("--rounds", type=int, default=3)
    add("--warmup", type=float, default=3.0, help="seconds per endpoint, untimed")
    add("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    add("--jobs", type=int, default=os.cpu_count() or 1, help="seeding processes")
    add("--log-level", default="INFO", help="the servers' ALERTSHARE_LOG_LEVEL")
    add("--profile-dir", help="record each alertshare endpoint under py-spy into this directory")
    add(
        "--keep",
        action="store_true",
        help="keep the databases and the data directory (and a private cluster, running)",
    )
    args = parser.parse_args()
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url must name a PostgreSQL database")
    if not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install -y wrk)")
    if args.profile_dir and not Path(_py_spy()).exists():
        parser.error("--profile-dir needs py-spy (pip install py-spy)")
    args.databases, args.servers, args.private = [], [], args.database_url is None
    return args


def budget(args: argparse.Namespace) -> float:
    households = args.small + args.large if args.compare_sizes else args.households
    runs = len(args.connections) * 4 * (args.rounds * (args.duration + 5) + args.warmup + 5)
    return 600 + households * 0.004 + runs * (2 if args.profile_dir else 1)


def main() -> None:
    args = parse_args()
    # Cleaning up runs after the time budget is disarmed: a budget running out, or a SIGTERM,
    # must not cut short stopping the servers and the cluster.
    with ExitStack() as stack, time_budget(budget(args)):
        if args.private:
            server = stack.enter_context(private_cluster(production_settings(), keep=args.keep))
            args.database_url = f"{server}/{DATABASE}"
        data_dir = Path(tempfile.mkdtemp(prefix="bench-core-api-"))
        stack.callback(clean_up, args, data_dir)  # before the cluster stops
        (bench_sizes if args.compare_sizes else bench)(args, data_dir)


def clean_up(args: argparse.Namespace, data_dir: Path) -> None:
    for server in args.servers:
        server.stop()
    if args.keep:
        print(f"kept {', '.join(args.databases)} and {data_dir}", file=sys.stderr)
        return
    for url in args.databases:
        recreate_database(url, drop_only=True)
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
