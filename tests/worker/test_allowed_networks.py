"""ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS end to end: read at start, applied by production when an
endpoint is registered through the API and again by the worker before it sends."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from service import ConfigError, create_app, delivery
from service.crypto import generate_keyring, save_keyring
from service.database import utcnow
from service.oauth.scopes import NOTIFICATIONS_MANAGE
from service.webhooks.addresses import allowed_networks
from tests.conftest import ON_POSTGRES, MakeApp
from tests.factories import bearer, create_client, get_token
from tests.worker.conftest import World

# Nothing listens on the discard port: a send that gets past the guard fails to connect.
UNANSWERED = "https://127.0.0.1:9/hook"


@pytest.fixture
def production_app(make_app: MakeApp, database_url: str, tmp_path: Path) -> Flask:
    """Return an app whose webhook routes run as production's do, with 127.0.0.0/8 listed.

    On PostgreSQL it is a real production app. On SQLite, which production refuses, it is a
    development app told it is in production: the routes read the mode from the config."""
    listed = {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
    if not ON_POSTGRES:
        app = make_app(**listed)
        app.config["ENV"] = "production"
        return app
    keyring = tmp_path / "production-keyring.json"
    save_keyring(generate_keyring(), keyring)
    return make_app(
        ENV="production", SECRET_KEY="hN4w-Qe7Lr2Tz9Xk5Vb1Pc8Ym3Fs6Jd0Ga", KEYRING=str(keyring),
        ISSUER="https://alertshare.example.org", **listed,
    )  # fmt: skip


def _register(app: Flask, url: str) -> tuple[int, dict[str, object]]:
    client = app.test_client()
    token = get_token(client, create_client(app, scopes=(NOTIFICATIONS_MANAGE,)))
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=bearer(token))
    return response.status_code, response.get_json()


def test_production_registers_an_endpoint_in_a_listed_network_and_no_other(
    production_app: Flask,
) -> None:
    assert _register(production_app, "https://127.0.0.1:8443/hook")[0] == 201
    status, problem = _register(production_app, "https://10.0.0.1/hook")
    assert status == 400
    assert problem["errors"] == {"url": ["the host resolves to a private address"]}


def test_by_default_production_refuses_a_loopback_endpoint(make_app: MakeApp) -> None:
    app = make_app()
    app.config["ENV"] = "production"  # as above: the route reads the mode from the config
    status, problem = _register(app, "https://127.0.0.1:8443/hook")
    assert status == 400
    assert problem["errors"] == {"url": ["the host resolves to a loopback address"]}


def test_the_worker_sends_to_a_listed_network_in_production_and_to_no_other(
    world: World,
) -> None:
    world.agency("issuer", webhook=False)
    world.agency("health", webhook=False)
    world.add_webhook("health", UNANSWERED)  # development accepts it: production must check
    world.publish("issuer", world.household("issuer", "health"))
    with world.app.app_context():
        jobs = delivery.claim_jobs("test-worker", 10, 60, utcnow())
        assert jobs
        for job in jobs:
            refused = delivery.send(job, production=True)
            assert refused.result is None
            assert refused.refusal == "unsafe endpoint: the host resolves to a loopback address"
            sent = delivery.send(job, production=True, allowed=allowed_networks("127.0.0.0/8"))
            assert sent.refusal is None and sent.result is not None
            assert sent.result.outcome == "retry"
            assert sent.result.error is not None and "could not connect" in sent.result.error


@pytest.mark.parametrize("value", ["10.0.0.1/8", "psn", "0.0.0.0/0"])
def test_a_bad_setting_refuses_to_start_in_one_line(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS") as refused:
        create_app({"DATA_DIR": str(tmp_path), "WEBHOOK_ALLOWED_NETWORKS": value})
    assert "\n" not in str(refused.value)


def test_the_setting_is_read_from_the_environment(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16,127.0.0.0/8")
    app = make_app()
    assert app.config["WEBHOOK_ALLOWED_NETWORKS"] == allowed_networks("10.20.0.0/16,127.0.0.0/8")
