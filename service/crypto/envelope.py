"""Envelope encryption of record fields.

Each record gets one fresh random 256-bit data key, wrapped by a KeyProvider under the active
KEK and stored beside the row as (key_version, wrapped_key). Every field is sealed with
AES-256-GCM under the data key with a fresh random 96-bit nonce; the associated data binds the
ciphertext to (table, record id, field) so it cannot be moved to another row or column, and the
wrapped key is bound to (table, record id) so it cannot be copied to another row.

Sealed field format: 0x01 (format) || 12-byte nonce || ciphertext || 16-byte tag.
"""

from __future__ import annotations

import functools
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keyring import KEY_BYTES, NONCE_BYTES, TAG_BYTES, DecryptionError, KeyProvider, KeyRingError

FORMAT_V1 = b"\x01"
_MIN_SEALED = len(FORMAT_V1) + NONCE_BYTES + TAG_BYTES


# Associated data: a label, then each name length-prefixed, so that no choice of names can make
# two tuples encode the same.
_FIELD_LABEL = b"alertshare/v1/field"
_KEY_LABEL = b"alertshare/v1/data-key"


def _encoded_part(part: str) -> bytes:
    if not isinstance(part, str) or not part:
        raise ValueError("table, record id and field must be non-empty strings")
    raw = part.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


# Table and field names are few and fixed: each is encoded once.
_encoded_known_name = functools.lru_cache(maxsize=256)(_encoded_part)


def _encoded_name(name: str) -> bytes:
    if not isinstance(name, str):  # unhashable names too: a ValueError, as for any other part
        raise ValueError("table, record id and field must be non-empty strings")
    return _encoded_known_name(name)


def _encoded_record(table: str, record_id: str) -> bytes:
    return _encoded_name(table) + _encoded_part(record_id)


def field_aad(table: str, record_id: str, field: str) -> bytes:
    """Return associated data binding a sealed field to its table, record and field name."""
    return _FIELD_LABEL + _encoded_record(table, record_id) + _encoded_name(field)


def key_aad(table: str, record_id: str) -> bytes:
    """Return associated data binding a wrapped data key to its table and record."""
    return _KEY_LABEL + _encoded_record(table, record_id)


def rewrap_key(
    provider: KeyProvider, table: str, record_id: str, key_version: int, wrapped_key: bytes
) -> tuple[int, bytes]:
    """Re-wrap a record's data key under the provider's active KEK (for rotation)."""
    try:
        return provider.rewrap(key_version, wrapped_key, key_aad(table, record_id))
    except (KeyRingError, DecryptionError) as exc:  # Our messages hold no key material.
        reason = str(exc)
    raise DecryptionError(f"cannot rewrap data key for {table} record {record_id}: {reason}")


class RecordCipher:
    """Seal and open the encrypted fields of one record under its data key."""

    def __init__(self, provider: KeyProvider, table: str, record_id: str, data_key: bytes) -> None:
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise ValueError(f"data key must be exactly {KEY_BYTES} bytes")
        # The associated data of this record's fields up to the field name: built (and the
        # names validated) once, not at every field sealed or opened.
        self._field_aad_prefix = _FIELD_LABEL + _encoded_record(table, record_id)
        self._provider = provider
        self.table = table
        self.record_id = record_id
        self._data_key = data_key
        self._aead = AESGCM(data_key)
        self._wrapped: tuple[int, bytes] | None = None

    def __repr__(self) -> str:
        return f"RecordCipher(table={self.table!r}, record_id={self.record_id!r})"

    @classmethod
    def new(cls, provider: KeyProvider, table: str, record_id: str) -> RecordCipher:
        """Create a cipher for a new record with a fresh random data key."""
        return cls(provider, table, record_id, os.urandom(KEY_BYTES))

    @classmethod
    def from_wrapped(
        cls, provider: KeyProvider, table: str, record_id: str, key_version: int, wrapped_key: bytes
    ) -> RecordCipher:
        """Unwrap a stored data key; raise DecryptionError if it fails for any reason."""
        wrapped_key = bytes(wrapped_key)  # DB drivers may hand back memoryview.
        try:
            data_key = provider.unwrap(key_version, wrapped_key, key_aad(table, record_id))
        except (KeyRingError, DecryptionError) as exc:
            reason = str(exc)
        else:
            cipher = cls(provider, table, record_id, data_key)
            cipher._wrapped = (key_version, wrapped_key)  # Already stored; do not re-wrap.
            return cipher
        raise DecryptionError(f"cannot unwrap data key for {table} record {record_id}: {reason}")

    @property
    def wrapped(self) -> tuple[int, bytes]:
        """Return (key_version, wrapped_key) to store with the record; wrapped once and cached."""
        if self._wrapped is None:
            self._wrapped = self._provider.wrap(self._data_key, key_aad(self.table, self.record_id))
        return self._wrapped

    def _field_aad(self, field: str) -> bytes:
        # Equal to field_aad(self.table, self.record_id, field).
        return self._field_aad_prefix + _encoded_name(field)

    def _where(self, field: str) -> str:
        return f"{self.table}.{field} for record {self.record_id}"

    def seal(self, field: str, plaintext: str | None) -> bytes | None:
        """Encrypt one field value; None stays None."""
        if plaintext is None:
            return None
        if not isinstance(plaintext, str):
            raise TypeError(f"cannot seal {self._where(field)}: plaintext must be str")
        aad = self._field_aad(field)
        try:
            raw = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raw = None  # The codec error quotes the offending character, so do not chain it.
        if raw is None:
            raise ValueError(f"cannot seal {self._where(field)}: text is not valid Unicode")
        nonce = os.urandom(NONCE_BYTES)
        return FORMAT_V1 + nonce + self._aead.encrypt(nonce, raw, aad)

    def open(self, field: str, sealed: bytes | None) -> str | None:
        """Decrypt one field value; None stays None, any failure raises DecryptionError."""
        if sealed is None:
            return None
        if isinstance(sealed, bytearray | memoryview):  # Some DB drivers return these.
            sealed = bytes(sealed)
        if not isinstance(sealed, bytes) or len(sealed) < _MIN_SEALED:
            raise DecryptionError(f"cannot decrypt {self._where(field)}: truncated or not bytes")
        if sealed[:1] != FORMAT_V1:
            raise DecryptionError(f"cannot decrypt {self._where(field)}: unknown format")
        aad = self._field_aad(field)
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, aad).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            pass  # Raise outside the handler: UnicodeDecodeError would carry plaintext bytes.
        raise DecryptionError(f"cannot decrypt {self._where(field)}: authentication failed")
