"""Blind indexes: keyed hashes of normalised identifiers for equality search on encrypted data.

index = HMAC-SHA256(purpose_key, length-prefixed UTF-8 parts)[:16], where purpose_key =
HKDF-SHA256(index_root_key, info=b"alertshare/blind-index/v1/" + purpose). A separate key per
purpose means equal inputs in different columns give unrelated indexes, so rows cannot be
joined across purposes.

Truncating to 128 bits keeps accidental collisions negligible (about 2**-64 even at billions of
rows, far beyond millions) while storing no more of the HMAC than equality search needs.
Blind indexes still leak equality: anyone with the table sees which rows share a value, and
with the index key could confirm guesses, so the root key must be protected like a KEK.
"""

from __future__ import annotations

import struct
from datetime import date

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .normalise import (
    normalise_address_line,
    normalise_date,
    normalise_nhs_number,
    normalise_postcode,
    normalise_text,
    normalise_uprn,
)

UPRN = "household.uprn"
POSTCODE_ADDRESS = "household.postcode_line1"
PERSON_NAME_DOB = "person.family_name_dob"
NHS_NUMBER = "person.nhs_number"
# Purpose -> number of parts, so a call with the wrong shape fails instead of silently mismatching.
PURPOSES: dict[str, int] = {UPRN: 1, POSTCODE_ADDRESS: 2, PERSON_NAME_DOB: 2, NHS_NUMBER: 1}
INDEX_BYTES = 16
_INFO_PREFIX = b"alertshare/blind-index/v1/"


class BlindIndexer:
    """Compute blind indexes from a 32-byte root key, deriving one key per purpose."""

    def __init__(self, root_key: bytes) -> None:
        if not isinstance(root_key, bytes) or len(root_key) != 32:
            raise ValueError("blind index root key must be exactly 32 bytes")
        self._root_key = root_key
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return "BlindIndexer(<root key hidden>)"

    def _purpose_key(self, purpose: str) -> bytes:
        key = self._keys.get(purpose)
        if key is None:
            hkdf = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=_INFO_PREFIX + purpose.encode("utf-8"),
            )
            # HKDF is deterministic, so a racing duplicate derivation stores the same bytes.
            key = self._keys[purpose] = hkdf.derive(self._root_key)
        return key

    def compute(self, purpose: str, *normalised_parts: str) -> bytes:
        """Return the 16-byte blind index of already-normalised parts for `purpose`."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown blind index purpose {purpose!r}")
        if len(normalised_parts) != PURPOSES[purpose]:
            raise ValueError(f"purpose {purpose!r} takes {PURPOSES[purpose]} part(s)")
        mac = hmac.HMAC(self._purpose_key(purpose), hashes.SHA256())
        for part in normalised_parts:
            if not isinstance(part, str) or not part:
                # An empty part would make every blank value match every other.
                raise ValueError("blind index parts must be non-empty strings")
            raw = part.encode("utf-8")
            mac.update(struct.pack(">I", len(raw)) + raw)  # Length prefix keeps joins unambiguous.
        return mac.finalize()[:INDEX_BYTES]

    def uprn(self, value: str | int) -> bytes:
        """Return the blind index of a household UPRN."""
        return self.compute(UPRN, normalise_uprn(value))

    def postcode_address(self, postcode: str, line1: str) -> bytes:
        """Return the blind index of a household postcode plus first address line."""
        return self.compute(
            POSTCODE_ADDRESS, normalise_postcode(postcode), normalise_address_line(line1)
        )

    def person(self, family_name: str, dob: date | str) -> bytes:
        """Return the blind index of a person's family name plus date of birth."""
        return self.compute(PERSON_NAME_DOB, normalise_text(family_name), normalise_date(dob))

    def nhs_number(self, value: str) -> bytes:
        """Return the blind index of a person's NHS number."""
        return self.compute(NHS_NUMBER, normalise_nhs_number(value))
