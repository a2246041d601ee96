"""Metrics: counted where they happen, served on a listener of their own and never by the API,
added up across gunicorn's workers, and the delivery worker's outcomes and the outbox."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from service.config import ConfigError, load_config
from service.metrics.exposition import process_registry, serving
from service.metrics.outbox import OutboxCollector
from tests.conftest import MakeApp
from tests.factories import basic_auth, bearer, create_client, get_token
from tests.worker import conftest as worker_fixtures
from tests.worker.conftest import Receivers, Workers, World, wait_for

# The delivery worker's fixtures: real receivers, real `alertshare worker` processes.
receivers, workers, world = (
    worker_fixtures.receivers,
    worker_fixtures.workers,
    worker_fixtures.world,
)

Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(base: str) -> Figures:
    """GET ``base``/metrics and parse it as Prometheus does."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(figures: Figures, name: str, **labels: str) -> float:
    return figures.get((name, frozenset(labels.items())), 0.0)


def total(figures: Figures, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in figures.items() if n == name and wanted <= found)


@contextmanager
def listener() -> Iterator[str]:
    """This process's metrics on a listener of their own, as ``alertshare worker`` serves."""
    bind = f"127.0.0.1:{_free_port()}"
    with serving(bind, process_registry()):
        yield f"http://{bind}"


def changes(base: str, action: Callable[[], Any]) -> Callable[..., float]:
    """Run ``action``; return a function giving how much a metric grew meanwhile."""
    before = scrape(base)
    action()
    after = scrape(base)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    return grew


# --- the app's requests, timed and counted -------------------------------------------------------


def test_requests_are_counted_by_route_template_method_and_status(app: Flask) -> None:
    client = app.test_client()
    creds = create_client(app)
    warning_ids = [str(uuid.uuid4()) for _ in range(2)]

    def requests() -> None:
        token = get_token(client, creds)
        for _ in range(3):
            assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
        for warning_id in warning_ids:
            response = client.get(f"/api/v1/warnings/{warning_id}", headers=bearer(token))
            assert response.status_code == 404
        assert client.get("/no/such/path").status_code == 404
        assert client.open("/healthz", method="BREW").status_code == 405

    with listener() as base:
        grew = changes(base, requests)
        text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()

    requests_total = "alertshare_http_requests_total"
    assert grew(requests_total, route="/oauth/token", method="POST", status="200") == 1
    assert grew(requests_total, route="/api/v1/me", method="GET", status="200") == 3
    warning = "/api/v1/warnings/<warning_id>"
    assert grew(requests_total, route=warning, method="GET", status="404") == 2
    # No route: one label value however many paths or methods a client invents.
    assert grew(requests_total, route="(unmatched)", method="GET", status="404") == 1
    assert grew(requests_total, route="(unmatched)", method="other", status="405") == 1
    assert grew(requests_total) == 8
    histogram = "alertshare_http_request_duration_seconds_count"
    assert grew(histogram, route="/api/v1/me", method="GET") == 3
    assert grew(histogram, route=warning, method="GET") == 2
    assert grew(histogram) == 8
    assert grew("alertshare_http_request_duration_seconds_sum") > 0
    for warning_id in warning_ids:  # ids never become labels
        assert warning_id not in text
    assert "/no/such/path" not in text and "BREW" not in text


def test_every_audit_append_is_timed(app: Flask, client: FlaskClient) -> None:
    creds = create_client(app)

    def audited_requests() -> None:
        token = get_token(client, creds)  # one entry
        for _ in range(4):
            assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
        assert client.get("/healthz").status_code == 200  # not audited

    with listener() as base:
        grew = changes(base, audited_requests)
    assert grew("alertshare_audit_append_seconds_count") == 5
    assert grew("alertshare_audit_append_seconds_bucket", le="+Inf") == 5
    assert grew("alertshare_audit_append_seconds_sum") > 0


def test_rate_limit_refusals_are_counted_by_kind(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_ANONYMOUS="3/minute", RATE_LIMIT_AUTHENTICATED="2/minute")
    client = app.test_client()
    creds = create_client(app)
    nobody = basic_auth("nobody.0123456789abcdef", "wrong-secret")
    form = {"grant_type": "client_credentials"}

    def flood() -> None:
        token = get_token(client, creds)  # one of the address's three
        statuses = [client.post("/oauth/token", data=form, headers=nobody).status_code
                    for _ in range(4)]  # fmt: skip
        assert statuses == [401, 401, 429, 429]
        statuses = [client.get("/api/v1/me", headers=bearer(token)).status_code
                    for _ in range(3)]  # fmt: skip
        assert statuses == [200, 200, 429]

    with listener() as base:
        grew = changes(base, flood)
    refusals = "alertshare_rate_limit_refusals_total"
    assert grew(refusals, kind="anonymous") == 2
    assert grew(refusals, kind="authenticated") == 1


def test_the_api_does_not_serve_metrics(app: Flask, client: FlaskClient) -> None:
    """Metrics are served only on their own listener: the API answers /metrics with a 404
    problem, to anyone, with or without a token."""
    token = get_token(client, create_client(app))
    for headers in ({}, bearer(token)):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
        assert b"alertshare_" not in response.data


def test_a_metrics_address_that_is_not_host_and_port_is_refused() -> None:
    for bind in ("9464", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ":9464"):
        with pytest.raises(ConfigError, match="ALERTSHARE_METRICS_BIND must be host:port"):
            load_config({"METRICS_BIND": bind})
    assert load_config({"METRICS_BIND": "[::1]:9464"})["METRICS_BIND"] == "[::1]:9464"


# --- the outbox, read at scrape time -------------------------------------------------------------


def _outbox(collector: OutboxCollector) -> dict[str, float]:
    return {family.name: family.samples[0].value for family in collector.collect()}


def test_the_outbox_is_read_at_each_scrape(world: World) -> None:
    collector = OutboxCollector(world.app.app_context)
    assert _outbox(collector) == {
        "alertshare_outbox_pending": 0, "alertshare_outbox_due": 0, "alertshare_dead_letters": 0,
        "alertshare_outbox_oldest_pending_age_seconds": 0,
        "alertshare_outbox_due_wait_seconds": 0,
    }  # fmt: skip
    world.agency("issuer", webhook=False)
    for slug in ("a", "b"):
        world.agency(slug, webhook=False)
    households = [world.household("issuer", "a", "b") for _ in range(3)]
    for slug in ("a", "b"):
        world.add_webhook(slug, world.receivers.url(slug))
    for household in households:
        world.publish("issuer", household)
    time.sleep(0.05)

    figures = _outbox(collector)
    assert figures["alertshare_outbox_pending"] == figures["alertshare_outbox_due"] == 6
    assert figures["alertshare_dead_letters"] == 0
    assert 0 < figures["alertshare_outbox_oldest_pending_age_seconds"] < 60
    assert 0 < figures["alertshare_outbox_due_wait_seconds"] < 60


def test_an_outbox_that_cannot_be_read_leaves_its_series_out(
    make_app: MakeApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = make_app(DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/alertshare.db")
    capsys.readouterr()
    assert list(OutboxCollector(broken.app_context).collect()) == []
    assert "outbox figures not read for a scrape (OperationalError)" in capsys.readouterr().err


# --- the delivery worker -------------------------------------------------------------------------


def test_the_worker_counts_deliveries_by_outcome_and_serves_the_outbox(
    world: World, workers: Workers, receivers: Receivers
) -> None:
    world.agency("issuer", webhook=False)
    answers = {"ok": [], "flaky": [500], "gone": [410], "refusing": [400], "down": [500] * 4}
    for slug in answers:
        world.agency(slug, webhook=False)
    household = world.household("issuer", *answers)
    for slug, script in answers.items():
        world.add_webhook(slug, receivers.url(slug))
        receivers.scripts[slug] = list(script)
    world.publish("issuer", household)

    bind = f"127.0.0.1:{_free_port()}"
    workers.start(ALERTSHARE_METRICS_BIND=bind, ALERTSHARE_DELIVERY_SCHEDULE="0.2,0.2,0.2")
    wait_for(lambda: not world.deliveries(status="pending"), timeout=30, what="all finished")

    figures = wait_for(lambda: _scraped(f"http://{bind}"), what="the worker's metrics")
    deliveries = "alertshare_deliveries_total"
    assert value(figures, deliveries, outcome="delivered") == 2  # ok, and flaky at its second
    assert value(figures, deliveries, outcome="retry") == 1 + 3  # flaky once, down three times
    assert value(figures, deliveries, outcome="dead") == 1
    assert value(figures, deliveries, outcome="gone") == 1
    assert value(figures, deliveries, outcome="failed") == 1
    assert value(figures, "alertshare_dead_letters") == 1
    assert value(figures, "alertshare_outbox_pending") == 0
    assert value(figures, "alertshare_outbox_due_wait_seconds") == 0
    # Every attempt recorded in the audit log, and timed.
    assert value(figures, "alertshare_audit_append_seconds_count") >= 1


def _scraped(base: str) -> Figures | None:
    try:
        return scrape(base)
    except OSError:
        return None


# --- gunicorn: several workers, one set of figures ------------------------------------------------


@contextmanager
def gunicorn(
    app: Flask, tmp_path: Path, metrics_bind: str, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``gunicorn`` with two workers and the product's settings, on the test's database."""
    port = _free_port()
    argv = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
            "--config", "python:service.gunicorn_conf", "service.wsgi:app"]  # fmt: skip
    settings = {
        "ALERTSHARE_DATABASE_URL": app.config["DATABASE_URL"],
        "ALERTSHARE_DATA_DIR": str(tmp_path),  # the key ring ``app`` created there
        "ALERTSHARE_LOG_LEVEL": "WARNING",
        "ALERTSHARE_METRICS_BIND": metrics_bind,
        "TMPDIR": str(tmp_path),
        **env,
    }
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with (tmp_path / "gunicorn.log").open("wb") as log:
        process = subprocess.Popen(argv, env={**environment, **settings}, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/healthz") or process.poll() is not None, timeout=30)
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
        yield process, base
    finally:
        process.terminate()
        process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10):
            return True
    except OSError:
        return False


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def _healthz_by_process(directory: Path) -> dict[int, float]:
    """/healthz requests counted by each process, from its own file in the directory."""
    counted = {}
    for path in directory.glob("counter_*.db"):
        figures = MultiProcessCollector.merge([str(path)])
        counted[int(path.stem.split("_")[1])] = sum(
            sample.value
            for family in figures
            for sample in family.samples
            if sample.name == "alertshare_http_requests_total"
            and sample.labels.get("route") == "/healthz"
        )
    return counted


def _healthz_served(metrics: str) -> float:
    return value(scrape(metrics), "alertshare_http_requests_total", route="/healthz",
                 method="GET", status="200")  # fmt: skip


def test_gunicorn_workers_counts_add_up_on_the_masters_metrics_listener(
    app: Flask, tmp_path: Path
) -> None:
    """Two workers serve; the master's listener shows every request, whichever worker served
    it; the API's own port has no metrics; stale files of an earlier run are not counted."""
    directory = tmp_path / "multiprocess"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"stale")  # an earlier run's: emptied at start
    bind = f"127.0.0.1:{_free_port()}"
    metrics = f"http://{bind}"
    with gunicorn(app, tmp_path, bind, PROMETHEUS_MULTIPROC_DIR=str(directory)) as (_, base):
        assert not (directory / "counter_1.db").exists()
        served = _healthz_served(metrics)  # the readiness wait's
        with ThreadPoolExecutor(max_workers=8) as pool:
            # Concurrent requests, until both workers have served some.
            for _ in range(20):
                statuses = list(pool.map(_get, [f"{base}/healthz"] * 40))
                assert statuses == [200] * 40
                served += 40
                if sum(1 for n in _healthz_by_process(directory).values() if n) >= 2:
                    break
        assert sum(1 for n in _healthz_by_process(directory).values() if n) == 2
        assert _healthz_served(metrics) == served

        assert _get(f"{base}/metrics") == 404  # the API's port: no metrics, to anyone
        assert b"alertshare_" not in _body(f"{base}/metrics")


def _body(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return bytes(error.read())


def test_gunicorn_keeps_a_killed_workers_counts_in_a_private_directory(
    app: Flask, tmp_path: Path
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the master makes a private directory (0700) and removes
    it at exit; a worker killed outright keeps its counts, so the counter never goes back."""
    bind = f"127.0.0.1:{_free_port()}"
    metrics = f"http://{bind}"
    with gunicorn(app, tmp_path, bind) as (master, base):
        (directory,) = tmp_path.glob("alertshare-metrics-*")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        served = _healthz_served(metrics)  # the readiness wait's
        for _ in range(10):
            assert _get(f"{base}/healthz") == 200
        counted = _healthz_by_process(directory)
        victim = max(counted, key=lambda pid: counted[pid])
        assert victim != master.pid and counted[victim] > 0
        os.kill(victim, signal.SIGKILL)
        # The other worker serves on while gunicorn replaces the dead one, whose counts stay.
        for _ in range(10):
            assert _get(f"{base}/healthz") == 200
        assert _healthz_served(metrics) == served + 10 + 10
        assert _healthz_by_process(directory)[victim] == counted[victim]
    assert not directory.exists()


def test_gunicorn_refuses_a_metrics_address_it_cannot_use(app: Flask, tmp_path: Path) -> None:
    port = _free_port()
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--config", "python:service.gunicorn_conf", "service.wsgi:app"]  # fmt: skip
    env = {**os.environ, "ALERTSHARE_DATA_DIR": str(tmp_path), "TMPDIR": str(tmp_path),
           "ALERTSHARE_DATABASE_URL": app.config["DATABASE_URL"]}  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        in_use = f"127.0.0.1:{taken.getsockname()[1]}"
        for bind, reason in (("9464", "must be host:port"), (in_use, "cannot serve metrics")):
            result = subprocess.run(argv, env={**env, "ALERTSHARE_METRICS_BIND": bind},
                                    capture_output=True, text=True, timeout=30)  # fmt: skip
            assert result.returncode != 0
            assert reason in result.stderr
            assert "Traceback" not in result.stderr
            assert not list(tmp_path.glob("alertshare-metrics-*"))  # nothing left behind
