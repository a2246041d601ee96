"""The delivery worker end to end: real receivers on 127.0.0.1, the real ``alertshare worker``
command as a subprocess on the test's database, warnings published through the real API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from service.database import db
from service.models.notification import Delivery
from service.oauth.scopes import (
    HOUSEHOLDS_READ,
    INVOLVEMENTS_WRITE,
    NOTIFICATIONS_MANAGE,
    WARNINGS_WRITE,
)
from tests.conftest import MakeApp
from tests.factories import bearer, create_agency, create_client, create_household, get_token

ALERTSHARE = Path(sys.executable).with_name("alertshare")
TODAY = date.today()
# Personal values planted in each published warning; no webhook body may carry any of them.
PLANTED = ("Darren", "Pike", "knife", "KE-26-4471", "High Street", "SW1A")


@dataclass
class Received:
    agency: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receivers:
    """One local HTTP server standing for every agency's receiver (``/hook/<agency>``).

    Each agency answers 200 unless given a script of statuses to answer first; ``delay`` makes
    every answer slow. Every request is kept, in arrival order.
    """

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.received: list[Received] = []
        # By agency, or by (agency, event type): statuses to answer first, in order.
        self.scripts: dict[str | tuple[str, str], list[int]] = {}
        self.delay = 0.0
        self._lock = threading.Lock()
        server.expect_request(re.compile(r"^/hook/[^/]+$"), method="POST").respond_with_handler(
            self._answer
        )

    def url(self, agency: str) -> str:
        return self.server.url_for(f"/hook/{agency}")

    def _answer(self, request: Request) -> Response:
        agency = request.path.rsplit("/", 1)[1]
        with self._lock:
            self.received.append(
                Received(agency, {k.lower(): v for k, v in request.headers.items()},
                         request.get_data(), time.monotonic())
            )  # fmt: skip
            kind = json.loads(request.get_data()).get("type", "")
            script = self.scripts.get((agency, kind)) or self.scripts.get(agency)
            status = script.pop(0) if script else 200
        if self.delay:
            time.sleep(self.delay)
        return Response("ok" if status < 300 else "not now", status=status)

    def of(self, agency: str, event_type: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r for r in self.received
                if r.agency == agency and (event_type is None or r.event["type"] == event_type)
            ]  # fmt: skip

    def of_type(self, event_type: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.event["type"] == event_type]


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield Receivers(server)
    server.clear()
    if server.is_running():
        server.stop()


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


class Workers:
    """``alertshare worker`` subprocesses on the test's database and key ring."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.env = {
            **os.environ,
            "ALERTSHARE_DATABASE_URL": database_url,
            "ALERTSHARE_DATA_DIR": str(data_dir),  # the key ring the test app created there
            "ALERTSHARE_DELIVERY_TIMEOUT": "1",
            "ALERTSHARE_LOG_LEVEL": "INFO",
        }
        self.data_dir = data_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, name: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        name = name or f"w{len(self.started) + 1}"
        command = [str(ALERTSHARE), "worker", "--id", name, "--poll", "0.05", "--lease", "6",
                   "--batch", "10", *args]  # fmt: skip
        with (self.data_dir / f"worker-{name}.log").open("wb") as log:
            process = subprocess.Popen(command, env={**self.env, **env}, stdout=log, stderr=log)
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.data_dir / f"worker-{name}.log").read_text()

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(database_url: str, tmp_path: Path, app: Flask) -> Iterator[Workers]:
    # ``app`` first: it creates the development key ring in tmp_path the workers then open.
    pool = Workers(database_url, tmp_path)
    yield pool
    pool.stop_all()


@dataclass
class Agency:
    slug: str
    headers: dict[str, str]
    webhook_id: str | None = None
    secret: str | None = None


@dataclass
class World:
    """Agencies with real tokens, their webhooks, and publishing through the real API."""

    app: Flask
    client: FlaskClient
    receivers: Receivers
    agencies: dict[str, Agency] = field(default_factory=dict)

    def agency(self, slug: str, *, webhook: bool = True) -> Agency:
        create_agency(self.app, slug=slug, name=f"Agency {slug}")
        scopes = (WARNINGS_WRITE, INVOLVEMENTS_WRITE, HOUSEHOLDS_READ, NOTIFICATIONS_MANAGE)
        creds = create_client(self.app, agency_id=slug, scopes=scopes)
        agency = self.agencies[slug] = Agency(slug, bearer(get_token(self.client, creds)))
        if webhook:
            agency.webhook_id, agency.secret = self.add_webhook(slug, self.receivers.url(slug))
        return agency

    def add_webhook(self, slug: str, url: str) -> tuple[str, str]:
        """Register through the API, as an agency's case system does."""
        created = self.call(slug, "POST", "/webhooks", 201, json={"url": url})
        return created["id"], created["secret"]

    def call(self, slug: str, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        headers = self.agencies[slug].headers
        response = self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)
        assert response.status_code == status, (path, response.get_json())
        return response.get_json()

    def household(self, issuer: str, *involved: str) -> str:
        return create_household(self.app, created_by=issuer, involved=(issuer, *involved))

    def publish(self, issuer: str, household_id: str, **changes: Any) -> dict[str, Any]:
        agency = self.agencies[issuer]
        member = self.client.post(
            f"/api/v1/households/{household_id}/members", headers=agency.headers,
            json={"given_name": "Darren", "family_name": "Pike", "date_of_birth": "1984-05-02",
                  "role": "adult", "relationship": "father"},
        )  # fmt: skip
        assert member.status_code == 201, member.get_json()
        body = {
            "household": {"household_id": household_id},
            "categories": ["weapons"], "risk_level": "high", "children_in_household": False,
            "subject_informed": {"informed": True, "informed_on": str(TODAY)},
            "incidents": [{"occurred_on": str(TODAY - timedelta(days=1)),
                           "summary": "Threatened with a knife by Darren Pike",
                           "police_reported": True, "crime_reference": "KE-26-4471"}],
            "persons_of_concern": [{"member_id": member.get_json()["id"]}],
            **changes,
        }  # fmt: skip
        response = self.client.post("/api/v1/warnings", json=body, headers=agency.headers)
        assert response.status_code == 201, response.get_json()
        return dict(response.get_json())

    def deliveries(self, **where: Any) -> list[Delivery]:
        with self.app.app_context():
            query = select(Delivery).filter_by(**where)
            rows = list(db.session.scalars(query))
            db.session.expunge_all()
            return rows


@pytest.fixture
def world(make_app: MakeApp, app: Flask, receivers: Receivers) -> World:
    return World(app, app.test_client(), receivers)
