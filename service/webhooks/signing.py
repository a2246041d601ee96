"""Standard Webhooks secrets and signatures (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import binascii
import math
import secrets as random_source
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# The specification's bounds on a signing key's length.
_MIN_KEY_BYTES, _MAX_KEY_BYTES = 24, 64


def generate_secret() -> str:
    """Return a new signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(SECRET_BYTES)).decode("ascii")


def sign(
    secrets: Sequence[str], msg_id: str, timestamp: datetime, payload: bytes | str
) -> dict[str, str]:
    """Return the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers.

    Each secret adds one ``v1,<base64>`` entry to ``webhook-signature`` (space-separated), so
    during a rotation both the old and the new secret sign and a receiver holding either
    verifies. Sign every attempt afresh with the same ``msg_id`` (the receiver's idempotency
    key) and the attempt's own ``timestamp`` (receivers refuse signatures older than about five
    minutes). ``timestamp`` must be timezone-aware; ``payload`` must be the exact body sent,
    UTF-8. Raises ``ValueError`` for a malformed secret, id, timestamp or payload.
    """
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    if not msg_id or not all("!" <= char <= "~" for char in msg_id):
        # The id travels in a header: a space or line break in it would forge other headers.
        raise ValueError("msg_id must be non-empty printable ASCII without spaces")
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        # The library would take a naive time as UTC (and drops any other zone's offset with
        # replace()), silently signing the wrong instant.
        raise ValueError("timestamp must be timezone-aware")
    # Whole seconds, in UTC, so the header and the signed content name the same instant.
    seconds = math.floor(timestamp.timestamp())
    instant = datetime.fromtimestamp(seconds, tz=UTC)
    # The library signs the text's UTF-8 encoding; decoding strictly keeps the bytes identical.
    data = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    signatures = [
        Webhook(_checked(secret)).sign(msg_id, instant, data) for secret in dict.fromkeys(secrets)
    ]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": " ".join(signatures),
    }


def _checked(secret: str) -> str:
    # The library base64-decodes leniently (stray characters are dropped), so a mangled secret
    # would sign with a key the receiver does not hold; refuse it here instead.
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a signing secret must be base64 after its prefix") from None
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise ValueError(f"a signing key must be {_MIN_KEY_BYTES} to {_MAX_KEY_BYTES} bytes")
    return secret
