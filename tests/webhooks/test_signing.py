import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.webhooks.signing import generate_secret, sign

BODY = b'{"type":"warning.published","warning_id":"7c9e","severity":"high"}'


def test_a_generated_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert first != second


def test_the_three_headers_verify_with_the_standard_library() -> None:
    secret = generate_secret()
    headers = sign([secret], "msg_1", datetime.now(UTC), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert Webhook(secret).verify(BODY, headers)["severity"] == "high"


def test_during_rotation_both_secrets_sign_and_either_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    headers = sign([old, new], "msg_1", datetime.now(UTC), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(entry.startswith("v1,") for entry in headers["webhook-signature"].split(" "))
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)


def test_a_wrong_secret_fails_verification() -> None:
    headers = sign([generate_secret()], "msg_1", datetime.now(UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_an_altered_body_fails_verification() -> None:
    secret = generate_secret()
    headers = sign([secret], "msg_1", datetime.now(UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"high", b"low"), headers)


def test_a_retry_keeps_the_id_with_a_fresh_timestamp_and_signature() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    first = sign([secret], "msg_1", now - timedelta(seconds=90), BODY)
    again = sign([secret], "msg_1", now, BODY)
    assert again["webhook-id"] == first["webhook-id"]
    assert int(again["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 90
    assert again["webhook-signature"] != first["webhook-signature"]
    Webhook(secret).verify(BODY, first)
    Webhook(secret).verify(BODY, again)


def test_a_timestamp_in_another_zone_signs_the_same_instant() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    in_utc = sign([secret], "msg_1", now, BODY)
    elsewhere = sign([secret], "msg_1", now.astimezone(timezone(timedelta(hours=5))), BODY)
    assert elsewhere == in_utc
    Webhook(secret).verify(BODY, elsewhere)


def test_a_str_payload_signs_like_its_utf8_bytes() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    text = '{"note":"café"}'
    assert sign([secret], "m", now, text) == sign([secret], "m", now, text.encode())


@pytest.mark.parametrize(
    ("secrets", "msg_id", "timestamp", "payload"),
    [
        ([], "msg_1", datetime.now(UTC), BODY),
        (["not-whsec"], "msg_1", datetime.now(UTC), BODY),
        (["whsec_!!!not base64!!!"], "msg_1", datetime.now(UTC), BODY),
        (["whsec_" + base64.b64encode(b"short").decode()], "msg_1", datetime.now(UTC), BODY),
        ([generate_secret()], "", datetime.now(UTC), BODY),
        ([generate_secret()], "msg_1\r\nX-Injected: 1", datetime.now(UTC), BODY),
        ([generate_secret()], "msg_1", datetime.now(), BODY),  # naive
        ([generate_secret()], "msg_1", datetime.now(UTC), b"\xff\xfe"),
    ],
    ids=[
        "no-secret",
        "no-prefix",
        "not-base64",
        "short-key",
        "empty-id",
        "header-injection",
        "naive-time",
        "not-utf8",
    ],
)
def test_bad_input_is_refused(
    secrets: list[str], msg_id: str, timestamp: datetime, payload: bytes
) -> None:
    with pytest.raises(ValueError):
        sign(secrets, msg_id, timestamp, payload)
