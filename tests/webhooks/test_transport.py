import json
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import IPv4Address, IPv6Address

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug import Request, Response

from service.webhooks.signing import generate_secret, sign
from service.webhooks.transport import EXCERPT_BYTES, MAX_RETRY_AFTER, deliver, parse_retry_after
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
