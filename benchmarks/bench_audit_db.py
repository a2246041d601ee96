"""Fill a fresh database with N realistic audit entries, then time verify_log() over it.

The chain is computed in Python with link_hash and loaded with executemany in batches (plus
AuditRef rows for some entries and the AuditHead row), so only verification is timed.

Usage (from the repository root):
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit_db.py [--entries 1000000]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit_db.py --postgres
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/alertshare_bench_audit]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit_db.py --profile  # cProfile the verify

SQLite (the default) uses a temporary directory, removed afterwards unless --keep. With
--postgres the script creates the database named by --database-url (default above) and drops
it afterwards unless --keep; without --postgres, --database-url must name an existing empty
database, which is migrated and filled but not dropped.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url

from service import create_app, migrate
from service.audit.append import HEAD_ID
from service.audit.chain import GENESIS_HASH, canonical_json, format_timestamp, link_hash
from service.audit.verification import verify_log
from service.database import db
from service.models.audit import AuditHead

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/alertshare_bench_audit"
ENTRY_COLUMNS = (
    "seq", "occurred_at", "kind", "action", "outcome", "status", "agency_id", "client_id",
    "practitioner", "purpose", "request_id", "source_address", "targets", "returned",
    "prev_hash", "hash",
)  # fmt: skip
REF_COLUMNS = ("entry_seq", "ref_type", "ref_id", "relation")
# (action, share of traffic): reads dominate; token issues carry no acting practitioner.
ACTIONS = (
    ("household:search", 30), ("household:read", 20), ("briefing:read", 20),
    ("agency:list", 10), ("warning:create", 8), ("warning:update", 4), ("token:issue", 5),
    ("caller:read", 3),
)  # fmt: skip
OUTCOMES = (("allowed", 200, 90), ("denied", 403, 4), ("denied", 404, 3), ("failed", 422, 3))
PURPOSES = ("pre_visit", "pre_visit", "pre_visit", "safeguarding_referral", "duty_triage")


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


class EntryFactory:
    """Builds a valid chain of realistic entries, batch by batch, in insertion order."""

    def __init__(self, seed: int = 7) -> None:
        rng = self.rng = random.Random(seed)
        self.agencies = [f"agency-{n:02d}" for n in range(40)]
        self.clients = {
            a: [f"{a}.{rng.getrandbits(64):016x}" for _ in range(3)] for a in self.agencies
        }
        self.practitioners = [f"sw-{n:04d}" for n in range(2000)]
        self.households = [_uuid(rng) for _ in range(50_000)]
        self.warnings = [_uuid(rng) for _ in range(100_000)]
        self.actions = [a for a, weight in ACTIONS for _ in range(weight)]
        self.outcomes = [(o, s) for o, s, weight in OUTCOMES for _ in range(weight)]
        self.moment = datetime(2026, 11, 23, 10, 57, 21, tzinfo=UTC)
        self.prev = GENESIS_HASH
        self.seq = 0

    def _fields(self, seq: int) -> dict[str, Any]:
        rng = self.rng
        self.moment += timedelta(microseconds=rng.randrange(1, 50_000))
        action = rng.choice(self.actions)
        outcome, status = rng.choice(self.outcomes)
        agency = rng.choice(self.agencies)
        targets: dict[str, list[str]] = {}
        returned: dict[str, list[str]] = {}
        if action in ("household:read", "briefing:read", "warning:create"):
            targets["household"] = [rng.choice(self.households)]
        if action == "warning:update":
            targets["warning"] = [rng.choice(self.warnings)]
        if outcome == "allowed":
            if action == "household:search":
                returned["household"] = rng.sample(self.households, rng.randrange(0, 4))
            elif action in ("household:read", "briefing:read"):
                returned["warning"] = rng.sample(self.warnings, rng.randrange(0, 6))
            elif action == "agency:list":
                returned["agency"] = self.agencies[:10]
            elif action == "warning:create":
                returned["warning"] = [rng.choice(self.warnings)]
            if action == "warning:create":
                status = 201
        acting = action != "token:issue"
        return {
            "action": action, "agency_id": agency, "client_id": rng.choice(self.clients[agency]),
            "kind": "entry", "occurred_at": format_timestamp(self.moment), "outcome": outcome,
            "practitioner": rng.choice(self.practitioners) if acting else None,
            "purpose": rng.choice(PURPOSES) if acting else None,
            "request_id": f"{rng.getrandbits(128):032x}", "returned": returned, "seq": seq,
            "source_address": f"10.{seq % 250}.{seq % 199}.{seq % 253}", "status": status,
            "targets": targets,
        }  # fmt: skip

    def batch(self, count: int, refs_every: int) -> tuple[list[tuple[Any, ...]], list[tuple]]:
        """Return (entry rows, ref rows) for the next ``count`` entries of the chain."""
        entries: list[tuple[Any, ...]] = []
        refs: list[tuple[Any, ...]] = []
        for _ in range(count):
            self.seq += 1
            seq = self.seq
            fields = self._fields(seq)
            digest = link_hash(self.prev, fields)
            row = dict(fields, prev_hash=self.prev, hash=digest)
            row["targets"] = canonical_json(fields["targets"]).decode()
            row["returned"] = canonical_json(fields["returned"]).decode()
            entries.append(tuple(row[c] for c in ENTRY_COLUMNS))
            if refs_every and seq % refs_every == 0:
                refs.extend(
                    (seq, ref_type, ref_id, relation)
                    for relation, key in (("target", "targets"), ("returned", "returned"))
                    for ref_type, ids in fields[key].items()
                    for ref_id in ids
                )
            self.prev = digest
        return entries, refs


def _insert_sql(table: str, columns: tuple[str, ...], placeholder: str) -> str:
    marks = ", ".join([placeholder] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def fill(total: int, batch_size: int, refs_every: int) -> tuple[int, int, bytes]:
    """Insert ``total`` chained entries (current app's database); return (entries, refs, head)."""
    factory = EntryFactory()
    engine = db.engine
    placeholder = "?" if engine.dialect.name == "sqlite" else "%s"
    entry_sql = _insert_sql("audit_entry", ENTRY_COLUMNS, placeholder)
    ref_sql = _insert_sql("audit_ref", REF_COLUMNS, placeholder)
    ref_count = 0
    started = time.perf_counter()
    while factory.seq < total:
        entries, refs = factory.batch(min(batch_size, total - factory.seq), refs_every)
        with engine.begin() as connection:  # one transaction per batch
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(entry_sql, entries)
            if refs:
                cursor.executemany(ref_sql, refs)
            cursor.close()
            ref_count += len(refs)
        done = factory.seq
        if done % (batch_size * 20) == 0 or done == total:
            rate = done / (time.perf_counter() - started)
            print(f"  loaded {done:,} entries ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    # A bulk load jumps the head a million seqs at once, which its trigger (rightly) refuses
    # to the application: the loader acts as the database owner and lifts it for this update.
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            connection.execute(text("DROP TRIGGER audit_head_forward_only"))
        connection.execute(
            update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=total, hash=factory.prev)
        )
    return total, ref_count, factory.prev


def _analyze() -> None:
    with db.engine.begin() as connection:
        connection.execute(text("ANALYZE"))


def run(url: str, data_dir: Path, args: argparse.Namespace) -> None:
    """Migrate and fill the database at ``url``, then time verify_log once."""
    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
    try:
        with app.app_context():
            migrate.upgrade()
            head = db.session.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID))
            db.session.rollback()
            if head:
                raise SystemExit(f"the audit log at {url} already holds {head} entries")
            dialect = db.engine.dialect.name
            started = time.perf_counter()
            entries, refs, last = fill(args.entries, args.batch, args.refs_every)
            _analyze()
            loaded = time.perf_counter() - started
            print(f"loaded {entries:,} entries and {refs:,} refs into {dialect} in {loaded:.1f} s")
        with app.app_context():  # a fresh session, as a verification request would have
            profiler = cProfile.Profile() if args.profile else None
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            report = verify_log()
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - started
            db.session.rollback()
        if not (report.ok and report.checked == entries and report.head_hash == last.hex()):
            raise SystemExit(f"verification failed: {report}")
        rate = entries / elapsed
        print(
            f"verified {entries} entries from {dialect} in {elapsed:.2f} s ({rate:,.0f} entries/s)"
        )
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            print(out.getvalue())
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def _admin(url: str) -> Any:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def main() -> None:
    """Parse arguments, prepare the database, run, clean up."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per executemany")
    parser.add_argument(
        "--refs-every", type=int, default=10, help="write AuditRef rows for every Nth entry"
    )
    parser.add_argument("--postgres", action="store_true", help="create and drop the database")
    parser.add_argument("--database-url", help="PostgreSQL URL (default SQLite in a temp dir)")
    parser.add_argument("--data-dir", type=Path, help="for the SQLite file and the key ring")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--profile", action="store_true", help="cProfile verify_log")
    args = parser.parse_args()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = args.database_url or (DEFAULT_PG_URL if args.postgres else None)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-audit-db-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    name = make_url(url).database if url else None
    try:
        if args.postgres:
            assert url is not None and name
            admin = _admin(url)
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
        run(url or f"sqlite:///{data_dir / 'alertshare.db'}", data_dir, args)
    finally:
        if args.postgres and not args.keep:
            assert url is not None
            admin = _admin(url)
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        if args.data_dir is None and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif args.keep:
            print(f"kept {url or data_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
