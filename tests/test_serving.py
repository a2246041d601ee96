"""Serving for real: gunicorn over HTTP, production mode's `alertshare serve`, and the demo."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, text
from standardwebhooks.webhooks import Webhook

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
        "ALERTSHARE_SECRET_KEY": "Zt8-Lw3Qx6Rb1Nv9Hc4Kp7Ym2Gd5Sf0Ja",
        "ALERTSHARE_ISSUER": "https://as.example.org",
        # Two workers need shared rate-limit counts: production refuses per-process ones.
        "ALERTSHARE_RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/0",
    }
    port = _free_port()
    argv = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"]
    with _server(argv, production, port) as base:
        assert _call(f"{base}/readyz") == {"status": "ready"}
        metadata = _call(f"{base}/.well-known/oauth-authorization-server",
                         headers={"Host": "evil.example"})  # fmt: skip
        assert metadata["token_endpoint"] == "https://as.example.org/oauth/token"


def test_the_demo_serves_with_a_worker_that_delivers_webhooks(
    env: dict[str, str], httpserver: HTTPServer
) -> None:
    """`alertshare demo` as a user runs it: the server and its delivery worker, both stopped by
    one SIGTERM. The health visitor declares involvement; children's services' webhook gets the
    signed `involvement.added` event."""
    port = _free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo", "--port", str(port)],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    worker_pid = None
    try:
        printed = []
        for line in demo.stdout:  # type: ignore[union-attr]
            printed.append(line)
            if line.startswith("Serving on"):
                worker_pid = int(re.search(r"pid (\d+)", line).group(1))  # type: ignore[union-attr]
                break
        (children, health, *_) = re.findall(
            r"client_id=(\S+) client_secret=(\S+)", "".join(printed)
        )
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _answers(f"{base}/healthz"))
        headers = {"Content-Type": "application/json", **ACTING}
        children_auth = {"Authorization": f"Bearer {_token(base, *children)}", **headers}
        hook = _call(f"{base}/api/v1/webhooks", headers=children_auth, data=json.dumps({
            "url": httpserver.url_for("/alertshare"), "event_types": ["involvement.added"],
        }).encode())  # fmt: skip
        httpserver.expect_request("/alertshare", method="POST").respond_with_data("", 204)
        health_auth = {"Authorization": f"Bearer {_token(base, *health)}", **headers}
        _call(f"{base}/api/v1/involvements", headers=health_auth, data=json.dumps({
            "household": {"uprn": "100062123456"}, "case_reference": "HV-5521",
            "lead_practitioner": {"name": "Sam Patel", "contact": "01634 555010"},
        }).encode())  # fmt: skip
        _wait_for(lambda: httpserver.log)
        request, _ = httpserver.log[0]
        event = Webhook(hook["secret"]).verify(request.get_data(), dict(request.headers))
        assert event["type"] == "involvement.added"
        assert event["data"]["agency_id"] == "medway-health-visiting"
    finally:
        demo.terminate()
        assert demo.wait(timeout=20) == 0
        demo.stdout.close()  # type: ignore[union-attr]
    assert worker_pid is not None
    _wait_for(lambda: not Path(f"/proc/{worker_pid}").exists() or _is_zombie(worker_pid))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# --- request bodies over the limit, however framed -----------------------------------------------

LIMIT = 64 * 1024  # MAX_CONTENT_LENGTH's default
PRODUCTION_SETTINGS = {"ALERTSHARE_ENV": "production", "ALERTSHARE_ISSUER": "https://as.example.org",
                       "ALERTSHARE_SECRET_KEY": "Zt8-Lw3Qx6Rb1Nv9Hc4Kp7Ym2Gd5Sf0Ja"}  # fmt: skip


def _post_chunked(
    base: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str, dict[str, Any]]:
    """POST ``body`` with ``Transfer-Encoding: chunked`` (no Content-Length), 64 KiB a chunk, as
    a streaming client does; return the answer's status, content type and JSON body.

    The answer is read while the body is still being sent: a server that refuses it need not
    read the rest, and may close the connection before the client has finished sending.
    """
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = {"Host": f"{host}:{port}", "Transfer-Encoding": "chunked", "Connection": "close"}
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in {**head, **headers}.items())]

    def send() -> None:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            for start in range(0, len(body), LIMIT):
                chunk = body[start : start + LIMIT]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed without reading everything

    sender = threading.Thread(target=send)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = response.read()
        return response.status, response.getheader("Content-Type", ""), json.loads(answer)
    finally:
        sock.close()
        sender.join(timeout=30)


def _tokens_issued(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM oauth_token")).scalar_one())
    finally:
        engine.dispose()


def _serving(kind: str, port: int, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and extra settings of each way the product serves."""
    if kind == "gunicorn":  # what `alertshare serve` runs in production, on any database
        return [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
                "--config", "python:service.gunicorn_conf", "service.wsgi:app"], {}  # fmt: skip
    serve = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1"]
    if kind == "development":  # Werkzeug's server
        return serve, {}
    keyring = tmp_path / "production-keyring.json"
    save_keyring(generate_keyring(), keyring)
    return serve, {**PRODUCTION_SETTINGS, "ALERTSHARE_KEYRING": str(keyring)}


@pytest.mark.parametrize("kind", ["gunicorn", "development", "production"])
def test_a_chunked_body_over_the_limit_is_refused_not_cut(
    env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    """A 5 MB chunked form to the token endpoint issued a token (the body was cut at 64 KiB and
    the rest ignored); a JSON body that is valid up to the cut was acted on. Both are 413s, on
    every server the product runs; a chunked body up to the limit is still read whole."""
    if kind == "production" and not ON_POSTGRES:
        pytest.skip("production mode refuses SQLite")
    client_id, secret = _demo(CliRunner())
    port = _free_port()
    argv, settings = _serving(kind, port, tmp_path)
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    form = {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}
    with _server(argv, {**env, **settings}, port) as base:
        before = _tokens_issued(env["ALERTSHARE_DATABASE_URL"])
        padded_form = b"grant_type=client_credentials&padding=" + b"a" * (5 * 1024 * 1024)
        status, media, problem = _post_chunked(base, "/oauth/token", padded_form, form)
        assert (status, media) == (413, "application/problem+json"), problem
        assert "access_token" not in problem
        assert _tokens_issued(env["ALERTSHARE_DATABASE_URL"]) == before

        status, _, issued = _post_chunked(base, "/oauth/token", b"grant_type=client_credentials",
                                          form)  # fmt: skip
        assert status == 200 and _tokens_issued(env["ALERTSHARE_DATABASE_URL"]) == before + 1
        api = {"Authorization": f"Bearer {issued['access_token']}",
               "Content-Type": "application/json", **ACTING}  # fmt: skip
        lookup = b'{"uprn": "100062123456"}'
        for size, expected in ((5 * 1024 * 1024, 413), (LIMIT + 1, 413), (LIMIT, 200)):
            body = lookup.ljust(size)  # valid JSON, then spaces up to the size
            status, media, answer = _post_chunked(base, "/api/v1/households/lookup", body, api)
            assert status == expected, (size, answer)
            if expected == 413:
                assert media == "application/problem+json"
                assert answer["status"] == 413
