"""Appends from several app processes at once never fork the chain."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from flask import Flask

from service import create_app
from service.audit.verification import verify_log
from tests.audit.helpers import audit_entries
from tests.factories import ClientCredentials, bearer, create_client, get_token

PROCESSES = 4
REQUESTS_EACH = 40


def _hammer(config: dict[str, Any], creds: ClientCredentials, start_at: float) -> list[int]:
    """In a fresh process with its own app and connection pool: a token, then reads."""
    app = create_app(config)
    http = app.test_client()
    token = get_token(http, creds)
    # Start together, so the appends really contend for the chain head.
    time.sleep(max(0.0, start_at - time.time()))
    return [http.get("/api/v1/agencies", headers=bearer(token)).status_code
            for _ in range(REQUESTS_EACH)]  # fmt: skip


def test_parallel_processes_keep_one_unbroken_chain(app: Flask) -> None:
    creds = [create_client(app) for _ in range(PROCESSES)]
    config = {key: app.config[key] for key in ("DATA_DIR", "DATABASE_URL", "KEYRING")}
    config["LOG_LEVEL"] = "WARNING"
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        start_at = time.time() + 4
        results = pool.starmap(_hammer, [(config, c, start_at) for c in creds])
    assert all(status == 200 for statuses in results for status in statuses)
    entries = audit_entries(app)
    assert len(entries) == PROCESSES * (REQUESTS_EACH + 1)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    with app.app_context():
        report = verify_log()
    assert report.ok, report
    assert report.checked == len(entries)
