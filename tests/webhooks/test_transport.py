import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv6Address

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug import Request, Response

from service.webhooks.addresses import CheckedTarget
from service.webhooks.signing import generate_secret, sign
from service.webhooks.transport import (
    EXCERPT_BYTES,
    MAX_RETRY_AFTER,
    KeptConnections,
    deliver,
    parse_retry_after,
)
from tests.webhooks.conftest import LOCALHOST, SNI_SEEN, CertificateAuthority, make_target

BODY = json.dumps({"type": "warning.published", "warning_id": "7c9e"}).encode()


def _capture(received: list[Request]) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        request.get_data()  # read it now: the request's stream is gone once the handler returns
        received.append(request)
        return Response(status=204)

    return handler


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_receiver_verifies_the_signature_of_both_rotation_secrets(receiver: HTTPServer) -> None:
    old, new = generate_secret(), generate_secret()
    received: list[Request] = []
    receiver.expect_request("/hook", method="POST").respond_with_handler(_capture(received))

    attempt = deliver(
        make_target(receiver), BODY, sign([old, new], "msg_1", datetime.now(UTC), BODY)
    )

    assert (attempt.outcome, attempt.status, attempt.error) == ("delivered", 204, None)
    (request,) = received
    headers = dict(request.headers)
    assert Webhook(old).verify(request.get_data(), headers)["warning_id"] == "7c9e"
    assert Webhook(new).verify(request.get_data(), headers)["warning_id"] == "7c9e"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(request.get_data(), headers)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("alertshare-webhooks/")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (500, "retry"),
        (503, "retry"),
        (429, "retry"),
        (400, "failed"),
        (404, "failed"),
        (410, "gone"),
    ],
)
def test_the_status_decides_the_outcome(receiver: HTTPServer, status: int, outcome: str) -> None:
    receiver.expect_request("/hook").respond_with_data("answer", status=status)
    attempt = deliver(make_target(receiver), BODY, {})
    assert (attempt.outcome, attempt.status, attempt.address) == (outcome, status, "127.0.0.1")
    assert attempt.error == (None if outcome == "delivered" else f"HTTP {status}")
    assert attempt.excerpt == ("" if status == 204 else "answer")
    assert attempt.retry_after is None
    assert attempt.elapsed_ms >= 0


def test_retry_after_in_seconds_is_read(receiver: HTTPServer) -> None:
    receiver.expect_request("/hook").respond_with_data(status=429, headers={"Retry-After": "120"})
    attempt = deliver(make_target(receiver), BODY, {})
    assert (attempt.outcome, attempt.retry_after) == ("retry", 120.0)


def test_retry_after_as_an_http_date_is_read(receiver: HTTPServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    receiver.expect_request("/hook").respond_with_data(status=503, headers={"Retry-After": later})
    attempt = deliver(make_target(receiver), BODY, {})
    assert attempt.outcome == "retry"
    assert attempt.retry_after is not None and 3590 <= attempt.retry_after <= 3600


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("٣", None),  # a digit, but not an ASCII one
        (" 30 ", 30.0),
        ("0", 0.0),
        ("99999999999", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
        ("Fri, 02 Jan 2026 00:00:00 GMT", 86400.0),
        ("Sat, 03 Jan 2026 00:00:01 GMT", MAX_RETRY_AFTER),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == seconds


def test_a_redirect_is_not_followed(receiver: HTTPServer) -> None:
    receiver.expect_request("/hook").respond_with_data(
        status=302, headers={"Location": receiver.url_for("/elsewhere")}
    )
    receiver.expect_request("/elsewhere").respond_with_data("followed")
    attempt = deliver(make_target(receiver), BODY, {})
    assert (attempt.outcome, attempt.status) == ("failed", 302)
    assert [request.path for request, _ in receiver.log] == ["/hook"]


def test_a_receiver_too_slow_to_answer_is_retried(receiver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.8)
        return Response(status=200)

    receiver.expect_request("/hook").respond_with_handler(slow)
    attempt = deliver(make_target(receiver), BODY, {}, timeout=0.5)
    assert (attempt.outcome, attempt.status) == ("retry", None)
    assert attempt.error is not None and attempt.error.startswith("no response in time")
    assert attempt.elapsed_ms >= 450


def test_a_closed_port_is_retried_with_a_connection_error(receiver: HTTPServer) -> None:
    target = make_target(receiver)
    target = type(target)(target.scheme, target.hostname, _free_port(), "/hook", (LOCALHOST,))
    attempt = deliver(target, BODY, {})
    assert (attempt.outcome, attempt.status, attempt.address) == ("retry", None, None)
    assert attempt.error == f"could not connect: connection refused (127.0.0.1:{target.port})"


def test_the_next_checked_address_is_tried_when_one_refuses(receiver: HTTPServer) -> None:
    # The receiver listens on 127.0.0.1 only, so 127.0.0.2 (also loopback) refuses.
    receiver.expect_request("/hook").respond_with_data(status=200)
    target = make_target(receiver, addresses=(IPv4Address("127.0.0.2"), LOCALHOST))
    attempt = deliver(target, BODY, {})
    assert (attempt.outcome, attempt.address) == ("delivered", "127.0.0.1")
    assert len(receiver.log) == 1


def test_a_large_answer_is_cut_to_an_excerpt(receiver: HTTPServer) -> None:
    receiver.expect_request("/hook").respond_with_data("é" * 500_000, status=500)  # 1 MB
    attempt = deliver(make_target(receiver), BODY, {})
    assert (attempt.outcome, attempt.status) == ("retry", 500)
    assert len(attempt.excerpt.encode()) <= EXCERPT_BYTES
    assert attempt.excerpt.startswith("éé")


def test_it_connects_to_the_checked_address_and_never_resolves_the_name(
    receiver: HTTPServer,
) -> None:
    received: list[Request] = []
    receiver.expect_request("/hook").respond_with_handler(_capture(received))
    target = make_target(receiver, hostname="does-not-resolve.invalid")
    attempt = deliver(target, BODY, {"Host": "attacker.example"})
    assert attempt.outcome == "delivered"
    (request,) = received
    # The caller's Host is overridden: it must name the host that was checked.
    assert request.headers["Host"] == f"does-not-resolve.invalid:{receiver.port}"
    assert request.get_data() == BODY


def test_https_verifies_the_certificate_against_the_hostname(
    tls_receiver: HTTPServer, certificate_authority: CertificateAuthority
) -> None:
    received: list[Request] = []
    tls_receiver.expect_request("/hook").respond_with_handler(_capture(received))
    target = make_target(tls_receiver, hostname="webhook.test")
    attempt = deliver(target, BODY, {}, ca_certs=str(certificate_authority.bundle))
    assert (attempt.outcome, attempt.status) == ("delivered", 204)
    assert SNI_SEEN == ["webhook.test"]
    assert received[0].headers["Host"] == f"webhook.test:{tls_receiver.port}"


def test_https_refuses_a_certificate_for_another_name(
    tls_receiver: HTTPServer, certificate_authority: CertificateAuthority
) -> None:
    target = make_target(tls_receiver, hostname="other.test")
    attempt = deliver(target, BODY, {}, ca_certs=str(certificate_authority.bundle))
    assert (attempt.outcome, attempt.status) == ("retry", None)
    assert attempt.error is not None and attempt.error.startswith("TLS failed:")
    assert "other.test" in attempt.error
    assert tls_receiver.log == []


def test_https_refuses_a_certificate_from_an_untrusted_authority(
    tls_receiver: HTTPServer,
) -> None:
    # Without ca_certs only the system's trust store counts, and it does not know the test CA.
    attempt = deliver(make_target(tls_receiver, hostname="webhook.test"), BODY, {})
    assert attempt.outcome == "retry"
    assert attempt.error is not None and "certificate" in attempt.error
    assert tls_receiver.log == []


def test_an_ipv6_address_is_reached_too() -> None:
    try:
        server = HTTPServer(host="::1", port=0)
        server.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        server.expect_request("/hook").respond_with_data(status=200)
        target = make_target(server, hostname="::1", addresses=(IPv6Address("::1"),))
        attempt = deliver(target, BODY, {})
        assert (attempt.outcome, attempt.address) == ("delivered", "::1")
        assert server.log[0][0].headers["Host"] == f"[::1]:{server.port}"
    finally:
        server.stop()


# --- kept connections (a worker's keep-alive) ----------------------------------------------------


class _KeepAliveReceiver:
    """A receiver that keeps connections open (HTTP/1.1), noting each request's client port;
    ``answer`` is the body it sends, ``http10`` makes it close after every response instead."""

    def __init__(
        self, *, answer: bytes = b"", http10: bool = False, host: str = "127.0.0.1"
    ) -> None:
        ports: list[int] = []
        self.ports = ports

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0" if http10 else "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                ports.append(self.client_address[1])
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def target(self, address: str = "127.0.0.1") -> CheckedTarget:
        port = self.server.server_address[1]
        return CheckedTarget("http", "127.0.0.1", port, "/hook", (IPv4Address(address),))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def keep_alive() -> Iterator[Callable[..., _KeepAliveReceiver]]:
    started: list[_KeepAliveReceiver] = []

    def start(**options: object) -> _KeepAliveReceiver:
        started.append(_KeepAliveReceiver(**options))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def connections() -> Iterator[KeptConnections]:
    kept = KeptConnections()
    yield kept
    kept.close()


def test_kept_connections_reuse_one_connection_per_checked_address(
    keep_alive: Callable[..., _KeepAliveReceiver], connections: KeptConnections
) -> None:
    receiver = keep_alive()
    attempts = [deliver(receiver.target(), BODY, {}, connections=connections) for _ in range(3)]
    assert [a.outcome for a in attempts] == ["delivered"] * 3
    assert len(receiver.ports) == 3 and len(set(receiver.ports)) == 1


def test_without_kept_connections_each_delivery_opens_its_own(
    keep_alive: Callable[..., _KeepAliveReceiver],
) -> None:
    receiver = keep_alive()
    for _ in range(2):
        assert deliver(receiver.target(), BODY, {}).outcome == "delivered"
    assert len(set(receiver.ports)) == 2


def test_another_checked_address_gets_its_own_connection(
    keep_alive: Callable[..., _KeepAliveReceiver], connections: KeptConnections
) -> None:
    # Kept per address the check returned: a new answer from DNS never rides an old connection.
    receiver = keep_alive(host="0.0.0.0")  # noqa: S104 (to be reached at 127.0.0.2 too)
    for address in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
        assert deliver(receiver.target(address), BODY, {}, connections=connections).outcome == (
            "delivered"
        )
    assert len(set(receiver.ports)) == 2
    assert len(connections) == 2


def test_a_connection_idle_too_long_is_not_reused(
    keep_alive: Callable[..., _KeepAliveReceiver],
) -> None:
    receiver = keep_alive()
    connections = KeptConnections(idle_seconds=0.05)
    try:
        deliver(receiver.target(), BODY, {}, connections=connections)
        time.sleep(0.1)
        deliver(receiver.target(), BODY, {}, connections=connections)
    finally:
        connections.close()
    assert len(set(receiver.ports)) == 2


def test_an_answer_longer_than_the_excerpt_closes_the_connection(
    keep_alive: Callable[..., _KeepAliveReceiver], connections: KeptConnections
) -> None:
    # The rest of a long answer is never read, so that connection cannot carry the next request.
    receiver = keep_alive(answer=b"x" * (EXCERPT_BYTES * 4))
    first = deliver(receiver.target(), BODY, {}, connections=connections)
    second = deliver(receiver.target(), BODY, {}, connections=connections)
    assert (first.outcome, second.outcome) == ("delivered", "delivered")
    assert len(first.excerpt) == EXCERPT_BYTES
    assert len(set(receiver.ports)) == 2


def test_a_receiver_that_closes_each_connection_still_gets_every_delivery(
    keep_alive: Callable[..., _KeepAliveReceiver], connections: KeptConnections
) -> None:
    receiver = keep_alive(http10=True)
    outcomes = [deliver(receiver.target(), BODY, {}, connections=connections).outcome
                for _ in range(5)]  # fmt: skip
    assert outcomes == ["delivered"] * 5
    assert len(set(receiver.ports)) == 5


def test_kept_connections_keep_at_most_the_addresses_they_are_allowed(
    keep_alive: Callable[..., _KeepAliveReceiver],
) -> None:
    receiver = keep_alive(host="0.0.0.0")  # noqa: S104 (to be reached at 127.0.0.2 and .3)
    connections = KeptConnections(most=2)
    try:
        for address in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            deliver(receiver.target(address), BODY, {}, connections=connections)
        assert len(connections) == 2
    finally:
        connections.close()
    assert len(connections) == 0
