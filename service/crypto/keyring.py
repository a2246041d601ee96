"""Versioned key material, its on-disk format, and the key-wrapping provider interface.

Keyring JSON format (file or the ALERTSHARE_KEYRING_JSON environment variable)::

    {
      "format": 1,
      "active_version": 2,
      "keks": {"1": "<base64 32 bytes>", "2": "<base64 32 bytes>"},
      "index_root_key": "<base64 32 bytes>",
      "signing_key": "<base64 32-byte Ed25519 private key>",
      "development": false
    }

KEKs (key-encryption keys) only ever wrap per-record data keys; the index root key and the
audit signing key are independent so that rotating or leaking one does not affect the others.
A keyring file must not be readable by group or other (mode 0600 or stricter).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_FIELDS = {"format", "active_version", "keks", "index_root_key", "signing_key", "development"}


class CryptoError(Exception):
    """Base class for crypto errors; messages never contain key material or plaintext."""


class KeyRingError(CryptoError):
    """Keyring is invalid, unreadable, or an operation on it is not allowed."""


class UnknownKeyVersion(KeyRingError):
    """A KEK version is not present in the keyring."""


class DecryptionError(CryptoError):
    """Authenticated decryption failed (tampered, truncated, misplaced or unknown key)."""


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """Hold all long-term key material; immutable so rotation always yields a new ring."""

    keks: Mapping[int, bytes] = dataclasses.field(hash=False)
    active_version: int
    index_root_key: bytes
    signing_key: bytes
    development: bool = False

    def __post_init__(self) -> None:
        keks = dict(self.keks)
        for version, kek in keks.items():
            if type(version) is not int or version < 1:
                raise KeyRingError("KEK versions must be integers >= 1")
            _check_key(f"KEK version {version}", kek)
        if self.active_version not in keks:
            raise KeyRingError(f"active KEK version {self.active_version} is missing")
        _check_key("index_root_key", self.index_root_key)
        _check_key("signing_key", self.signing_key)
        if any(secrets.compare_digest(self.index_root_key, k) for k in keks.values()):
            raise KeyRingError("index_root_key must not equal any KEK")
        # A read-only view stops callers mutating a "frozen" ring behind our back.
        object.__setattr__(self, "keks", MappingProxyType(keks))

    def __repr__(self) -> str:
        return (
            f"KeyRing(active_version={self.active_version}, versions={sorted(self.keks)}, "
            f"development={self.development})"
        )

    def rotated(self) -> KeyRing:
        """Return a copy with a new random KEK at version max+1, made active."""
        version = max(self.keks) + 1
        keks = {**self.keks, version: secrets.token_bytes(KEY_BYTES)}
        return dataclasses.replace(self, keks=keks, active_version=version)

    def without_version(self, version: int) -> KeyRing:
        """Return a copy without KEK `version`; the caller must ensure no rows use it."""
        if version == self.active_version:
            raise KeyRingError(f"cannot remove active KEK version {version}")
        if version not in self.keks:
            raise UnknownKeyVersion(f"unknown KEK version {version}")
        keks = {v: k for v, k in self.keks.items() if v != version}
        return dataclasses.replace(self, keks=keks)


def _check_key(name: str, value: object) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_BYTES:
        raise KeyRingError(f"{name} must be exactly {KEY_BYTES} bytes")


def generate_keyring(development: bool = False) -> KeyRing:
    """Create a keyring with fresh random keys and KEK version 1 active."""
    signing = Ed25519PrivateKey.generate().private_bytes_raw()
    return KeyRing(
        keks={1: secrets.token_bytes(KEY_BYTES)},
        active_version=1,
        index_root_key=secrets.token_bytes(KEY_BYTES),
        signing_key=signing,
        development=development,
    )


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def keyring_to_json(keyring: KeyRing) -> str:
    """Serialise a keyring to the documented JSON format."""
    doc = {
        "format": FORMAT_VERSION,
        "active_version": keyring.active_version,
        "keks": {str(v): _b64encode(k) for v, k in sorted(keyring.keks.items())},
        "index_root_key": _b64encode(keyring.index_root_key),
        "signing_key": _b64encode(keyring.signing_key),
        "development": keyring.development,
    }
    return json.dumps(doc, indent=2) + "\n"


def _b64decode(name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise KeyRingError(f"keyring field {name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        pass
    raise KeyRingError(f"keyring field {name} is not valid base64")


def keyring_from_json(text: str) -> KeyRing:
    """Parse and validate keyring JSON; errors give a one-line reason without key material."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None  # Raised below, outside the handler, so the document is not chained.
    if not isinstance(doc, dict):
        raise KeyRingError("keyring is not a JSON object")
    if set(doc) != _FIELDS:
        raise KeyRingError(f"keyring fields must be exactly {sorted(_FIELDS)}")
    if type(doc["format"]) is not int or doc["format"] != FORMAT_VERSION:
        raise KeyRingError(f"unsupported keyring format (expected {FORMAT_VERSION})")
    active, keks_doc, dev = doc["active_version"], doc["keks"], doc["development"]
    if type(active) is not int or not isinstance(keks_doc, dict) or type(dev) is not bool:
        raise KeyRingError("keyring active_version, keks or development has the wrong type")
    keks: dict[int, bytes] = {}
    for name, value in keks_doc.items():
        if not (name.isascii() and name.isdigit() and len(name) < 10 and name[0] != "0"):
            raise KeyRingError("keyring KEK versions must be positive integers")
        keks[int(name)] = _b64decode(f"keks.{name}", value)
    return KeyRing(
        keks=keks,
        active_version=active,
        index_root_key=_b64decode("index_root_key", doc["index_root_key"]),
        signing_key=_b64decode("signing_key", doc["signing_key"]),
        development=dev,
    )


def load_keyring(path: str | os.PathLike[str]) -> KeyRing:
    """Load a keyring file, refusing files that group or other can access."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyRingError(f"cannot open keyring file {os.fspath(path)}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        # fstat the open descriptor so the checked file is the one we read.
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyRingError(f"keyring file {os.fspath(path)} is not a regular file")
        if st.st_mode & 0o077:
            mode = oct(stat.S_IMODE(st.st_mode))
            raise KeyRingError(f"keyring file {os.fspath(path)} has mode {mode}; must be 0600")
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    return keyring_from_json(text)


def save_keyring(keyring: KeyRing, path: str | os.PathLike[str]) -> None:
    """Write a keyring file atomically with mode 0600."""
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".keyring-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)  # mkstemp already uses 0600; be explicit anyway.
            fh.write(keyring_to_json(keyring))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # fsync the directory so the rename itself survives a crash.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@runtime_checkable
class KeyProvider(Protocol):
    """Wrap and unwrap data keys under versioned KEKs (local today, a KMS later)."""

    @property
    def active_version(self) -> int: ...

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[int, bytes]: ...

    def unwrap(self, version: int, wrapped: bytes, aad: bytes) -> bytes: ...

    def rewrap(self, version: int, wrapped: bytes, aad: bytes) -> tuple[int, bytes]: ...

    def versions(self) -> list[int]: ...


class LocalKeyProvider:
    """Wrap data keys with AES-256-GCM under KEKs from a local KeyRing."""

    def __init__(self, keyring: KeyRing) -> None:
        self._active = keyring.active_version
        # Build AESGCM objects once; they are stateless and safe to share across threads.
        self._ciphers = {v: AESGCM(k) for v, k in keyring.keks.items()}

    def __repr__(self) -> str:
        return f"LocalKeyProvider(active_version={self._active}, versions={self.versions()})"

    @property
    def active_version(self) -> int:
        """Return the KEK version used for new wraps."""
        return self._active

    def versions(self) -> list[int]:
        """Return the available KEK versions in ascending order."""
        return sorted(self._ciphers)

    def _cipher(self, version: int) -> AESGCM:
        try:
            return self._ciphers[version]
        except KeyError:
            raise UnknownKeyVersion(f"unknown KEK version {version}") from None

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[int, bytes]:
        """Wrap `data_key` under the active KEK; return (version, nonce || ciphertext+tag)."""
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise ValueError(f"data key must be exactly {KEY_BYTES} bytes")
        nonce = os.urandom(NONCE_BYTES)
        return self._active, nonce + self._cipher(self._active).encrypt(nonce, data_key, aad)

    def unwrap(self, version: int, wrapped: bytes, aad: bytes) -> bytes:
        """Unwrap a data key wrapped under KEK `version` with the same `aad`."""
        cipher = self._cipher(version)
        if len(wrapped) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError(f"wrapped data key (KEK version {version}) is truncated")
        try:
            return cipher.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            pass
        raise DecryptionError(f"cannot unwrap data key (KEK version {version}): bad tag")

    def rewrap(self, version: int, wrapped: bytes, aad: bytes) -> tuple[int, bytes]:
        """Re-wrap a data key under the active KEK, always with a fresh nonce."""
        return self.wrap(self.unwrap(version, wrapped, aad), aad)
