"""Rate limits: per client, per source address, 429 with Retry-After, and a bounded audit log
that still accounts for every refused request (one summary entry per source and window)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from limits import parse
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import event, text

from service import create_app
from service.api.rate_limits import (
    EXTENSION,
    SUMMARIES_PER_REQUEST,
    SWEEP_SECONDS,
    MemoryCounters,
    RateLimits,
    rate_limit_problems,
    write_open_summaries,
)
from service.audit.append import append
from service.audit.refusal_tally import (
    MemoryTally,
    RedisTally,
    Refusal,
    RefusalTally,
    TallyUnavailable,
)
from service.audit.refusals import (
    RATE_LIMITED_ACTION,
    TALLY_EXTENSION,
    refusals_in,
    summary_entry,
    write_closed_windows,
)
from service.audit.verification import verify_log
from service.config import ConfigError
from service.database import db, utcnow
from service.unit_of_work import unit_of_work
from service.worker import run as run_worker
from tests.audit.helpers import audit_entries
from tests.conftest import UNLIMITED, MakeApp
from tests.factories import basic_auth, bearer, create_client, get_token

REDIS_URL = os.environ.get("ALERTSHARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BAD_LOGIN = basic_auth("nobody.0123456789abcdef", "wrong-secret")
TOKEN_FORM = {"grant_type": "client_credentials"}


def later() -> Any:
    """A moment by which every window opened during a test has closed."""
    return utcnow() + timedelta(hours=2)


def tally_of(app: Flask) -> RefusalTally:
    """The tally the app's requests count their refusals in."""
    limits: RateLimits = app.extensions[EXTENSION]
    return limits.tally


def write_summaries(app: Flask) -> int:
    with app.app_context():
        return write_closed_windows(tally_of(app), later())


def summaries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["action"] == RATE_LIMITED_ACTION]


def fail_token_requests(client: FlaskClient, n: int, **headers: str) -> list[int]:
    return [
        client.post("/oauth/token", data=TOKEN_FORM, headers={**BAD_LOGIN, **headers}).status_code
        for _ in range(n)
    ]


# --- the answer over the limit ------------------------------------------------------------------


def test_a_failed_token_flood_is_refused_with_a_429_problem_and_retry_after(
    make_app: MakeApp,
) -> None:
    client = make_app(RATE_LIMIT_ANONYMOUS="5/minute").test_client()
    assert fail_token_requests(client, 5) == [401] * 5
    response = client.post("/oauth/token", data=TOKEN_FORM, headers=BAD_LOGIN)
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "urn:alertshare:problem:too-many-requests"
    assert body["status"] == 429 and "5 per 1 minute" in body["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_each_client_has_its_own_limit(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_AUTHENTICATED="3/minute", RATE_LIMIT_ANONYMOUS=UNLIMITED)
    client = app.test_client()
    first, second = create_client(app), create_client(app)
    first_token, second_token = get_token(client, first), get_token(client, second)
    statuses = [client.get("/api/v1/me", headers=bearer(first_token)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/api/v1/me", headers=bearer(first_token))
    assert "from this client" in refused.get_json()["detail"]
    # Another client from the same address is not held back by the first one's use.
    assert client.get("/api/v1/me", headers=bearer(second_token)).status_code == 200


def test_an_invalid_token_counts_against_the_address_not_a_client(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_AUTHENTICATED=UNLIMITED, RATE_LIMIT_ANONYMOUS="3/minute")
    client = app.test_client()
    token = get_token(client, create_client(app))  # the address's first request
    garbage = [client.get("/api/v1/me", headers=bearer("forged")).status_code for _ in range(3)]
    assert garbage == [401, 401, 429]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_unrouted_paths_are_limited_per_address(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT_ANONYMOUS="3/minute").test_client()
    statuses = [client.get(f"/api/v1/probe-{n}").status_code for n in range(3)]
    statuses.append(client.post("/oauth/nothing-here").status_code)
    assert statuses == [404, 404, 404, 429]


def test_the_address_is_the_client_behind_a_trusted_proxy(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT_ANONYMOUS="2/minute", TRUSTED_PROXIES=1).test_client()
    one, other = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.20"}
    assert fail_token_requests(client, 3, **one) == [401, 401, 429]
    assert fail_token_requests(client, 1, **other) == [401]


def test_health_probes_are_never_limited(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT_ANONYMOUS="1/minute").test_client()
    assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5
    assert client.get("/readyz").status_code == 200


def test_the_token_is_looked_up_once_per_request(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_AUTHENTICATED="100/minute")
    client = app.test_client()
    token = get_token(client, create_client(app))
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert sum("token_hash" in statement for statement in statements) == 1


# --- the audit log: bounded, and complete in count ----------------------------------------------


def test_a_flood_adds_a_handful_of_entries_whose_counts_add_up(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_ANONYMOUS="5/minute")
    client = app.test_client()
    statuses = fail_token_requests(client, 505)
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 500
    write_summaries(app)
    entries = audit_entries(app)
    written = summaries(entries)
    # The five answered requests have an entry each; the 500 refused, a summary per window.
    assert len(entries) - len(written) == 5
    assert 1 <= len(written) <= 2  # two only if the flood crossed a window's edge
    assert sum(refusals_in(entry) for entry in written) == 500
    for entry in written:
        assert (entry["kind"], entry["status"], entry["source_address"]) == (
            "summary", 429, "127.0.0.1",
        )  # fmt: skip
        assert entry["targets"]["first_refusal_at"] <= entry["targets"]["last_refusal_at"]
    # Written once: a second pass has nothing left to write.
    assert write_summaries(app) == 0
    with app.app_context():
        assert verify_log().ok


def test_a_client_s_summary_names_it_and_its_first_refused_request(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_AUTHENTICATED="2/minute", RATE_LIMIT_ANONYMOUS=UNLIMITED)
    client = app.test_client()
    creds = create_client(app)
    token = get_token(client, creds)
    for n in range(5):
        client.get("/api/v1/me", headers={**bearer(token), "X-Request-Id": f"call-{n}"})
    assert write_summaries(app) == 3
    (summary,) = summaries(audit_entries(app))
    assert (summary["client_id"], summary["agency_id"]) == (creds.client_id, creds.agency_id)
    assert summary["request_id"] == "call-2"
    assert summary["targets"]["refusals"] == ["3"]
    assert summary["outcome"] == "failed"


def test_refusals_are_written_by_a_later_request_once_their_window_closed(
    make_app: MakeApp,
) -> None:
    app = make_app(RATE_LIMIT_ANONYMOUS="1/minute")
    tally = tally_of(app)
    long_ago = utcnow() - timedelta(minutes=10)
    for _ in range(4):
        tally.record(Refusal("address:192.0.2.1", "192.0.2.1"), long_ago)
    assert summaries(audit_entries(app)) == []
    app.test_client().get("/healthz")  # any request looks for closed windows
    (summary,) = summaries(audit_entries(app))
    assert (summary["source_address"], refusals_in(summary)) == ("192.0.2.1", 4)


def test_a_refusal_that_cannot_be_counted_is_recorded_on_its_own(make_app: MakeApp) -> None:
    # No Redis answers on port 1: the limits fall back to this process's memory, and the
    # refusals, which cannot be counted, are each recorded as any request is.
    app = make_app(RATE_LIMIT_ANONYMOUS="2/minute", RATE_LIMIT_STORAGE="redis://127.0.0.1:1/0")
    assert fail_token_requests(app.test_client(), 4) == [401, 401, 429, 429]
    entries = audit_entries(app)
    assert [e["status"] for e in entries] == [401, 401, 429, 429]
    assert summaries(entries) == []


def test_the_worker_leaves_in_memory_counts_to_their_own_process(make_app: MakeApp) -> None:
    # A worker process cannot see an app server's memory: with memory:// it writes no
    # summaries (its own tally would always be empty), and the app's counts stay the app's.
    app = make_app()
    long_ago = utcnow() - timedelta(minutes=10)
    tally_of(app).record(Refusal("address:192.0.2.9", "192.0.2.9"), long_ago)
    assert app.extensions[TALLY_EXTENSION] is None
    assert run_worker(app, worker_id="test-worker", once=True, checkpoint_every=0) == 0
    assert summaries(audit_entries(app)) == []
    assert write_summaries(app) == 1  # written by the app's own process


def test_a_request_writes_at_most_a_few_summaries(make_app: MakeApp) -> None:
    # The rest wait for later requests (or, with Redis, the worker): a request is not held
    # up writing a backlog of summaries.
    app = make_app()
    long_ago = utcnow() - timedelta(minutes=10)
    for n in range(12):
        tally_of(app).record(Refusal(f"address:192.0.2.{n}", f"192.0.2.{n}"), long_ago)
    app.test_client().get("/healthz")
    assert len(summaries(audit_entries(app))) == SUMMARIES_PER_REQUEST
    assert write_summaries(app) == 12 - SUMMARIES_PER_REQUEST


def test_open_windows_are_written_by_the_exit_hook(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_ANONYMOUS="2/minute")
    assert fail_token_requests(app.test_client(), 7) == [401] * 2 + [429] * 5
    assert write_open_summaries(app) == 5  # what the process's exit hook calls
    entries = audit_entries(app)
    assert sum(refusals_in(entry) for entry in summaries(entries)) == 5
    assert len(entries) - len(summaries(entries)) == 2
    assert write_open_summaries(app) == 0


# A process of its own: it serves refused requests with in-memory counts, then exits normally.
EXITING_SERVER = """
import sys
from service import create_app

app = create_app({"DATA_DIR": sys.argv[1], "DATABASE_URL": sys.argv[2],
                  "RATE_LIMIT_ANONYMOUS": "1/minute", "LOG_LEVEL": "ERROR"})
client = app.test_client()
for _ in range(4):
    client.post("/oauth/token", data={"grant_type": "client_credentials"})
"""


def test_a_process_writes_its_open_windows_when_it_exits(
    make_app: MakeApp, database_url: str, tmp_path: Any
) -> None:
    app = make_app()  # the key ring the process shares
    done = subprocess.run(
        [sys.executable, "-c", EXITING_SERVER, str(tmp_path), database_url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    entries = audit_entries(app)
    assert [e["status"] for e in entries if e["kind"] != "summary"] == [401]
    assert sum(refusals_in(entry) for entry in summaries(entries)) == 3


def test_the_token_endpoints_keep_the_anonymous_limit_and_introspection_has_its_own(
    make_app: MakeApp,
) -> None:
    # A gateway introspecting every request it passes on must not be held to the limit meant
    # for failed token requests; token requests stay at the anonymous limit.
    app = make_app(RATE_LIMIT_ANONYMOUS="2/minute", RATE_LIMIT_INTROSPECTION="5/minute")
    client = app.test_client()
    creds = create_client(app)
    assert creds.secret
    token = get_token(client, creds)  # the address's first anonymous request
    login = basic_auth(creds.client_id, creds.secret)
    introspections = [
        client.post("/oauth/introspect", data={"token": token}, headers=login).status_code
        for _ in range(6)
    ]
    assert introspections == [200] * 5 + [429]
    revoked = client.post("/oauth/revoke", data={"token": "unknown"}, headers=login)
    assert revoked.status_code == 429  # introspection and revocation share one budget
    tokens = [client.post("/oauth/token", data=TOKEN_FORM, headers=login).status_code
              for _ in range(2)]  # fmt: skip
    assert tokens == [200, 429]


def test_ipv6_sources_are_limited_by_their_64_bit_prefix(make_app: MakeApp) -> None:
    # One host on IPv6 commonly holds a whole /64: counting each address would let it
    # multiply its limit by choosing a fresh one per request.
    client = make_app(RATE_LIMIT_ANONYMOUS="2/minute", TRUSTED_PROXIES=1).test_client()
    one_host = ["2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:abcd::9"]
    statuses = [fail_token_requests(client, 1, **{"X-Forwarded-For": a})[0] for a in one_host]
    assert statuses == [401, 401, 429]
    assert fail_token_requests(client, 1, **{"X-Forwarded-For": "2001:db8:1:3::1"}) == [401]
    # IPv4 is counted per address, also when written as an IPv4-mapped IPv6 address.
    assert fail_token_requests(client, 2, **{"X-Forwarded-For": "198.51.100.1"}) == [401, 401]
    mapped = fail_token_requests(client, 1, **{"X-Forwarded-For": "::ffff:198.51.100.1"})
    assert mapped == [429]


def logged_warnings(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The rate limiter's warnings in the application log (JSON lines on stderr)."""
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
             if line.startswith("{")]  # fmt: skip
    ours = ("service.api.rate_limits", "WARNING")
    return [line["message"] for line in lines if (line["logger"], line["level"]) == ours]


def test_sources_without_an_address_share_one_bucket_and_say_so(
    make_app: MakeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app(RATE_LIMIT_ANONYMOUS="1/minute", TRUSTED_PROXIES=1).test_client()
    capsys.readouterr()
    first = fail_token_requests(client, 1, **{"X-Forwarded-For": "not-an-address"})
    second = fail_token_requests(client, 1, **{"X-Forwarded-For": "unknown"})
    assert first + second == [401, 429]
    (warning,) = logged_warnings(capsys)  # once, not once per request
    assert "one shared limit" in warning and "not-an-address" not in warning


def test_a_failing_token_lookup_fails_closed_and_is_not_counted_against_the_address(
    make_app: MakeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    # The limiter's key function looks the token up; if that raises, the limiter would skip
    # the limits and the request fail with a 500. The database failed, not the client: the
    # request is not counted (a gateway's clients would otherwise get 429s for a minute after
    # an outage, hiding its cause) and is refused with a 503 when its token is checked.
    app = make_app(RATE_LIMIT_AUTHENTICATED=UNLIMITED, RATE_LIMIT_ANONYMOUS="3/minute")
    client = app.test_client()
    token = get_token(client, create_client(app))  # the address's first request
    with app.app_context():
        db.session.execute(text("ALTER TABLE oauth_token RENAME TO oauth_token_elsewhere"))
        db.session.commit()
    capsys.readouterr()
    responses = [client.get("/api/v1/me", headers=bearer(token)) for _ in range(4)]
    assert [r.status_code for r in responses] == [503, 503, 503, 503]
    assert all(r.mimetype == "application/problem+json" for r in responses)
    (warning,) = logged_warnings(capsys)  # once, and without a traceback per request
    assert "no limit counts it" in warning and token not in warning
    # Anonymous requests from the same address are still limited as before.
    unrouted = [client.get("/nowhere").status_code for _ in range(3)]
    assert unrouted == [404, 404, 429]


def test_a_request_refused_in_a_short_window_is_not_counted_in_a_longer_one(
    make_app: MakeApp,
) -> None:
    # A setting's limits are counted shortest window first, whatever their order, and the first
    # one over refuses the request: the longer windows keep their budget for after it resets.
    app = make_app(RATE_LIMIT_ANONYMOUS="3/hour;2/minute")
    client = app.test_client()
    assert fail_token_requests(client, 2) == [401, 401]
    refused = client.post("/oauth/token", data=TOKEN_FORM, headers=BAD_LOGIN)
    assert refused.status_code == 429 and "2 per 1 minute" in refused.get_json()["detail"]
    limits: RateLimits = app.extensions[EXTENSION]
    counted = (app.config["RATE_LIMIT_KEY_PREFIX"], "address:127.0.0.1", "address")
    hour = limits.counts.main.get_window_stats(parse("3/hour"), *counted)
    assert hour.remaining == 1


def test_a_limit_repeated_in_a_setting_counts_once(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT_ANONYMOUS="2/minute;2 per minute").test_client()
    assert fail_token_requests(client, 3) == [401, 401, 429]


def test_a_failing_limiter_serves_requests_uncounted_and_says_so_once(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app(RATE_LIMIT_ANONYMOUS="1/minute").test_client()

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("the counter broke")

    monkeypatch.setattr(FixedWindowRateLimiter, "hit", broken)
    capsys.readouterr()
    assert fail_token_requests(client, 3) == [401, 401, 401]
    (warning,) = logged_warnings(capsys)  # once, not once per request
    assert "served uncounted" in warning and "RuntimeError" in warning


def test_a_window_that_cannot_be_written_is_kept_for_the_next_attempt(app: Flask) -> None:
    tally = MemoryTally(60)
    long_ago = utcnow() - timedelta(minutes=10)
    tally.record(Refusal("address:192.0.2.3", "192.0.2.3"), long_ago)
    (key,) = tally.closed(later())
    assert tally.claim(key, later()) is not None
    assert tally.claim(key, later()) is None  # held by its writer
    tally.record(Refusal("address:192.0.2.3", "192.0.2.3"), long_ago)  # a late arrival
    tally.release(key)  # the writer failed
    with app.app_context():
        assert write_closed_windows(tally, later()) == 2
    (summary,) = summaries(audit_entries(app))
    assert refusals_in(summary) == 2


# --- counts in this process's memory ------------------------------------------------------------


class Clock:
    """A test's own time in epoch seconds, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_in_memory_counts_keep_a_fixed_window_and_start_afresh_after_it() -> None:
    clock = Clock()
    limiter = FixedWindowRateLimiter(MemoryCounters(clock))
    item, source = parse("3/minute"), ("prefix", "address:192.0.2.1", "address")
    assert [limiter.hit(item, *source) for _ in range(2)] == [True, True]
    clock.now += 59  # hits later in the window do not move its end
    assert [limiter.hit(item, *source) for _ in range(2)] == [True, False]
    assert limiter.get_window_stats(item, *source) == (clock.now + 1, 0)
    assert not limiter.test(item, *source)
    assert limiter.hit(item, "prefix", "address:192.0.2.2", "address")  # a count of its own
    clock.now += 1  # the window has ended
    assert limiter.get_window_stats(item, *source) == (clock.now, 3)
    assert [limiter.hit(item, *source) for _ in range(4)] == [True, True, True, False]
    assert limiter.get_window_stats(item, *source) == (clock.now + 60, 0)


def test_in_memory_counts_of_sources_not_seen_again_are_swept_out() -> None:
    # A flood from many addresses must not leave a key per address in memory for good.
    clock = Clock()
    counters = MemoryCounters(clock)
    for n in range(1000):
        counters.incr(f"address:10.0.{n // 256}.{n % 256}", 1)
    clock.now += SWEEP_SECONDS + 1  # every one of those windows has ended; none is used again
    counters.incr("address:192.0.2.1", 60)
    assert counters.reset() == 1  # the keys it held: only the one still counting


def test_in_memory_counts_add_up_when_several_threads_count_at_once() -> None:
    # gthread workers count from several threads. Switching between them as often as the
    # interpreter can makes a lost update all but certain if counting were not atomic.
    counters = MemoryCounters()
    barrier = threading.Barrier(8)

    def count() -> None:
        barrier.wait()
        for n in range(2000):
            counters.incr(f"key-{n % 4}", 60)

    threads = [threading.Thread(target=count) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert [counters.get(f"key-{k}") for k in range(4)] == [4000] * 4


@pytest.mark.parametrize("storage", ["memory://", "redis://127.0.0.1:1/0"])
def test_counting_in_memory_starts_no_thread(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, storage: str
) -> None:
    # limits' MemoryStorage started a timer thread whenever its last one had ended (10 ms),
    # nearly one a request under load; in memory:// mode, and in the memory counts used while
    # Redis does not answer (none does on port 1), no request may start one.
    app = make_app(RATE_LIMIT_STORAGE=storage, RATE_LIMIT_AUTHENTICATED="100/second;1000/hour",
                   RATE_LIMIT_ANONYMOUS="100/second;1000/hour")  # fmt: skip
    client = app.test_client()
    token = get_token(client, create_client(app))
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def counted_start(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted_start)
    running = threading.active_count()
    for _ in range(30):
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
        assert fail_token_requests(client, 1) == [401]
    assert started == []
    assert threading.active_count() <= running


# --- configuration ------------------------------------------------------------------------------


def production(**overrides: Any) -> dict[str, Any]:
    return {"RATE_LIMIT_AUTHENTICATED": "600/minute", "RATE_LIMIT_ANONYMOUS": "60/minute",
            "RATE_LIMIT_INTROSPECTION": "600/minute", "RATE_LIMIT_STORAGE": "memory://",
            "RATE_LIMIT_SUMMARY_SECONDS": 60,
            "RATE_LIMITS_BY_GATEWAY": False, "WORKERS": None, **overrides}  # fmt: skip


def test_production_refuses_in_memory_limits_with_several_workers() -> None:
    (problem,) = rate_limit_problems(production(WORKERS=4))
    assert "memory://" in problem and "4 workers" in problem
    assert rate_limit_problems(production(WORKERS=1)) == []
    assert rate_limit_problems(production(WORKERS=4, RATE_LIMITS_BY_GATEWAY=True)) == []
    redis_storage = production(WORKERS=4, RATE_LIMIT_STORAGE="redis://cache.internal:6379/0")
    assert rate_limit_problems(redis_storage) == []


def test_unusable_limit_settings_are_refused_in_one_line(make_app: MakeApp) -> None:
    for setting, value in (
        ("RATE_LIMIT_ANONYMOUS", "lots"),
        ("RATE_LIMIT_AUTHENTICATED", ""),
        ("RATE_LIMIT_INTROSPECTION", "often"),
        ("RATE_LIMIT_STORAGE", "memcached://127.0.0.1:11211"),
    ):
        with pytest.raises(ConfigError, match=f"ALERTSHARE_{setting}"):
            make_app(**{setting: value})
    assert rate_limit_problems(production(RATE_LIMIT_ANONYMOUS="ten")) != []


def test_limits_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Any
) -> None:
    monkeypatch.setenv("ALERTSHARE_RATE_LIMIT_ANONYMOUS", "2/minute")
    monkeypatch.setenv("ALERTSHARE_WORKERS", "3")
    app = create_app({"DATA_DIR": str(tmp_path), "DATABASE_URL": database_url})
    assert app.config["WORKERS"] == 3
    assert fail_token_requests(app.test_client(), 3) == [401, 401, 429]
    assert write_open_summaries(app) == 1  # nothing left for the exit hook
    with app.app_context():
        db.engine.dispose()


# --- Redis: one count for every process -------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis; its keys are deleted afterwards."""
    server = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        server.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis does not answer at {REDIS_URL}: with CI=true these tests run")
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    prefix = f"alertshare-test-{uuid.uuid4().hex}"
    yield prefix
    for key in server.scan_iter(match=f"*{prefix}*"):
        server.delete(key)
    server.close()


def shared_apps(make_app: MakeApp, prefix: str, **limits: str) -> tuple[Flask, Flask]:
    settings = {"RATE_LIMIT_STORAGE": REDIS_URL, "RATE_LIMIT_KEY_PREFIX": prefix, **limits}
    return make_app(**settings), make_app(**settings)


def test_two_processes_sharing_redis_share_one_count(make_app: MakeApp, redis_prefix: str) -> None:
    one, other = shared_apps(make_app, redis_prefix, RATE_LIMIT_ANONYMOUS="4/minute")
    clients = [one.test_client(), other.test_client()]
    statuses = [clients[n % 2].post("/oauth/token", data=TOKEN_FORM, headers=BAD_LOGIN)
                for n in range(10)]  # fmt: skip
    assert [response.status_code for response in statuses] == [401] * 4 + [429] * 6
    # Both counted their refusals into the same windows: one summary each, whoever writes it.
    assert write_summaries(one) == 6
    assert write_summaries(other) == 0
    written = summaries(audit_entries(one))
    assert 1 <= len(written) <= 2 and sum(refusals_in(e) for e in written) == 6
    with one.app_context():
        assert verify_log().ok


def test_a_client_s_limit_is_shared_by_every_process(make_app: MakeApp, redis_prefix: str) -> None:
    one, other = shared_apps(
        make_app, redis_prefix, RATE_LIMIT_AUTHENTICATED="3/minute", RATE_LIMIT_ANONYMOUS=UNLIMITED
    )
    token = get_token(one.test_client(), create_client(one))
    clients = [one.test_client(), other.test_client()]
    statuses = [clients[n % 2].get("/api/v1/me", headers=bearer(token)).status_code
                for n in range(5)]  # fmt: skip
    assert statuses == [200, 200, 200, 429, 429]


def test_a_writer_that_died_after_its_commit_does_not_write_twice(
    app: Flask, redis_prefix: str
) -> None:
    tally = RedisTally(REDIS_URL, redis_prefix, 60)
    long_ago = utcnow() - timedelta(minutes=10)
    for _ in range(7):
        tally.record(Refusal("address:192.0.2.5", "192.0.2.5"), long_ago)
    (key,) = tally.closed(later())
    window = tally.claim(key, utcnow())
    assert window is not None and window.count == 7
    with app.app_context(), unit_of_work():
        append(summary_entry(window))  # committed; then the writer died before completing
    assert tally.claim(key, utcnow()) is None  # its lease still runs
    # Once the lease has run out, the next writer takes the window over and finds its entry.
    with app.app_context():
        assert write_closed_windows(tally, utcnow() + timedelta(minutes=5)) == 7
    assert [refusals_in(e) for e in summaries(audit_entries(app))] == [7]
    assert tally.closed(later()) == []


def test_refusals_arriving_during_a_write_are_counted_in_a_summary_of_their_own(
    app: Flask, redis_prefix: str
) -> None:
    tally = RedisTally(REDIS_URL, redis_prefix, 60)
    long_ago = utcnow() - timedelta(minutes=10)
    tally.record(Refusal("address:192.0.2.6", "192.0.2.6"), long_ago)
    (key,) = tally.closed(later())
    assert tally.claim(key, utcnow()) is not None
    tally.record(Refusal("address:192.0.2.6", "192.0.2.6"), long_ago)  # a slow request
    tally.release(key)  # the writer failed: the window is written by the next one
    with app.app_context():
        assert write_closed_windows(tally, later()) == 1
        assert write_closed_windows(tally, later()) == 1
    assert sorted(refusals_in(e) for e in summaries(audit_entries(app))) == [1, 1]


def test_the_worker_writes_the_summaries_counted_in_redis(
    make_app: MakeApp, redis_prefix: str
) -> None:
    # The app servers count refusals in Redis; the worker process, with the same storage,
    # writes the summaries of the windows that closed.
    server, worker = shared_apps(make_app, redis_prefix)
    long_ago = utcnow() - timedelta(minutes=10)
    for _ in range(3):
        tally_of(server).record(Refusal("address:192.0.2.9", "192.0.2.9"), long_ago)
    assert run_worker(worker, worker_id="test-worker", once=True, checkpoint_every=0) == 0
    (summary,) = summaries(audit_entries(worker))
    assert refusals_in(summary) == 3
    assert tally_of(server).closed(later()) == []


@pytest.fixture
def blackhole() -> Iterator[str]:
    """The URL of a Redis that never answers: a socket that listens and never accepts."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_a_tally_stops_calling_a_redis_that_does_not_answer(blackhole: str) -> None:
    tally = RedisTally(blackhole, "alertshare-test", 60, socket_timeout=0.5,
                       socket_connect_timeout=0.5)  # fmt: skip
    refusal = Refusal("address:192.0.2.1", "192.0.2.1")
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        tally.record(refusal, utcnow())
    assert time.monotonic() - started >= 0.4  # the first call waited for Redis
    for _ in range(5):
        started = time.monotonic()
        with pytest.raises(TallyUnavailable):
            tally.record(refusal, utcnow())
        assert time.monotonic() - started < 0.1  # the next ones do not


def test_refusals_are_answered_quickly_while_redis_does_not_answer(
    make_app: MakeApp, blackhole: str
) -> None:
    app = make_app(RATE_LIMIT_ANONYMOUS="1/minute", RATE_LIMIT_STORAGE=blackhole)
    client = app.test_client()
    took = []
    for _ in range(8):
        started = time.monotonic()
        client.post("/oauth/token", data=TOKEN_FORM, headers=BAD_LOGIN)
        took.append(time.monotonic() - started)
    # The first requests wait for Redis (the limiter's storage, then the tally) and the
    # limiter looks again now and then; the refusals in between do not wait.
    assert sum(seconds >= 0.5 for seconds in took) <= 3, took
    entries = audit_entries(app)
    assert [e["status"] for e in entries] == [401] + [429] * 7
    assert summaries(entries) == []


def test_a_429_stands_when_the_storage_cannot_say_when_its_window_resets(
    make_app: MakeApp, redis_prefix: str
) -> None:
    # A Redis user that may count but not read a key's expiry: the storage fails just when
    # the refusal asks how long to wait. The answer is still a 429, with the whole window.
    with _redis_user(redis_prefix, commands=["-ttl", "-pttl"]) as (_, _, url):
        client = make_app(RATE_LIMIT_STORAGE=url, RATE_LIMIT_KEY_PREFIX=redis_prefix,
                          RATE_LIMIT_ANONYMOUS="2/minute").test_client()  # fmt: skip
        responses = [client.post("/oauth/token", data=TOKEN_FORM, headers=BAD_LOGIN)
                     for _ in range(3)]  # fmt: skip
        assert [r.status_code for r in responses] == [401, 401, 429]
        assert responses[2].headers["Retry-After"] == "60"


@contextmanager
def _redis_user(prefix: str, **acl: Any) -> Iterator[tuple[redis.Redis, str, str]]:
    """A Redis user of its own (every key, every command but those ``acl`` takes away): the
    server, the user's name and a storage URL that logs in as it. Deleted afterwards."""
    server = redis.Redis.from_url(REDIS_URL)
    user, password = f"{prefix}-user", uuid.uuid4().hex
    server.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                       channels=["*"], categories=["+@all"], **acl)  # fmt: skip
    try:
        address = urlsplit(REDIS_URL)
        yield server, user, address._replace(netloc=f"{user}:{password}@{address.netloc}").geturl()
    finally:
        server.acl_deluser(user)
        server.close()


def test_limits_are_counted_in_memory_while_redis_fails_and_in_redis_once_it_answers(
    make_app: MakeApp, redis_prefix: str
) -> None:
    # A Redis user switched off and on stands for an outage. The counters keep the keys
    # Flask-Limiter gave them, so a shared Redis's counts carry over an upgrade.
    key = f"LIMITS:LIMITER/{redis_prefix}/address:127.0.0.1/address/3/1/minute"
    with _redis_user(redis_prefix) as (server, user, url):

        def counted_in_redis() -> int:
            return int(server.get(key) or 0)

        client = make_app(RATE_LIMIT_STORAGE=url, RATE_LIMIT_KEY_PREFIX=redis_prefix,
                          RATE_LIMIT_ANONYMOUS="3/minute").test_client()  # fmt: skip
        assert client.get("/nowhere").status_code == 404
        assert counted_in_redis() == 1
        server.acl_setuser(user, enabled=False)
        server.client_kill_filter(user=user)
        # Counted afresh in this process's memory, and limited there.
        assert [client.get("/nowhere").status_code for _ in range(4)] == [404] * 3 + [429]
        server.acl_setuser(user, enabled=True)
        assert client.get("/nowhere").status_code == 429  # Redis is not asked at every request
        assert counted_in_redis() == 1
        time.sleep(1.1)  # it is asked again a second after it failed
        assert client.get("/nowhere").status_code == 404
        assert counted_in_redis() == 2
