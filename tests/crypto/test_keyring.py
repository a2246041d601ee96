import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.crypto import (
    DecryptionError,
    KeyProvider,
    KeyRing,
    KeyRingError,
    LocalKeyProvider,
    UnknownKeyVersion,
    generate_keyring,
    keyring_from_json,
    keyring_to_json,
    load_keyring,
    save_keyring,
)

AAD = b"test-aad"


def _all_key_material(ring: KeyRing) -> list[bytes]:
    return [*ring.keks.values(), ring.index_root_key, ring.signing_key]


def _assert_no_key_material(text: str, ring: KeyRing) -> None:
    for key in _all_key_material(ring):
        assert base64.b64encode(key).decode() not in text
        assert key.hex() not in text
        assert repr(key) not in text


def test_generate_keyring_has_independent_32_byte_keys() -> None:
    ring = generate_keyring()
    assert ring.active_version == 1
    assert list(ring.keks) == [1]
    assert len(set(_all_key_material(ring))) == 3
    assert all(len(k) == 32 for k in _all_key_material(ring))
    assert ring.development is False
    assert generate_keyring(development=True).development is True


def test_signing_key_is_usable_ed25519() -> None:
    ring = generate_keyring()
    key = Ed25519PrivateKey.from_private_bytes(ring.signing_key)
    key.public_key().verify(key.sign(b"checkpoint"), b"checkpoint")


def test_rotated_adds_new_active_version() -> None:
    ring = generate_keyring()
    rotated = ring.rotated().rotated()
    assert rotated.active_version == 3
    assert sorted(rotated.keks) == [1, 2, 3]
    assert rotated.keks[1] == ring.keks[1]
    assert rotated.keks[3] != rotated.keks[2]
    assert ring.active_version == 1  # The original ring is unchanged.


def test_without_version_refuses_active_version() -> None:
    ring = generate_keyring().rotated()
    with pytest.raises(KeyRingError, match="active"):
        ring.without_version(2)
    assert sorted(ring.without_version(1).keks) == [2]
    with pytest.raises(UnknownKeyVersion):
        ring.without_version(7)


def test_keks_are_read_only() -> None:
    ring = generate_keyring()
    with pytest.raises(TypeError):
        ring.keks[2] = os.urandom(32)  # type: ignore[index]


@pytest.mark.parametrize(
    "changes",
    [
        {"active_version": 2},
        {"keks": {1: b"short"}},
        {"keks": {0: os.urandom(32)}, "active_version": 0},
        {"index_root_key": os.urandom(31)},
        {"signing_key": os.urandom(33)},
    ],
)
def test_invalid_keyring_refused(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "keks": {1: os.urandom(32)},
        "active_version": 1,
        "index_root_key": os.urandom(32),
        "signing_key": os.urandom(32),
    }
    with pytest.raises(KeyRingError):
        KeyRing(**{**fields, **changes})  # type: ignore[arg-type]


def test_index_root_key_must_differ_from_keks() -> None:
    key = os.urandom(32)
    with pytest.raises(KeyRingError):
        KeyRing(keks={1: key}, active_version=1, index_root_key=key, signing_key=os.urandom(32))


def test_repr_has_no_key_bytes() -> None:
    ring = generate_keyring().rotated()
    for text in (repr(ring), str(ring), repr(LocalKeyProvider(ring))):
        _assert_no_key_material(text, ring)
    assert "active_version=2" in repr(ring)


def test_json_round_trip_and_documented_format() -> None:
    ring = generate_keyring(development=True).rotated()
    text = keyring_to_json(ring)
    doc = json.loads(text)
    assert doc["format"] == 1
    assert doc["active_version"] == 2
    assert set(doc["keks"]) == {"1", "2"}
    assert keyring_from_json(text) == ring


def _doc(ring: KeyRing) -> dict[str, object]:
    result: dict[str, object] = json.loads(keyring_to_json(ring))
    return result


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format=2),
        lambda d: d.update(active_version=9),
        lambda d: d.update(active_version="1"),
        lambda d: d.pop("signing_key"),
        lambda d: d.update(extra=1),
        lambda d: d.update(development="no"),
        lambda d: d["keks"].update({"1": base64.b64encode(b"x" * 16).decode()}),
        lambda d: d["keks"].update({"01": d["keks"]["1"]}),
        lambda d: d["keks"].update({"1": "not base64!"}),
        lambda d: d.update(index_root_key=42),
    ],
)
def test_malformed_json_refused_without_leaking_keys(mutate: object) -> None:
    ring = generate_keyring()
    doc = _doc(ring)
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(KeyRingError) as info:
        keyring_from_json(json.dumps(doc))
    message = str(info.value)
    assert "\n" not in message
    _assert_no_key_material(message, ring)


@pytest.mark.parametrize("text", ["", "not json", "[]", "null", '{"format": 1'])
def test_non_object_json_refused(text: str) -> None:
    with pytest.raises(KeyRingError):
        keyring_from_json(text)


def test_save_and_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    ring = generate_keyring().rotated()
    path = tmp_path / "keyring.json"
    save_keyring(ring, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(path) == ring
    assert [p.name for p in tmp_path.iterdir()] == ["keyring.json"]  # No temp files left.


def test_save_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(generate_keyring(), path)
    newer = generate_keyring()
    save_keyring(newer, path)
    assert load_keyring(path) == newer


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    ring = generate_keyring()
    path = tmp_path / "keyring.json"
    save_keyring(ring, path)
    path.chmod(mode)
    with pytest.raises(KeyRingError, match="mode") as info:
        load_keyring(path)
    _assert_no_key_material(str(info.value), ring)


def test_load_accepts_0400(tmp_path: Path) -> None:
    ring = generate_keyring()
    path = tmp_path / "keyring.json"
    save_keyring(ring, path)
    path.chmod(0o400)
    assert load_keyring(path) == ring


def test_load_missing_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="cannot open"):
        load_keyring(tmp_path / "missing.json")
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe garbage")
    path.chmod(0o600)
    with pytest.raises(KeyRingError):
        load_keyring(path)


def test_local_provider_satisfies_protocol() -> None:
    assert isinstance(LocalKeyProvider(generate_keyring()), KeyProvider)


def test_wrap_unwrap_round_trip() -> None:
    provider = LocalKeyProvider(generate_keyring())
    data_key = os.urandom(32)
    version, wrapped = provider.wrap(data_key, AAD)
    assert version == 1
    assert len(wrapped) == 12 + 32 + 16
    assert data_key not in wrapped
    assert provider.unwrap(version, wrapped, AAD) == data_key
    assert provider.wrap(data_key, AAD)[1] != wrapped  # Fresh nonce every time.


@pytest.mark.parametrize("position", [0, 11, 12, 43, 59])
def test_unwrap_detects_tampering(position: int) -> None:
    provider = LocalKeyProvider(generate_keyring())
    version, wrapped = provider.wrap(os.urandom(32), AAD)
    tampered = bytearray(wrapped)
    tampered[position] ^= 0x01
    with pytest.raises(DecryptionError):
        provider.unwrap(version, bytes(tampered), AAD)


def test_unwrap_wrong_aad_truncated_unknown_version() -> None:
    provider = LocalKeyProvider(generate_keyring())
    version, wrapped = provider.wrap(os.urandom(32), AAD)
    with pytest.raises(DecryptionError):
        provider.unwrap(version, wrapped, b"other")
    with pytest.raises(DecryptionError):
        provider.unwrap(version, wrapped[:27], AAD)
    with pytest.raises(UnknownKeyVersion):
        provider.unwrap(2, wrapped, AAD)


def test_wrap_rejects_wrong_size_data_key() -> None:
    with pytest.raises(ValueError):
        LocalKeyProvider(generate_keyring()).wrap(b"short", AAD)


def test_rewrap_moves_to_active_version() -> None:
    ring = generate_keyring()
    data_key = os.urandom(32)
    version, wrapped = LocalKeyProvider(ring).wrap(data_key, AAD)
    rotated = LocalKeyProvider(ring.rotated())
    assert rotated.versions() == [1, 2]
    new_version, rewrapped = rotated.rewrap(version, wrapped, AAD)
    assert new_version == rotated.active_version == 2
    assert rotated.unwrap(2, rewrapped, AAD) == data_key
    with pytest.raises(DecryptionError):
        rotated.unwrap(1, rewrapped, AAD)


def test_removed_version_can_no_longer_unwrap() -> None:
    ring = generate_keyring()
    version, wrapped = LocalKeyProvider(ring).wrap(os.urandom(32), AAD)
    pruned = LocalKeyProvider(ring.rotated().without_version(1))
    with pytest.raises(UnknownKeyVersion):
        pruned.unwrap(version, wrapped, AAD)
