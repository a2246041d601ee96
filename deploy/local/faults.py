#!/usr/bin/env python3
"""Break one part of the local layout at a time, under load, and print what it did.

    deploy/local/up
    .venv/bin/python deploy/local/faults.py [--step kill-app] [--step kill-worker]
        [--step stop-postgres] [--step revoke-audit] [--clients 50] [--outage 30]

The load is ``load.py``'s (the same clients, receivers and households; 50 concurrent clients
through nginx). Each step prints its figures and its checks; the run exits 1 if a check fails.

kill-app       kill -9 one app server (its master and workers) under load. Requests in flight
               on it may fail; the other app server serves on (the error rate after the kill);
               nothing committed is lost (every publish answered 201 is read back). Then
               ``deploy/local/up`` starts it again.
kill-worker    kill -9 the delivery worker while it holds a batch (receivers answer slowly, so a
               batch takes seconds), restart it with ``deploy/local/up``: every event is
               delivered once the killed worker's leases run out (at least once: a delivery
               sent but not recorded before the kill is sent again, with the same webhook-id).
stop-postgres  ``pg_ctl stop -m fast`` the layout's PostgreSQL for ``--outage`` seconds under load,
               then start it: requests fail fast (503 within 2 s, never a hang), the service
               recovers with no restart, no warning is half written (each has its version 1 and
               the audit entry of its publication), and the chain verifies.
revoke-audit   REVOKE INSERT ON audit_entry from the app's role: audited routes answer 503 with
               no data, nothing they did persists, /readyz answers 503; GRANT it back: recovered.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402 (deploy/local is not a package)
from load import Layout, Publish, Record, World, check  # noqa: E402

STEPS = ("kill-app", "kill-worker", "stop-postgres", "revoke-audit")
FAST = 2.0  # seconds within which a request must be answered while a part is down


# --- the layout's processes ----------------------------------------------------------------------


def pid_of(layout: Layout, name: str, expect: str) -> int:
    """The pid deploy/local/up recorded for ``name``, checked to still be that program."""
    pid = int((layout.state / "run" / f"{name}.pid").read_text())
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if expect not in command:
        raise RuntimeError(f"{name}'s pid {pid} is not {expect} any more")
    return pid


def up(layout: Layout) -> float:
    """Run deploy/local/up (starts what is not running); return the seconds it took."""
    started = time.monotonic()
    env = {**os.environ, "ALERTSHARE_LOCAL_DIR": str(layout.state)}
    done = subprocess.run(
        [str(layout.repo / "deploy" / "local" / "up")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"deploy/local/up failed: {done.stderr[-500:]}")
    return time.monotonic() - started


def pg_ctl(layout: Layout, *args: str) -> None:
    """Run the layout's cluster's pg_ctl (as postgres when run by root, as up does)."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    command = [str(bins[-1]), "-D", str(layout.state / "pg" / "data"), *args]
    if os.getuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def readyz(layout: Layout) -> int:
    """GET /readyz through nginx; the status (0: no answer)."""
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        layout.https_port,
        ca_certs=layout.ca,
        cert_reqs="CERT_REQUIRED",
        retries=False,
        timeout=10.0,
    )
    try:
        return pool.request("GET", "/readyz").status
    except urllib3.exceptions.HTTPError:
        return 0
    finally:
        pool.close()


def wait_until(condition: Callable[[], bool], seconds: float, every: float = 0.25) -> float:
    """Poll ``condition``; return the seconds it took to hold (or raise after ``seconds``)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise TimeoutError(f"not within {seconds:g} s")
        time.sleep(every)
    return time.monotonic() - started


# --- load in the background ----------------------------------------------------------------------


class Background:
    """``load.run_load`` in a thread, for a fault to happen during it."""

    def __init__(self, world: World, seconds: float) -> None:
        self.stop = threading.Event()
        self.span: tuple[float, float] | None = None
        self.thread = threading.Thread(target=self._run, args=(world, seconds), daemon=True)
        self.thread.start()
        self.started = time.monotonic()

    def _run(self, world: World, seconds: float) -> None:
        self.span = load.run_load(world, seconds, stop=self.stop)

    def join(self) -> tuple[float, float]:
        self.thread.join()
        assert self.span is not None
        return self.span


def failed(record: Record) -> bool:
    return record.status == 0 or record.status >= 500


def window(label: str, records: Sequence[Record], seconds: float) -> str:
    bad = sum(1 for r in records if failed(r))
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(r.status for r in records).items()))
    rate = bad / len(records) if records else 0.0
    per_second = f"{len(records) / seconds:5.1f}/s" if seconds > 0 else "in flight"
    return (
        f"  {label:<34} {len(records):>6} requests ({per_second}), "
        f"{bad:>4} failed ({rate:6.2%})  [{statuses}]"
    )


def read_back(world: World, publishes: Sequence[Publish]) -> tuple[int, int]:
    """GET every published warning as its issuer: (how many read, how many asked)."""
    read = 0
    for publish in publishes:
        status, body = publish.client.request(
            "read-back", "GET", f"/api/v1/warnings/{publish.warning_id}"
        )
        read += status == 200 and body["id"] == publish.warning_id
    return read, len(publishes)


def chain(world: World) -> bool:
    report = world.layout.verify_chain()
    return check(
        "audit chain verifies",
        bool(report.get("ok")),
        f"{report.get('checked')} entries, head seq {report.get('head_seq')}"
        + (
            ""
            if report.get("ok")
            else f"; {report.get('problem')} at {report.get('first_bad_seq')}"
        ),
    )


# --- the steps ---------------------------------------------------------------------------------


def kill_app_server(world: World, seconds: float = 30.0, at: float = 10.0) -> bool:
    layout = world.layout
    published_before = len(world.publishes)
    background = Background(world, seconds)
    time.sleep(at)
    pid = pid_of(layout, "app1", "gunicorn")
    killed = time.monotonic()
    os.killpg(pid, signal.SIGKILL)  # up starts each server in its own session: pgid == pid
    start, end = background.join()
    records = world.recorder.between(start, end)
    settle = 2.0
    print(
        f"kill -9 app server app1 (master pid {pid} and its workers) "
        f"{killed - start:.1f} s into {end - start:.0f} s of load:"
    )
    in_flight = [r for r in records if r.started < killed <= r.ended]
    print(window("done before the kill", [r for r in records if r.ended < killed], killed - start))
    print(window("in flight at the kill", in_flight, 0))
    soon = [r for r in records if killed <= r.started < killed + settle]
    print(window(f"started in the {settle:g} s after it", soon, settle))
    after = [r for r in records if r.started >= killed + settle]
    print(window("started after that (app2 alone)", after, end - killed - settle))
    lost = Counter(f"{r.op} {r.status}" for r in in_flight if failed(r))
    publishes = world.publishes[published_before:]
    read, asked = read_back(world, publishes)
    restarted = up(layout)
    results = [
        check(
            "the other server serves on",
            sum(failed(r) for r in after) == 0,
            f"{sum(failed(r) for r in after)} failed of {len(after)} requests started "
            f"{settle:g} s or more after the kill",
        ),
        check(
            "nothing committed is lost",
            read == asked,
            f"{read} of {asked} warnings answered 201 read back after the kill",
        ),
    ]
    print(
        f"  failed in flight: {dict(lost) or 'none'}; "
        f"deploy/local/up restarted app1 in {restarted:.1f} s"
    )
    return all(results)


def kill_worker(world: World, publishes: int = 60, delay: float = 0.05) -> bool:
    layout = world.layout
    world.receivers.delay = delay  # each answer takes this long: a batch takes seconds
    try:
        burst = publish_burst(world, publishes)
        expected = world.expected_deliveries(burst)
        wait_until(lambda: len(expected & world.receivers.published()) >= 10, 60, 0.01)
        leased = layout.sql(
            "SELECT count(*) FROM delivery WHERE status = 'pending' "
            "AND locked_by IS NOT NULL AND locked_until > now()"
        )[0][0]
        pid = pid_of(layout, "worker", "alertshare worker")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        got_at_kill = len(expected & world.receivers.published())
        print(
            f"kill -9 the delivery worker (pid {pid}) mid-batch: {len(burst)} warnings "
            f"published ({len(expected)} deliveries due), {got_at_kill} delivered, "
            f"{leased} leased to it at the kill"
        )
        restarted = up(layout)
        world.receivers.delay = 0.0
        missing, waited = load.wait_for_deliveries(world, expected, 180)
        after = time.monotonic() - killed
        pending = layout.sql(
            "SELECT count(*) FROM delivery d JOIN notification n ON n.id = d.notification_id "
            "WHERE d.status = 'pending' AND n.created_at >= now() - interval '15 minutes'"
        )[0][0]
    finally:
        world.receivers.delay = 0.0
    received, repeated = world.receivers.counts()
    print(
        f"  deploy/local/up restarted the worker in {restarted:.1f} s; the rest delivered "
        f"{after:.1f} s after the kill (the killed worker's leases last 60 s)"
    )
    results = [
        check(
            "mid-batch",
            leased > 0 and 0 < got_at_kill < len(expected),
            f"{leased} deliveries leased and {len(expected) - got_at_kill} not yet sent",
        ),
        check(
            "all events delivered after the restart",
            not missing,
            f"{len(expected) - len(missing)} of {len(expected)}; {pending} recent deliveries "
            f"still pending; {repeated} repeated webhook-ids so far (at least once)",
        ),
    ]
    return all(results)


def publish_burst(world: World, count: int) -> list[Publish]:
    """Publish ``count`` warnings at once from every agency's clients."""
    before = len(world.publishes)
    rng = random.Random(7)

    def one(index: int) -> None:
        client = world.clients[index % len(world.clients)]
        household = rng.choice(world.involving(client.agency))
        load.publish(world, client, household)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return world.publishes[before:]


HALF_WRITTEN = """
SELECT
  (SELECT count(*) FROM warning),
  (SELECT count(*) FROM warning w WHERE NOT EXISTS
     (SELECT 1 FROM warning_version v WHERE v.warning_id = w.id AND v.version = 1)),
  (SELECT count(*) FROM warning w WHERE NOT EXISTS
     (SELECT 1 FROM audit_ref r JOIN audit_entry e ON e.seq = r.entry_seq
       WHERE r.ref_type = 'warning' AND r.ref_id = w.id AND r.relation = 'returned'
         AND e.action = 'warning:create' AND e.outcome = 'allowed'))
"""


def stop_postgres(
    world: World, outage: float = 30.0, before: float = 10.0, after: float = 20.0
) -> bool:
    layout = world.layout
    published_before = len(world.publishes)
    background = Background(world, before + outage + after)
    time.sleep(before)
    stopping = time.monotonic()
    pg_ctl(layout, "-m", "fast", "-w", "stop")
    stopped = time.monotonic()
    # Half-way through, one briefing to read the problem the clients are given.
    remaining = max(0.0, outage - (stopped - stopping))
    time.sleep(remaining / 2)
    probe_client = second_instance(world, world.clients[0])  # the first is busy in the load
    probe_client.token = world.clients[0].token  # no token can be issued while it is down
    household = world.involving(probe_client.agency)[0]
    probe, probe_body = probe_client.request(
        "briefing", "GET", f"/api/v1/households/{household['id']}/briefing"
    )
    probe_type = (probe_body or {}).get("type", "") if isinstance(probe_body, dict) else ""
    time.sleep(max(0.0, outage - (time.monotonic() - stopping)))
    starting = time.monotonic()
    pg_ctl(layout, "-l", str(layout.state / "log" / "postgresql.log"), "-w", "start")
    started = time.monotonic()
    start, end = background.join()
    records = world.recorder.between(start, end)
    down = [r for r in records if stopping <= r.started < started]
    answered = [r for r in down if r.status]
    slow = [r for r in down if r.seconds > FAST]
    other_5xx = [r for r in down if r.status >= 500 and r.status != 503]
    ok_down = [r for r in down if 200 <= r.status < 300]
    recovered = [r for r in records if r.started >= started and 200 <= r.status < 300]
    first_ok = min((r.ended for r in recovered), default=float("nan")) - started
    tail = [r for r in records if r.started >= started + 5]
    times = [r.seconds * 1000 for r in down]
    print(
        f"pg_ctl stop -m fast, {outage:g} s down (stop took {stopped - stopping:.1f} s, "
        f"start {started - starting:.1f} s), under load:"
    )
    print(window("before the stop", [r for r in records if r.ended < stopping], stopping - start))
    print(window("while PostgreSQL was down", down, started - stopping))
    print(
        f"  {'':<34} latency while down: p50 {load.percentile(times, 0.5):.0f} ms, "
        f"p99 {load.percentile(times, 0.99):.0f} ms, max {max(times, default=0):.0f} ms"
    )
    print(window("from 5 s after the start", tail, end - started - 5))
    print(f"  a briefing while down: {probe} ({probe_type})")
    print(f"  first success {first_ok:.2f} s after PostgreSQL was up again (no restart)")
    publishes = world.publishes[published_before:]
    read, asked = read_back(world, publishes)
    total, no_version, no_entry = layout.sql(HALF_WRITTEN)[0]
    results = [
        check(
            "requests fail fast while down (503, or 429 once over the address's limit)",
            not slow and not other_5xx and len(answered) == len(down),
            f"{len(down)} requests: {sum(r.status == 503 for r in down)} answered 503, "
            f"{sum(r.status == 429 for r in down)} 429, {len(ok_down)} 2xx (served as it "
            f"stopped), {len(other_5xx)} other 5xx, {len(down) - len(answered)} unanswered, "
            f"{len(slow)} took over {FAST:g} s",
        ),
        check(
            "the refusal names the database",
            probe == 503 and probe_type.endswith(":database-unavailable"),
            f"a briefing while down: {probe} {probe_type}",
        ),
        check(
            "recovers without a restart",
            bool(recovered) and not any(failed(r) for r in tail),
            f"{sum(failed(r) for r in tail)} failed of {len(tail)} from 5 s after the start",
        ),
        check(
            "no half-written warning",
            no_version == 0 and no_entry == 0,
            f"{total} warnings: {no_version} without version 1, {no_entry} without the audit "
            f"entry of their publication; {read} of {asked} published during the step read back",
        ),
        chain(world),
    ]
    return all(results)


def revoke_audit(world: World, seconds: float = 10.0) -> bool:
    layout = world.layout
    role = "alertshare_app"
    client = world.clients[0]
    household = world.involving(client.agency)[0]
    warnings_before = layout.sql("SELECT count(*) FROM warning")[0][0]
    layout.sql(f"REVOKE INSERT ON audit_entry FROM {role}", owner=True)
    revoked = time.monotonic()
    try:
        # /readyz keeps its answer 5 s per process: wait for the new one.
        not_ready = wait_until(lambda: readyz(layout) == 503, 30)
        briefing, brief_body = client.request(
            "briefing", "GET", f"/api/v1/households/{household['id']}/briefing"
        )
        publish, publish_body = load.publish(world, client, household)
        token = token_probe(world)
        background = Background(world, seconds)
        start, end = background.join()
        during = world.recorder.between(start, end)
        warnings_after = layout.sql("SELECT count(*) FROM warning")[0][0]
        still_not_ready = readyz(layout)
    finally:
        layout.sql(f"GRANT INSERT ON audit_entry TO {role}", owner=True)
    granted = time.monotonic()
    ready_again = wait_until(lambda: readyz(layout) == 200, 30)
    status_after, _ = client.request(
        "briefing", "GET", f"/api/v1/households/{household['id']}/briefing"
    )
    print(f"REVOKE INSERT ON audit_entry FROM {role}; GRANT after {granted - revoked:.0f} s:")
    print(
        f"  /readyz answered 503 {not_ready:.1f} s after the revoke; a briefing {briefing} "
        f"({(brief_body or {}).get('type', '')}), a publish {publish}, a token request "
        f"{token.token_status}"
    )
    print(window("load while revoked", during, end - start))
    print(f"  after the GRANT: /readyz 200 within {ready_again:.1f} s, a briefing {status_after}")
    no_data = all(
        key in ("type", "title", "status", "detail", "request_id") for key in (brief_body or {})
    )
    statuses = Counter(r.status for r in during)
    results = [
        check(
            "audited routes answer 503 with no data",
            briefing == 503
            and publish == 503
            and no_data
            and token.token_status == 503
            and set(statuses) <= {503},
            f"briefing {briefing}, publish {publish}, token {token.token_status}, load "
            f"{dict(statuses)}; the briefing's body has only {sorted(brief_body or {})}",
        ),
        check(
            "nothing done while unrecorded persists",
            warnings_after == warnings_before,
            f"{warnings_before} warnings before, {warnings_after} after",
        ),
        check(
            "/readyz 503 while revoked, 200 after the grant",
            still_not_ready == 503,
            f"503 within {not_ready:.1f} s of the revoke and {still_not_ready} at its end, "
            f"200 within {ready_again:.1f} s of the grant",
        ),
        check("recovers", status_after == 200, f"a briefing after the grant: {status_after}"),
        chain(world),
    ]
    return all(results)


def second_instance(world: World, known: load.Client) -> load.Client:
    """Another instance of a client, with a connection of its own (a client's one connection
    belongs to its thread of the load) and no token yet."""
    return load.Client(
        world.layout, world.recorder, known.agency, known.client_id, known.secret, "probe"
    )


def token_probe(world: World) -> load.Client:
    """Ask for a token as a second instance of a client (its status in ``token_status``).

    Token requests count against the source address (60 a minute, and the setup asked for one
    per client): wait for the next minute rather than see that limit's 429."""
    probe = second_instance(world, world.clients[1])
    for _ in range(15):
        probe.ensure_token()
        if probe.token_status != 429:
            break
        time.sleep(5)
    return probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--step",
        action="append",
        choices=STEPS,
        help="a step to run (repeat; default: all, in order)",
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--agencies", type=int, default=5)
    parser.add_argument("--households", type=int, default=100)
    parser.add_argument("--outage", type=float, default=30.0, help="PostgreSQL down (30 s)")
    parser.add_argument("--state", help="the layout's state directory (ALERTSHARE_LOCAL_DIR)")
    args = parser.parse_args(argv)
    layout = Layout.from_state(args.state)
    world = load.build_world(
        layout,
        agencies=args.agencies,
        clients=args.clients,
        households=args.households,
        recorder=load.Recorder(),
    )
    print(
        f"faults {world.recorder.prefix}: {len(world.clients)} clients of "
        f"{len(world.agencies)} agencies, {len(world.households)} households\n"
    )
    steps: dict[str, Callable[[World], bool]] = {
        "kill-app": kill_app_server,
        "kill-worker": kill_worker,
        "stop-postgres": lambda w: stop_postgres(w, outage=args.outage),
        "revoke-audit": revoke_audit,
    }
    results = {}
    try:
        for name in args.step or STEPS:
            print(f"== {name}")
            results[name] = steps[name](world)
            print()
    finally:
        world.receivers.stop()
    for name, ok in results.items():
        print(f"{name:<14} {'ok' if ok else 'FAILED'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
