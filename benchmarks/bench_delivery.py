"""Benchmark webhook delivery on PostgreSQL: publish-to-receipt latency, and deliveries/s with
one worker and with two.

What it does, in one run:
  1. creates a fresh PostgreSQL database (dropped at the end unless --keep), migrates it, adds
     an issuing agency with an OAuth client and 20 recipient agencies, and households each of
     which all 21 agencies work with (rows built through the real models, so sealed as usual;
     involvements are inserted directly, so no involvement.added events are queued);
  2. starts 20 local receivers (one port per agency, all served by one nginx worker process:
     Debian's nginx, which must be installed; each answers 200, keeps connections open and logs
     when each webhook arrived) and gives each recipient agency a webhook to its own;
  3. serves alertshare with gunicorn sync workers (development mode: production refuses
     loopback webhook URLs, which is what the SSRF guard is for) and takes a token from the
     real token endpoint;
  4. latency: with one ``alertshare worker`` running (default --poll 1.0, --batch 20),
     publishes one warning at a time (POST /api/v1/warnings; each fans out to 20 agencies),
     waits for its 20 receipts, pauses a random 0-0.5 s, and repeats (--warnings, default 30).
     Latency is the receiver's wall-clock receipt time less the time the publish response came
     back; prints the median and p95 over every receipt (target p95 <= 2 s);
  5. throughput, for --rounds rounds (default 3) of one worker then two: with no worker
     running, publishes a backlog of --backlog deliveries (default 6,000: 300 warnings x 20;
     a backlog that lasts several seconds steadies the figures),
     then starts the worker(s) and counts deliveries per second from the first receipt to the
     last; prints the medians and the two/one ratio (target >= 1.7x).

Everything runs on this machine: the receivers, gunicorn and PostgreSQL share its cores with
the workers, so the two-worker figure is bounded by the cores left over, not only by the
workers' own design. The receivers stand in for the agencies' servers, which would run
elsewhere: nginx is there because it costs the least CPU per webhook (a Python receiver cost
about 0.18 ms a webhook, a fifth of a worker's own CPU). Beside each throughput figure it
prints the CPU time per delivery of the workers, PostgreSQL and the receivers.

Usage (from the repository root):
    PYTHONPATH=. .venv/bin/python benchmarks/bench_delivery.py
    ... [--warnings 30] [--backlog 6000] [--rounds 3] [--poll 1.0] [--batch 20] [--keep]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/alertshare_bench_delivery]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import suppress
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from support import free_port, recreate_database  # benchmarks/support.py

from service import agencies, clients, create_app, households, migrate
from service.database import db, utcnow
from service.models.involvement import Involvement
from service.models.notification import Delivery, Notification, Webhook
from service.oauth.scopes import ALL_SCOPES
from service.unit_of_work import unit_of_work
from service.webhooks.signing import generate_secret

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/alertshare_bench_delivery"
HOST = "127.0.0.1"
RECIPIENTS = 20
ISSUER = "issuer"
ALERTSHARE = Path(sys.executable).with_name("alertshare")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- receivers ----------------------------------------------------------------------------------


class Receivers:
    """20 webhook receivers, one port per agency, served by one nginx worker process.

    The receivers stand in for the agencies' own servers, which run on other machines; here they
    share the benchmark's two cores with the delivery workers, PostgreSQL and gunicorn, so they
    should cost as little CPU as a receiver can: nginx (Debian's package) answers 200, keeps
    connections open as real receivers do, and writes one access-log line per webhook (receipt
    time, port, ``webhook-id``), which ``take`` reads back. The ``webhook-id`` is the
    notification's id; ``take`` names its warning from the database.
    """

    def __init__(self, data_dir: Path, url: str) -> None:
        self.ports = [free_port() for _ in range(RECIPIENTS)]
        self.agency_of_port = {port: agency for agency, port in enumerate(self.ports)}
        self.directory = data_dir / "receivers"
        self.directory.mkdir()
        self.log = self.directory / "access.log"
        self.log.touch()
        self.offset = 0
        self.engine = create_engine(url)
        self.warning_of: dict[str, str] = {}
        listens = "\n".join(f"    listen {HOST}:{port};" for port in self.ports)
        config = f"""
daemon off;
worker_processes 1;
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  log_format receipt '$msec $server_port $http_webhook_id $status';
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_buffer_size 16k;
  client_body_temp_path {self.directory}/body;
  proxy_temp_path {self.directory}/proxy;
  fastcgi_temp_path {self.directory}/fastcgi;
  uwsgi_temp_path {self.directory}/uwsgi;
  scgi_temp_path {self.directory}/scgi;
  server {{
{listens}
    location = /hook {{
      access_log {self.log} receipt;
      return 200;
    }}
  }}
}}
"""
        (self.directory / "nginx.conf").write_text(config)
        with (self.directory / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                ["nginx", "-p", str(self.directory), "-c", str(self.directory / "nginx.conf")],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while not all(self._answers(port) for port in self.ports):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"nginx receivers did not start; see {self.directory}")
            time.sleep(0.1)

    @staticmethod
    def _answers(port: int) -> bool:
        with suppress(OSError):
            connection = http.client.HTTPConnection(HOST, port, timeout=1)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return True
        return False

    @property
    def pids(self) -> set[int]:
        """nginx's master and its worker (for the CPU accounting)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with suppress(OSError):
            return {self.process.pid, *map(int, children.read_text().split())}
        return {self.process.pid}

    def take(self, name: bool = True) -> list[tuple[int, str, float]]:
        """Everything received since the last take: (agency, warning id, receipt time); the
        warning id is "" unless ``name`` (naming queries the benchmark's database)."""
        with self.log.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for next time
        self.offset += len(complete)
        lines = [line.split() for line in complete.decode().splitlines()]
        lines = [fields for fields in lines if len(fields) == 4 and fields[3] == "200"]
        if name:
            self._name_warnings({fields[2] for fields in lines} - self.warning_of.keys())
        taken = [(self.agency_of_port[int(port)], self.warning_of.get(webhook_id, ""), float(at))
                 for at, port, webhook_id, _ in lines]  # fmt: skip
        return taken

    def _name_warnings(self, notification_ids: set[str]) -> None:
        if not notification_ids:
            return
        query = select(Notification.id, Notification.warning_id).where(
            Notification.id.in_(notification_ids)
        )
        with self.engine.connect() as connection:
            for notification_id, warning_id in connection.execute(query):
                self.warning_of[notification_id] = warning_id or ""

    def stop(self) -> None:
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is in hand
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with suppress(ProcessLookupError):
            self.process.kill()
        self.engine.dispose()


# --- the instance -------------------------------------------------------------------------------


def prepare(url: str, data_dir: Path, household_count: int) -> tuple[str, str, list[str]]:
    """Migrate and seed; return the issuer's client id and secret, and the household ids."""
    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
    try:
        with app.app_context():
            migrate.upgrade()
            with unit_of_work():
                agencies.add_agency(ISSUER, "Issuing agency", "children_social_care", "0300 1")
                for n in range(RECIPIENTS):
                    agencies.add_agency(recipient(n), f"Agency {n:02d}", "health", "0300 2")
                issued = clients.add_client(ISSUER, "Benchmark case system", list(ALL_SCOPES))
                client_id, secret = issued.client.client_id, issued.secret
            ids: list[str] = []
            slugs = [ISSUER, *(recipient(n) for n in range(RECIPIENTS))]
            while len(ids) < household_count:
                with unit_of_work():
                    for _ in range(min(50, household_count - len(ids))):
                        household = households.register_household(
                            ISSUER, postcode="ME14 2AB", address_line1=f"{len(ids) + 1} Mill Lane"
                        )
                        db.session.add_all(
                            Involvement(household_id=household.id, agency_id=slug,
                                        case_reference=f"{slug}-{len(ids)}", started_at=utcnow())
                            for slug in slugs
                        )  # fmt: skip
                        ids.append(household.id)
            assert secret is not None
            return client_id, secret, ids
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def add_webhooks(url: str, data_dir: Path, ports: list[int]) -> None:
    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        with unit_of_work():
            for n, port in enumerate(ports):
                db.session.add(Webhook(agency_id=recipient(n), url=f"http://{HOST}:{port}/hook",
                                       secret=generate_secret()))  # fmt: skip
        db.session.remove()
        db.engine.dispose()


def recipient(n: int) -> str:
    return f"agency-{n:02d}"


class Instance:
    """gunicorn serving alertshare, the workers, and the database's delivery counts."""

    def __init__(self, url: str, data_dir: Path, args: argparse.Namespace) -> None:
        self.url, self.data_dir, self.args = url, data_dir, args
        self.env = {
            **os.environ,
            "ALERTSHARE_DATABASE_URL": url,
            "ALERTSHARE_DATA_DIR": str(data_dir),
            "ALERTSHARE_LOG_LEVEL": "INFO",
            # What is measured is delivery, not the rate limits: none this load reaches.
            "ALERTSHARE_RATE_LIMIT_AUTHENTICATED": "1000000/minute",
            "ALERTSHARE_RATE_LIMIT_ANONYMOUS": "1000000/minute",
        }
        self.port = free_port()
        self.server_log = (data_dir / "gunicorn.log").open("wb")
        command = [sys.executable, "-m", "gunicorn", "-b", f"{HOST}:{self.port}", "-w", "3",
                   "--config", "python:service.gunicorn_conf", "service.wsgi:app"]  # fmt: skip
        self.server = subprocess.Popen(
            command, env=self.env, stdout=self.server_log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.workers: list[subprocess.Popen[bytes]] = []
        self.engine = create_engine(url)
        self.token = ""

    def wait_ready(self, client_id: str, secret: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = self.request("POST", "/oauth/token", "grant_type=client_credentials",
                                            {"Content-Type": "application/x-www-form-urlencoded"},
                                            basic=(client_id, secret))  # fmt: skip
                if status == 200:
                    self.token = json.loads(body)["access_token"]
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError("gunicorn did not come up; see gunicorn.log")
            time.sleep(0.3)

    def request(
        self, method: str, path: str, body: str, headers: dict[str, str],
        basic: tuple[str, str] | None = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        import base64

        if basic:
            raw = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            headers = {**headers, "Authorization": f"Basic {raw}"}
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def publish(self, household_id: str) -> tuple[str, float]:
        """Publish a warning; return its id and the wall-clock time the response came back."""
        body = json.dumps({
            "household": {"household_id": household_id},
            "categories": ["threat_of_violence"], "risk_level": "high",
            "children_in_household": False,
            "subject_informed": {"informed": True, "informed_on": str(date.today())},
            "incidents": [{"occurred_on": str(date.today() - timedelta(days=1)),
                           "summary": "Threatened on the doorstep", "police_reported": False}],
        })  # fmt: skip
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "X-Acting-Practitioner": "sw-0042", "X-Purpose-Of-Use": "case_work"}  # fmt: skip
        status, answer = self.request("POST", "/api/v1/warnings", body, headers)
        at = time.time()
        if status != 201:
            raise RuntimeError(f"publish failed: {status} {answer[:300]!r}")
        return str(json.loads(answer)["id"]), at

    def start_workers(self, count: int) -> None:
        for _ in range(count):
            log = (self.data_dir / f"worker-{len(self.workers)}.log").open("wb")
            command = [str(ALERTSHARE), "worker", "--id", f"bench-{len(self.workers)}",
                       "--poll", str(self.args.poll), "--batch", str(self.args.batch),
                       "--checkpoint-every", "0"]  # fmt: skip
            self.workers.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=log))
            log.close()

    def cpu(self, receivers: Receivers) -> dict[str, float]:
        """CPU seconds used so far by the workers, PostgreSQL's backends for this database and
        the receivers (read from /proc)."""
        database = make_url(self.url).database or ""
        workers = {process.pid for process in self.workers}
        receiver_pids = receivers.pids
        found = {"workers": 0.0, "postgres": 0.0, "receivers": 0.0}
        for proc in Path("/proc").iterdir():
            with suppress(OSError, ValueError, IndexError):
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                seconds = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
                pid = int(proc.name)
                if pid in workers:
                    found["workers"] += seconds
                elif pid in receiver_pids:
                    found["receivers"] += seconds
                else:
                    title = (proc / "cmdline").read_bytes()
                    if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
                        found["postgres"] += seconds
        return found

    def stop_workers(self) -> None:
        for process in self.workers:
            process.send_signal(signal.SIGTERM)
        for process in self.workers:
            if process.wait(timeout=30) != 0:
                raise RuntimeError(f"worker exited with {process.returncode}")
        self.workers = []

    def pending(self) -> int:
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
            return int(connection.execute(query).scalar_one())

    def stop(self) -> None:
        for process in self.workers:
            with suppress(ProcessLookupError):
                process.kill()
        with suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.server.wait(timeout=20)
        with suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGKILL)
        self.server_log.close()
        self.engine.dispose()


# --- the measurements ---------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def measure_latency(
    instance: Instance, receivers: Receivers, household_ids: list[str]
) -> list[float]:
    instance.start_workers(1)
    latencies: list[float] = []
    for household in household_ids:
        warning_id, answered = instance.publish(household)
        got: list[float] = []
        deadline = time.monotonic() + 30
        while len(got) < RECIPIENTS:
            got.extend(at for _, warning, at in receivers.take() if warning == warning_id)
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(got)} of {RECIPIENTS} receipts in 30 s")
            time.sleep(0.01)
        latencies.extend(at - answered for at in got)
        time.sleep(random.uniform(0, 0.5))  # land at a random point in the worker's poll
    instance.stop_workers()
    return latencies


def measure_throughput(
    instance: Instance, receivers: Receivers, household_ids: list[str], workers: int
) -> tuple[float, dict[str, float]]:
    """Deliver a backlog with ``workers`` workers; return deliveries/s and the CPU ms per
    delivery of the workers, PostgreSQL and the receivers (after the workers' start-up)."""
    for household in household_ids:
        instance.publish(household)
    backlog = instance.pending()
    receivers.take(name=False)  # nothing should have arrived; start clean
    instance.start_workers(workers)
    time.sleep(1.0)  # the workers' start-up (imports, app) is not delivery work
    before = instance.cpu(receivers)
    times: list[float] = []
    deadline = time.monotonic() + 600
    while instance.pending() > 0:
        times.extend(at for _, _, at in receivers.take(name=False))
        if time.monotonic() > deadline:
            raise RuntimeError("the backlog was not delivered in 10 minutes")
        time.sleep(0.2)
    after = instance.cpu(receivers)
    instance.stop_workers()
    times.extend(at for _, _, at in receivers.take(name=False))
    if len(times) < backlog:
        raise RuntimeError(f"{len(times)} receipts for a backlog of {backlog}")
    rate = (len(times) - 1) / (max(times) - min(times))
    cpu = {k: (after[k] - before[k]) * 1000 / len(times) for k in after}
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--warnings", type=int, default=30)
    parser.add_argument("--backlog", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    per_backlog = max(1, args.backlog // RECIPIENTS)
    needed = args.warnings + 3 * per_backlog * args.rounds
    data_dir = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    print(f"fresh database {make_url(args.database_url).database}; seeding {needed} households "
          f"with {RECIPIENTS + 1} agencies each", flush=True)  # fmt: skip
    recreate_database(args.database_url)
    receivers: Receivers | None = None
    instance: Instance | None = None
    try:
        receivers = Receivers(data_dir, args.database_url)
        client_id, secret, household_ids = prepare(args.database_url, data_dir, needed)
        add_webhooks(args.database_url, data_dir, receivers.ports)
        with create_engine(args.database_url).connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        instance = Instance(args.database_url, data_dir, args)
        instance.wait_ready(client_id, secret)
        queue = iter(household_ids)

        print(f"latency: {args.warnings} warnings x {RECIPIENTS} receivers, one worker, "
              f"--poll {args.poll:g} --batch {args.batch}", flush=True)  # fmt: skip
        latencies = measure_latency(
            instance, receivers, [next(queue) for _ in range(args.warnings)]
        )
        p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
        print(f"  publish-to-receipt over {len(latencies)} receipts: median {p50:.3f} s, "
              f"p95 {p95:.3f} s, max {max(latencies):.3f} s  "
              f"[{'PASS' if p95 <= 2.0 else 'MISS'}: p95 <= 2 s]", flush=True)  # fmt: skip

        rates: dict[int, list[float]] = defaultdict(list)
        for round_number in range(1, args.rounds + 1):
            for workers in (1, 2):
                batch = [next(queue) for _ in range(per_backlog)]
                rate, cpu = measure_throughput(instance, receivers, batch, workers)
                rates[workers].append(rate)
                spent = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
                print(f"  round {round_number}: {workers} worker(s): {rate:,.0f} deliveries/s "
                      f"({per_backlog * RECIPIENTS} deliveries; CPU ms per delivery: {spent})",
                      flush=True)  # fmt: skip
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        ratio = two / one
        verdict = "PASS" if ratio >= 1.7 else "MISS"
        print(f"throughput (medians of {args.rounds}): one worker {one:,.0f}/s, "
              f"two {two:,.0f}/s, ratio {ratio:.2f}x  [{verdict}: >= 1.7x]",
              flush=True)  # fmt: skip
    finally:
        if instance is not None:
            instance.stop()
        if receivers is not None:
            receivers.stop()
        if not args.keep:
            recreate_database(args.database_url, drop_only=True)
        print(f"logs in {data_dir}", flush=True)


if __name__ == "__main__":
    main()
