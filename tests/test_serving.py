"""Serving for real: gunicorn over HTTP, production mode's `alertshare serve`, and the demo."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from service.cli import main
from service.crypto import generate_keyring, save_keyring
from tests.conftest import ON_POSTGRES

ACTING = {"X-Acting-Practitioner": "sw-0042", "X-Purpose-Of-Use": "pre_visit"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(argv: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError(process.stderr.read().decode()) from None  # type: ignore[union-attr]
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()  # type: ignore[union-attr]


def _call(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _token(base: str, client_id: str, secret: str) -> str:
    import base64

    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    body = _call(f"{base}/oauth/token", data=b"grant_type=client_credentials",
                 headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    return str(body["access_token"])


def _demo(runner: CliRunner) -> tuple[str, str]:
    result = runner.invoke(main, ["demo", "--no-serve"])
    assert result.exit_code == 0, result.output
    client_id, secret = re.search(r"client_id=(\S+) client_secret=(\S+)", result.stdout).groups()  # type: ignore[union-attr]
    assert "curl" in result.stdout and "/oauth/token" in result.stdout
    return client_id, secret


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"ALERTSHARE_DATABASE_URL": database_url, "ALERTSHARE_DATA_DIR": str(tmp_path),
              "ALERTSHARE_LOG_LEVEL": "WARNING"}  # fmt: skip
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_demo_then_gunicorn_over_real_http(env: dict[str, str]) -> None:
    client_id, secret = _demo(CliRunner())
    port = _free_port()
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
            "service.wsgi:app"]  # fmt: skip
    with _server(argv, env, port) as base:
        token = _token(base, client_id, secret)
        me = _call(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}", **ACTING})
        assert me["client_id"] == client_id
        with pytest.raises(urllib.error.HTTPError) as refused:
            _call(f"{base}/api/v1/me")
        with refused.value:
            assert refused.value.code == 401
            assert refused.value.headers["Content-Type"] == "application/problem+json"


def test_demo_can_run_twice(env: dict[str, str]) -> None:
    first, second = _demo(CliRunner()), _demo(CliRunner())
    assert first[0] == second[0] and first[1] != second[1]


@pytest.mark.skipif(not ON_POSTGRES, reason="production mode refuses SQLite")
def test_alertshare_serve_in_production(env: dict[str, str], tmp_path: Path) -> None:
    keyring = tmp_path / "production-keyring.json"
    save_keyring(generate_keyring(), keyring)
    production = {
        **env,
        "ALERTSHARE_ENV": "production",
        "ALERTSHARE_KEYRING": str(keyring),
        "ALERTSHARE_SECRET_KEY": "p" * 48,
        "ALERTSHARE_ISSUER": "https://as.example.org",
    }
    port = _free_port()
    argv = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"]
    with _server(argv, production, port) as base:
        assert _call(f"{base}/readyz") == {"status": "ready"}
        metadata = _call(f"{base}/.well-known/oauth-authorization-server",
                         headers={"Host": "evil.example"})  # fmt: skip
        assert metadata["token_endpoint"] == "https://as.example.org/oauth/token"
