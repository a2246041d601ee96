"""Field encryption, key management and blind indexes for alertshare (no Flask imports)."""

from .blind_index import (
    NHS_NUMBER,
    PERSON_NAME_DOB,
    POSTCODE_ADDRESS,
    PURPOSES,
    UPRN,
    BlindIndexer,
)
from .envelope import RecordCipher, field_aad, key_aad, rewrap_key
from .keyring import (
    CryptoError,
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

__all__ = [
    "NHS_NUMBER",
    "PERSON_NAME_DOB",
    "POSTCODE_ADDRESS",
    "PURPOSES",
    "UPRN",
    "BlindIndexer",
    "CryptoError",
    "DecryptionError",
    "KeyProvider",
    "KeyRing",
    "KeyRingError",
    "LocalKeyProvider",
    "RecordCipher",
    "UnknownKeyVersion",
    "field_aad",
    "generate_keyring",
    "key_aad",
    "keyring_from_json",
    "keyring_to_json",
    "load_keyring",
    "rewrap_key",
    "save_keyring",
]
