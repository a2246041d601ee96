"""Signed checkpoints: real Ed25519 signing, verification, export and strict parsing."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from service.audit.chain import GENESIS_HASH, link_hash, verify_chain
from service.audit.checkpoint import (
    FORMAT,
    Checkpoint,
    CheckpointError,
    key_id_for,
    public_key_from_private,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from tests.audit.helpers import generate_private_key

PRIVATE = generate_private_key()
PUBLIC = public_key_from_private(PRIVATE)
HEAD = hashlib.sha256(b"head").digest()
WHEN = datetime(2026, 11, 23, 10, 57, 21, 123456, tzinfo=UTC)


def make_checkpoint(seq: int = 42, head: bytes = HEAD, key: bytes = PRIVATE) -> Checkpoint:
    """Sign a checkpoint with keyword defaults."""
    return sign_checkpoint(key, seq, head, created_at=WHEN)


def test_sign_and_verify_round_trip() -> None:
    cp = make_checkpoint()
    verify_checkpoint_signature(cp, PUBLIC)
    assert (cp.seq, cp.hash, cp.created_at) == (42, HEAD.hex(), "2026-11-23T10:57:21.123456Z")
    assert cp.key_id == hashlib.sha256(PUBLIC).hexdigest()[:16] == key_id_for(PUBLIC)
    assert len(base64.b64decode(cp.signature)) == 64
    assert base64.b64decode(cp.public_key or "") == PUBLIC


def test_signed_payload_is_canonical_json_of_four_fields() -> None:
    cp = make_checkpoint()
    expected = (
        f'{{"created_at":"2026-11-23T10:57:21.123456Z","hash":"{HEAD.hex()}",'
        f'"key_id":"{cp.key_id}","seq":42}}'
    )
    assert cp.signed_payload() == expected.encode()


def test_created_at_defaults_to_now_and_is_normalised_to_utc() -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    cp = sign_checkpoint(PRIVATE, 1, HEAD)
    assert before <= datetime.strptime(cp.created_at, "%Y-%m-%dT%H:%M:%S.%fZ")
    local = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert sign_checkpoint(PRIVATE, 1, HEAD, local).created_at == "2026-11-23T10:00:00.000000Z"


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 43},
        {"hash": hashlib.sha256(b"other").hexdigest()},
        {"created_at": "2026-11-23T10:57:21.123457Z"},
    ],
)
def test_tampered_checkpoint_is_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(CheckpointError, match="signature is invalid"):
        verify_checkpoint_signature(replace(make_checkpoint(), **change), PUBLIC)


def test_tampered_signature_is_rejected() -> None:
    cp = make_checkpoint()
    signature = bytearray(base64.b64decode(cp.signature))
    signature[0] ^= 1
    forged = replace(cp, signature=base64.b64encode(bytes(signature)).decode())
    with pytest.raises(CheckpointError, match="signature is invalid"):
        verify_checkpoint_signature(forged, PUBLIC)


def test_wrong_key_is_rejected() -> None:
    other_public = public_key_from_private(generate_private_key())
    with pytest.raises(CheckpointError, match="key_id"):
        verify_checkpoint_signature(make_checkpoint(), other_public)
    # A checkpoint signed by another key but claiming our key_id still fails on the signature.
    impostor = replace(make_checkpoint(key=generate_private_key()), public_key=None)
    with pytest.raises(CheckpointError, match="signature is invalid"):
        verify_checkpoint_signature(replace(impostor, key_id=key_id_for(PUBLIC)), PUBLIC)
    with pytest.raises(CheckpointError, match="32 raw"):
        verify_checkpoint_signature(make_checkpoint(), PUBLIC[:31])


def test_json_round_trip() -> None:
    cp = make_checkpoint()
    document = cp.to_json()
    assert document["format"] == FORMAT == "alertshare-audit-checkpoint/1"
    assert document["public_key"] == base64.b64encode(PUBLIC).decode()
    text = json.dumps(document)
    assert Checkpoint.from_json(text) == Checkpoint.from_json(text.encode()) == cp
    assert Checkpoint.from_json(document) == cp
    verify_checkpoint_signature(Checkpoint.from_json(text), PUBLIC)


def test_exported_checkpoint_guards_the_chain() -> None:
    fields = {
        "seq": 1, "occurred_at": "2026-11-23T10:57:21.123456Z", "action": "warning:read",
        "outcome": "allowed", "status": 200, "agency_id": None, "client_id": None,
        "practitioner": None, "purpose": None, "request_id": None, "source_address": None,
        "targets": {}, "returned": {}, "kind": "entry",
    }  # fmt: skip
    digest = link_hash(GENESIS_HASH, fields)
    kept = json.dumps(make_checkpoint(1, digest).to_json())
    checkpoint = Checkpoint.from_json(kept)
    verify_checkpoint_signature(checkpoint, PUBLIC)
    row = (*(fields[name] for name in sorted(fields)), GENESIS_HASH, digest)
    assert verify_chain([row], checkpoint=checkpoint).ok
    assert verify_chain([], checkpoint=checkpoint).problem == "truncated"


def _mutations() -> list[tuple[str, Any]]:
    good = make_checkpoint().to_json()
    other_key = base64.b64encode(public_key_from_private(generate_private_key())).decode()
    return [
        ("missing key", {k: v for k, v in good.items() if k != "signature"}),
        ("extra key", good | {"comment": "hi"}),
        ("wrong format", good | {"format": "alertshare-audit-checkpoint/2"}),
        ("seq str", good | {"seq": "42"}),
        ("seq bool", good | {"seq": True}),
        ("seq negative", good | {"seq": -1}),
        ("hash upper", good | {"hash": good["hash"].upper()}),
        ("hash short", good | {"hash": good["hash"][:62]}),
        ("created_at no Z", good | {"created_at": "2026-11-23T10:57:21.123456"}),
        ("created_at unreal", good | {"created_at": "2026-13-23T10:57:21.123456Z"}),
        ("key_id", good | {"key_id": "xyz"}),
        ("signature b64", good | {"signature": "!!!!"}),
        ("signature size", good | {"signature": base64.b64encode(bytes(63)).decode()}),
        ("public_key mismatch", good | {"public_key": other_key}),
        ("public_key null", good | {"public_key": None}),
        ("not json", "{not json"),
        ("json list", "[]"),
    ]


@pytest.mark.parametrize(("case", "document"), _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_documents_are_rejected(case: str, document: Any) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_json(document)


def test_export_needs_public_key() -> None:
    with pytest.raises(CheckpointError, match="public key"):
        replace(make_checkpoint(), public_key=None).to_json()


def test_bad_keys_and_hashes_are_refused_when_signing() -> None:
    with pytest.raises(CheckpointError, match="private key"):
        public_key_from_private(b"short")
    with pytest.raises(CheckpointError, match="head_hash"):
        sign_checkpoint(PRIVATE, 1, b"short")
    with pytest.raises(CheckpointError, match="seq"):
        sign_checkpoint(PRIVATE, -1, HEAD)
