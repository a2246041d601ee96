"""Sign and check Ed25519 checkpoints that pin the audit chain head.

A checkpoint says "at ``created_at`` the chain's entry ``seq`` had hash ``hash``". Kept outside
the service, it exposes later truncation or consistent rewriting of history (see verify_chain).

* ``key_id``: first 16 lowercase hex chars of SHA-256 over the raw 32-byte Ed25519 public key.
* Signed payload: canonical JSON (the rules in ``service.audit.chain``) of the object
  ``{"created_at", "hash", "key_id", "seq"}``, e.g.
  ``{"created_at":"2026-11-23T10:57:21.123456Z","hash":"<64 hex>","key_id":"<16 hex>","seq":42}``.
* ``signature``: Ed25519 (RFC 8032) over those bytes, standard padded base64.
* Export document (``to_json``): the four signed fields plus ``signature``, ``public_key``
  (raw key, standard padded base64) and ``"format": "alertshare-audit-checkpoint/1"``.
  The embedded public key only identifies the signer: auditors must check the signature against
  a key they obtained independently (``verify_checkpoint_signature``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.audit.chain import canonical_json, format_timestamp

FORMAT = "alertshare-audit-checkpoint/1"
_DOC_KEYS = frozenset({"format", "seq", "hash", "created_at", "key_id", "public_key", "signature"})
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


class CheckpointError(ValueError):
    """A checkpoint is malformed, or its signature or key does not check out."""


def _b64decode(text: Any, size: int, what: str) -> bytes:
    # Strict: only the canonical encoding of exactly `size` bytes is accepted.
    try:
        raw = base64.b64decode(text, validate=True)
    except (TypeError, binascii.Error) as exc:
        raise CheckpointError(f"{what} is not valid base64") from exc
    if len(raw) != size or base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} must be canonical base64 of {size} bytes")
    return raw


def key_id_for(public_key_raw: bytes) -> str:
    """Return the key id (16 hex chars of SHA-256) of a raw Ed25519 public key."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed (seq, hash) head of the audit chain; public_key is base64 and informational."""

    seq: int
    hash: str
    created_at: str
    key_id: str
    signature: str
    public_key: str | None = None

    def __post_init__(self) -> None:
        """Reject field values that do not match the documented formats."""
        if self.seq.__class__ is not int or self.seq < 0:
            raise CheckpointError("seq must be a non-negative integer")
        for name, value, pattern in (
            ("hash", self.hash, _HEX64),
            ("created_at", self.created_at, _TIMESTAMP),
            ("key_id", self.key_id, _HEX16),
        ):
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise CheckpointError(f"{name} is malformed")
        try:
            datetime.strptime(self.created_at, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError as exc:
            raise CheckpointError("created_at is not a real time") from exc
        _b64decode(self.signature, 64, "signature")
        if self.public_key is not None:
            if key_id_for(_b64decode(self.public_key, 32, "public_key")) != self.key_id:
                raise CheckpointError("public_key does not match key_id")

    def signed_payload(self) -> bytes:
        """Return the canonical bytes the signature covers."""
        fields = {"seq": self.seq, "hash": self.hash, "created_at": self.created_at}
        return canonical_json({**fields, "key_id": self.key_id})  # same dict as sign_checkpoint

    def to_json(self) -> dict[str, Any]:
        """Return the export document an auditor can keep outside the service."""
        if self.public_key is None:
            raise CheckpointError("export needs the public key; set public_key first")
        return {
            "format": FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "created_at": self.created_at,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | str | bytes) -> Checkpoint:
        """Parse and validate an export document (dict or JSON text)."""
        if isinstance(document, str | bytes):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise CheckpointError("checkpoint document is not valid JSON") from exc
        if not isinstance(document, Mapping) or set(document) != _DOC_KEYS:
            raise CheckpointError(f"checkpoint document needs exactly the keys {sorted(_DOC_KEYS)}")
        if document["format"] != FORMAT:
            raise CheckpointError(f"unsupported checkpoint format {document['format']!r}")
        if document["public_key"] is None:
            raise CheckpointError("public_key is malformed")
        return cls(**{name: document[name] for name in _DOC_KEYS - {"format"}})


def _private_key(private_key_raw: bytes) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(private_key_raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError("private key must be 32 raw Ed25519 bytes") from exc


def public_key_from_private(private_key_raw: bytes) -> bytes:
    """Return the raw 32-byte public key for a raw Ed25519 private key."""
    return _private_key(private_key_raw).public_key().public_bytes_raw()


def sign_checkpoint(
    private_key_raw: bytes, seq: int, head_hash: bytes, created_at: datetime | None = None
) -> Checkpoint:
    """Sign a checkpoint of the chain head (seq, head_hash) at created_at (default now)."""
    if len(head_hash) != 32:
        raise CheckpointError("head_hash must be 32 bytes")
    key = _private_key(private_key_raw)
    public_raw = key.public_key().public_bytes_raw()
    fields: dict[str, Any] = {
        "seq": seq,
        "hash": bytes(head_hash).hex(),
        "created_at": format_timestamp(datetime.now(UTC) if created_at is None else created_at),
        "key_id": key_id_for(public_raw),
    }
    return Checkpoint(
        **fields,
        signature=base64.b64encode(key.sign(canonical_json(fields))).decode("ascii"),
        public_key=base64.b64encode(public_raw).decode("ascii"),
    )


def verify_checkpoint_signature(cp: Checkpoint, public_key_raw: bytes) -> None:
    """Check cp was signed by public_key_raw; raise CheckpointError if not."""
    if len(public_key_raw) != 32:
        raise CheckpointError("public key must be 32 raw Ed25519 bytes")
    if key_id_for(public_key_raw) != cp.key_id:
        raise CheckpointError(f"checkpoint key_id {cp.key_id} is not this public key's")
    signature = _b64decode(cp.signature, 64, "signature")
    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(signature, cp.signed_payload())
    except (InvalidSignature, ValueError) as exc:
        raise CheckpointError("checkpoint signature is invalid") from exc
