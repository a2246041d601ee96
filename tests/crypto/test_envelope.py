import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from service.crypto import (
    DecryptionError,
    LocalKeyProvider,
    RecordCipher,
    field_aad,
    generate_keyring,
    key_aad,
    rewrap_key,
)

TABLE = "person"
RECORD = "3f0c7a4e-0000-4000-8000-000000000001"
SECRET = "Jane O'Brien, 12 Rose Lane"


@pytest.fixture
def provider() -> LocalKeyProvider:
    return LocalKeyProvider(generate_keyring())


def _flip(blob: bytes, position: int) -> bytes:
    out = bytearray(blob)
    out[position] ^= 0x01
    return bytes(out)


def _reopen(provider: LocalKeyProvider, cipher: RecordCipher, record: str = RECORD) -> RecordCipher:
    version, wrapped = cipher.wrapped
    return RecordCipher.from_wrapped(provider, TABLE, record, version, wrapped)


def test_seal_open_round_trip(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    sealed = cipher.seal("given_name", SECRET)
    assert sealed is not None
    assert sealed[0] == 0x01
    assert len(sealed) == 1 + 12 + len(SECRET.encode()) + 16
    assert SECRET.encode() not in sealed
    assert _reopen(provider, cipher).open("given_name", sealed) == SECRET


def test_none_stays_none_and_empty_string_round_trips(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    assert cipher.seal("notes", None) is None
    assert cipher.open("notes", None) is None
    assert cipher.open("notes", cipher.seal("notes", "")) == ""


def test_fresh_nonce_and_data_key_each_time(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    assert cipher.seal("f", SECRET) != cipher.seal("f", SECRET)
    other = RecordCipher.new(provider, TABLE, RECORD)
    assert cipher.wrapped[1] != other.wrapped[1]


def test_wrapped_is_cached(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    assert cipher.wrapped is cipher.wrapped
    reopened = _reopen(provider, cipher)
    assert reopened.wrapped == cipher.wrapped  # Loaded keys are not re-wrapped.


def test_accepts_memoryview_from_db_driver(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    sealed = cipher.seal("f", SECRET)
    assert sealed is not None
    assert cipher.open("f", memoryview(sealed)) == SECRET  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("position", "part"), [(1, "nonce"), (12, "nonce"), (13, "ct"), (-1, "tag")]
)
def test_flipped_byte_in_sealed_field_fails(
    provider: LocalKeyProvider, position: int, part: str
) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    sealed = cipher.seal("f", SECRET)
    assert sealed is not None
    with pytest.raises(DecryptionError):
        cipher.open("f", _flip(sealed, position))


def test_wrong_format_byte_and_truncation_fail(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    sealed = cipher.seal("f", SECRET)
    assert sealed is not None
    for bad in (b"\x02" + sealed[1:], sealed[:28], sealed[:-1], b"", b"\x01"):
        with pytest.raises(DecryptionError):
            cipher.open("f", bad)


def test_sealed_field_moved_to_another_field_fails(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    sealed = cipher.seal("given_name", SECRET)
    with pytest.raises(DecryptionError):
        cipher.open("family_name", sealed)


def test_sealed_field_moved_to_another_record_fails(provider: LocalKeyProvider) -> None:
    # Even with the same data key, a different record id changes the associated data.
    data_key = os.urandom(32)
    original = RecordCipher(provider, TABLE, RECORD, data_key)
    elsewhere = RecordCipher(provider, TABLE, "other-record", data_key)
    other_table = RecordCipher(provider, "household", RECORD, data_key)
    sealed = original.seal("f", SECRET)
    for cipher in (elsewhere, other_table):
        with pytest.raises(DecryptionError):
            cipher.open("f", sealed)


def test_flipped_byte_in_wrapped_key_fails(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    version, wrapped = cipher.wrapped
    for position in (0, 12, len(wrapped) - 1):
        with pytest.raises(DecryptionError, match=RECORD):
            RecordCipher.from_wrapped(provider, TABLE, RECORD, version, _flip(wrapped, position))


def test_wrapped_key_moved_to_another_record_fails(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    with pytest.raises(DecryptionError, match="other-record"):
        _reopen(provider, cipher, record="other-record")


def test_unknown_key_version_raises_decryption_error(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    _, wrapped = cipher.wrapped
    with pytest.raises(DecryptionError, match="unknown KEK version 5"):
        RecordCipher.from_wrapped(provider, TABLE, RECORD, 5, wrapped)


def test_rotation_rewrap_keeps_data_readable() -> None:
    ring = generate_keyring()
    old = LocalKeyProvider(ring)
    cipher = RecordCipher.new(old, TABLE, RECORD)
    version, wrapped = cipher.wrapped
    sealed = cipher.seal("f", SECRET)
    assert version == 1

    new = LocalKeyProvider(ring.rotated())
    new_version, new_wrapped = rewrap_key(new, TABLE, RECORD, version, wrapped)
    assert new_version == 2
    reopened = RecordCipher.from_wrapped(new, TABLE, RECORD, new_version, new_wrapped)
    assert reopened.open("f", sealed) == SECRET
    assert RecordCipher.new(new, TABLE, "r2").wrapped[0] == 2


def test_rewrap_key_failures_are_decryption_errors(provider: LocalKeyProvider) -> None:
    version, wrapped = RecordCipher.new(provider, TABLE, RECORD).wrapped
    with pytest.raises(DecryptionError):
        rewrap_key(provider, TABLE, "other-record", version, wrapped)
    with pytest.raises(DecryptionError):
        rewrap_key(provider, TABLE, RECORD, 9, wrapped)


def test_error_messages_name_location_but_not_secrets(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    sealed = cipher.seal("given_name", SECRET)
    assert sealed is not None
    with pytest.raises(DecryptionError) as info:
        cipher.open("given_name", _flip(sealed, 20))
    message = str(info.value)
    assert TABLE in message and RECORD in message and "given_name" in message
    assert SECRET not in message
    for blob in (sealed, cipher.wrapped[1], cipher._data_key):
        assert blob.hex() not in message and repr(blob) not in message
    assert info.value.__cause__ is None


def test_repr_has_no_key_bytes(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    assert cipher._data_key.hex() not in repr(cipher)
    assert repr(cipher._data_key) not in repr(cipher)


def test_unencodable_text_error_does_not_quote_plaintext(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    with pytest.raises(ValueError) as info:
        cipher.seal("f", "secret\ud800")
    assert "secret" not in str(info.value) and "ud800" not in str(info.value)


def test_invalid_construction(provider: LocalKeyProvider) -> None:
    with pytest.raises(ValueError):
        RecordCipher(provider, TABLE, RECORD, b"short")
    with pytest.raises(ValueError):
        RecordCipher.new(provider, TABLE, "")
    with pytest.raises(TypeError):
        RecordCipher.new(provider, TABLE, RECORD).seal("f", b"bytes")  # type: ignore[arg-type]


def test_aad_encoding_is_unambiguous() -> None:
    assert field_aad("a", "b|c", "d") != field_aad("a|b", "c", "d")
    assert field_aad("ab", "c", "d") != field_aad("a", "bc", "d")
    assert not field_aad("t", "r", "f").startswith(key_aad("t", "r"))
    assert key_aad("person", RECORD) != key_aad("household", RECORD)


def test_aad_bytes_are_the_stored_format() -> None:
    # Every stored ciphertext was sealed under these bytes: they must never change.
    assert field_aad("person", "r1", "given_name") == (
        b"alertshare/v1/field\x00\x00\x00\x06person\x00\x00\x00\x02r1\x00\x00\x00\x0agiven_name"
    )
    assert (
        key_aad("person", "r1") == b"alertshare/v1/data-key\x00\x00\x00\x06person\x00\x00\x00\x02r1"
    )


def test_sealed_field_opens_under_field_aad(provider: LocalKeyProvider) -> None:
    # The cipher builds each field's associated data from a per-record prefix: it must be
    # exactly field_aad's, for every field name, however often the name was used before.
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    aead = AESGCM(provider.unwrap(*cipher.wrapped, key_aad(TABLE, RECORD)))
    for field in ("given_name", "family_name", "given_name", "é-field"):
        sealed = cipher.seal(field, SECRET)
        assert sealed is not None
        opened = aead.decrypt(sealed[1:13], sealed[13:], field_aad(TABLE, RECORD, field))
        assert opened.decode() == SECRET


def test_empty_field_name_is_refused(provider: LocalKeyProvider) -> None:
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    for _ in range(2):  # refused every time, not only before a cache holds the name
        with pytest.raises(ValueError):
            cipher.seal("", SECRET)
        with pytest.raises(ValueError):
            cipher.open("", b"\x01" + bytes(28))


@settings(max_examples=200, deadline=None)
@given(text=st.text(), field=st.text(min_size=1, max_size=20))
def test_property_seal_open_round_trip(text: str, field: str) -> None:
    provider = LocalKeyProvider(generate_keyring())
    cipher = RecordCipher.new(provider, TABLE, RECORD)
    sealed = cipher.seal(field, text)
    assert _reopen(provider, cipher).open(field, sealed) == text
