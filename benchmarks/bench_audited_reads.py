"""Measure what auditing costs an encrypted read: GET /api/v1/agencies, audit on versus off.

Migrates and seeds one database (10 agencies with encrypted duty contacts, one OAuth client and
a long-lived token), starts two gunicorn servers on loopback against it (5 sync workers each,
one with ALERTSHARE_AUDIT=off), then drives each with 8 concurrent connections for a fixed
duration per round, alternating audited and unaudited rounds. Prints req/s and p99 per round,
the medians, and the ratio audited/unaudited (compare ratios, not absolute figures: see
PERFORMANCE.md). The load generator is wrk when installed, else a threaded http.client loop.

Usage (from the repository root):
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audited_reads.py             # PostgreSQL
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audited_reads.py --sqlite
    ... [--duration 10] [--rounds 3] [--connections 8] [--workers 5]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/alertshare_bench_reads]
        [--loadgen auto|wrk|python] [--keep]

PostgreSQL (the default) creates the database named by --database-url and drops it at the end
unless --keep; SQLite uses a file in a temporary directory. Servers are always stopped.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.config import Config as GunicornConfig
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from support import free_port, recreate_database, stop_process_group  # benchmarks/support.py

from service import agencies as use_cases
from service import clients, create_app, migrate
from service.database import db
from service.oauth.scopes import ALL_SCOPES

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/alertshare_bench_reads"
HOST = "127.0.0.1"
PATH = "/api/v1/agencies"
TOKEN_LIFETIME = 24 * 3600
AGENCY_TYPES = ("children_social_care", "adult_social_care", "health", "education", "police")


@dataclass
class Round:
    """One timed run of the load generator against one server."""

    requests: int
    seconds: float
    p99_ms: float | None
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


class BenchTimeout(Exception):
    """The whole run exceeded its time budget."""


# --- database -------------------------------------------------------------------------------


def _admin(url: str) -> Any:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def seed(url: str, data_dir: Path, agencies: int) -> str:
    """Migrate, add agencies and one client, and return a bearer token from /oauth/token."""
    config = {
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "TOKEN_EXPIRES_IN": TOKEN_LIFETIME,
    }
    app = create_app(config)
    try:
        with app.app_context():
            migrate.upgrade()
            for n in range(1, agencies + 1):
                contact = (
                    f"Duty desk 0300 555 {n:04d} (08:30-17:00, Mon-Fri); out of hours "
                    f"emergency duty team 0300 555 9{n:03d}; secure email "
                    f"duty.agency{n:02d}@partnership.example.gov.uk; ask for the "
                    "safeguarding lead and quote the household reference."
                )
                use_cases.add_agency(
                    f"agency-{n:02d}",
                    f"Agency {n:02d} {AGENCY_TYPES[n % len(AGENCY_TYPES)].replace('_', ' ')}",
                    AGENCY_TYPES[n % len(AGENCY_TYPES)],
                    contact,
                )
            db.session.commit()
            issued = clients.add_client("agency-01", "Benchmark case system", list(ALL_SCOPES))
            db.session.commit()
            client_id, secret = issued.client.client_id, issued.secret
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        response = app.test_client().post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        if response.status_code != 200:
            raise RuntimeError(f"token request failed: {response.status_code} {response.data!r}")
        return str(response.get_json()["access_token"])
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def audit_head(url: str) -> int:
    """Return the audit chain's head seq (how many entries have been appended)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT seq FROM audit_head")).scalar() or 0)
    finally:
        engine.dispose()


# --- servers ------------------------------------------------------------------------------


class Server:
    """A gunicorn process group on loopback, started and stopped by this script only."""

    def __init__(self, label: str, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.label, self.port = label, free_port()
        self.log = log_path.open("wb")
        command = [
            sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "sync",
            "-b", f"{HOST}:{self.port}", "service.wsgi:app",
        ]  # fmt: skip
        if "control_socket_disable" in GunicornConfig().settings:
            # gunicorn >= 27 would share one control socket path between both servers.
            command.insert(-1, "--no-control-socket")
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, headers: dict[str, str], timeout: float = 60.0) -> None:
        """Wait until an authorised read returns 200 with items, or raise."""
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} gunicorn exited ({self.process.returncode})")
            try:
                status, body = get(self.port, headers)
                if status == 200 and json.loads(body)["items"]:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as error:
                last = str(error)
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} server not ready after {timeout:.0f} s: {last}")

    def stop(self) -> None:
        stop_process_group(self.process)
        self.log.close()


def get(port: int, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", PATH, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- load generators ------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def run_wrk(port: int, headers: dict[str, str], connections: int, seconds: float) -> Round:
    """Drive the server with wrk and parse its summary."""
    threads = max(1, min(connections, os.cpu_count() or 1))
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s"]
    command += ["--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://{HOST}:{port}{PATH}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    if done.returncode != 0 or total is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}{done.stderr}")
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    socket_errors = r"Socket errors: connect (\d+), read \d+, write (\d+), timeout (\d+)"
    if match := re.search(socket_errors, out):  # not read errors: sync workers close sockets
        errors += sum(int(g) for g in match.groups())
    return Round(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS[total.group(3)] / 1000,
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else None,
        errors=errors,
    )


def run_python(port: int, headers: dict[str, str], connections: int, seconds: float) -> Round:
    """Drive the server with one thread per connection (http.client, reconnecting as needed)."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    start = time.perf_counter()
    deadline = start + seconds

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        mine, clock = latencies[slot], time.perf_counter
        while True:
            began = clock()
            if began >= deadline:
                break
            try:
                connection.request("GET", PATH, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors[slot] += 1
                if response.will_close:
                    connection.close()  # sync workers close; auto_open reconnects
            except (OSError, http.client.HTTPException):
                errors[slot] += 1
                connection.close()
                continue
            mine.append(clock() - began)
        connection.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - start
    merged = sorted(x for chunk in latencies for x in chunk)
    p99 = merged[min(len(merged) - 1, int(len(merged) * 0.99))] * 1000 if merged else None
    return Round(len(merged), elapsed, p99, sum(errors))


# --- driver -------------------------------------------------------------------------------


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise BenchTimeout in the main thread if the block runs longer than ``seconds``."""

    def expired(signum: int, frame: Any) -> None:
        raise BenchTimeout(f"benchmark exceeded its {seconds:.0f} s budget")

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGALRM, expired)
    previous_term = signal.signal(signal.SIGTERM, terminated)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _fmt_p99(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def bench(args: argparse.Namespace, url: str, data_dir: Path) -> None:
    """Seed, start both servers, run alternating rounds, print the summary."""
    token = seed(url, data_dir, args.agencies)
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Acting-Practitioner": "sw-0042",
        "X-Purpose-Of-Use": "pre_visit",
    }
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTSHARE_")}
    base_env.update(
        ALERTSHARE_DATABASE_URL=url,
        ALERTSHARE_DATA_DIR=str(data_dir),
        ALERTSHARE_TOKEN_EXPIRES_IN=str(TOKEN_LIFETIME),
        # What is measured is auditing, not the rate limits: none this load reaches.
        ALERTSHARE_RATE_LIMIT_AUTHENTICATED="1000000/minute",
        ALERTSHARE_RATE_LIMIT_ANONYMOUS="1000000/minute",
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")])),
    )
    if args.log_level:
        base_env["ALERTSHARE_LOG_LEVEL"] = args.log_level
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    drive = run_wrk if use_wrk else run_python
    dialect = make_url(url).get_backend_name()
    servers: dict[str, Server] = {}
    try:
        for label, audit in (("audited", "on"), ("unaudited", "off")):
            env = dict(base_env, ALERTSHARE_AUDIT=audit)
            servers[label] = Server(label, env, args.workers, data_dir / f"gunicorn-{label}.log")
        for server in servers.values():
            server.wait_ready(headers)
            if args.warmup > 0:
                drive(server.port, headers, args.connections, args.warmup)
        print(
            f"{dialect}, {'wrk' if use_wrk else 'python http.client'}, {args.workers} sync "
            f"workers, {args.connections} connections, {args.rounds} x {args.duration:g} s",
            flush=True,
        )
        results: dict[str, list[Round]] = {label: [] for label in servers}
        for n in range(1, args.rounds + 1):
            for label, server in servers.items():
                before = audit_head(url)
                result = drive(server.port, headers, args.connections, args.duration)
                time.sleep(1.0)  # let requests still in flight finish before counting
                added = audit_head(url) - before
                results[label].append(result)
                print(
                    f"round {n} {label:9s} {result.rate:8.1f} req/s  p99 "
                    f"{_fmt_p99(result.p99_ms):>9s}  {result.requests} requests, "
                    f"{result.errors} errors, {added} audit entries",
                    flush=True,
                )
        medians = {}
        for label, rounds in results.items():
            medians[label] = statistics.median(r.rate for r in rounds)
            p99s = [r.p99_ms for r in rounds if r.p99_ms is not None]
            p99 = _fmt_p99(statistics.median(p99s) if p99s else None)
            print(f"{label:9s} median {medians[label]:8.1f} req/s  p99 median {p99}")
        ratio = medians["audited"] / medians["unaudited"]
        print(f"ratio audited/unaudited: {ratio:.2f}")
    finally:
        for server in servers.values():
            server.stop()


def main() -> None:
    """Parse arguments, prepare the database, run within a time budget, clean up."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite file instead of PostgreSQL")
    parser.add_argument("--database-url", default=DEFAULT_PG_URL, help="PostgreSQL database")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per server, untimed")
    parser.add_argument("--agencies", type=int, default=10)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--log-level", help="ALERTSHARE_LOG_LEVEL for the servers")
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    args = parser.parse_args()
    if not make_url(args.database_url).get_backend_name() == "postgresql":
        parser.error("--database-url must name a PostgreSQL database (use --sqlite for SQLite)")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-audited-reads-"))
    url = f"sqlite:///{data_dir / 'alertshare.db'}" if args.sqlite else args.database_url
    budget = 300 + 2 * (args.rounds * (args.duration + 30) + args.warmup + 60)
    try:
        with time_budget(budget):
            if not args.sqlite:
                recreate_database(url)
            bench(args, url, data_dir)
    finally:
        if not args.sqlite and not args.keep:
            recreate_database(url, drop_only=True)
        if args.keep:
            print(f"kept {url} and logs in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
