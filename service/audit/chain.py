"""Hash-chain audit entries and verify the chain.

Canonical form (normative: an auditor can re-implement exactly this in any language)
-------------------------------------------------------------------------------------
An entry is a JSON object with exactly the 14 keys of ``CHAINED_FIELD_TYPES`` (below, with
their types), no more, no fewer. This mapping is the one definition of an audit entry: the
stored model, the pending entry, the append statement, verification, exports and the auditors'
API are all derived from it.

``targets`` and ``returned`` map str -> array of str (either may be ``{}``).
``canonical_bytes`` serialises that object as follows:

* object keys sorted by Unicode code point, at every level (including inside targets/returned);
* no whitespace at all: ``,`` between members/elements, ``:`` between key and value;
* strings ASCII-only: ``"`` and ``\\`` become ``\\"`` and ``\\\\``; U+0008/09/0A/0C/0D become
  ``\\b \\t \\n \\f \\r``; every other character outside U+0020..U+007E becomes ``\\uXXXX``
  with lowercase hex (characters above U+FFFF as a UTF-16 surrogate pair); ``/`` is not escaped;
* integers in plain decimal (booleans and floats are rejected), ``null`` for None,
  arrays kept in the order given;
* the text encoded as UTF-8 (identical to ASCII here).

This equals Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=True).encode()``. Then ``hash = SHA-256(prev_hash || canonical_bytes)``, where
``prev_hash`` is the previous entry's raw 32-byte hash (``GENESIS_HASH``, 32 zero bytes, before
seq 1); it is not part of the JSON. Hashes are exchanged as lowercase hex.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from service.audit.checkpoint import Checkpoint

GENESIS_HASH: bytes = bytes(32)
# Each chained field and its JSON type; "ids" maps str -> array of str.
CHAINED_FIELD_TYPES: dict[str, str] = {
    "action": "str", "agency_id": "str|null", "client_id": "str|null",
    "kind": "str",  # "entry", "archive", or "summary" (a window of rate-limit refusals)
    "occurred_at": "str",  # UTC "YYYY-MM-DDTHH:MM:SS.ffffffZ"
    "outcome": "str", "practitioner": "str|null", "purpose": "str|null",
    "request_id": "str|null", "returned": "ids", "seq": "int", "source_address": "str|null",
    "status": "int", "targets": "ids",
}  # fmt: skip
# Sorted, so a row in this order is already in canonical key order (see _encode).
CHAINED_FIELDS: tuple[str, ...] = tuple(sorted(CHAINED_FIELD_TYPES))
# verify_chain's row shape: the CHAINED_FIELDS values in order, then prev_hash, then hash.
ROW_FIELDS: tuple[str, ...] = (*CHAINED_FIELDS, "prev_hash", "hash")
_WIDTH = len(ROW_FIELDS)
_SEQ, _PREV, _HASH = ROW_FIELDS.index("seq"), _WIDTH - 2, _WIDTH - 1
_TEMPLATE = "{" + ",".join(f'"{name}":%s' for name in CHAINED_FIELDS) + "}"
_esc = json.encoder.encode_basestring_ascii  # the C escaper json.dumps itself uses


class ChainedEntry(Protocol):
    """Structural type of a stored entry (e.g. an ORM model); hashes as bytes or hex."""

    @property
    def seq(self) -> int: ...
    @property
    def prev_hash(self) -> bytes | str: ...
    @property
    def hash(self) -> bytes | str: ...
    def chained_fields(self) -> Mapping[str, Any]: ...


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as UTC ISO 8601 with microseconds and ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_json(value: Any) -> bytes:
    """Serialise any JSON value with the canonical rules (reference implementation)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _ids(value: Any) -> str:
    # Hand-rolled for speed; tests pin it to canonical_json byte for byte.
    if value.__class__ is str:
        # Stored canonical text (as appended): hashed exactly as stored, so any change shows.
        return value
    if value.__class__ is not dict and not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping of id lists, got {type(value).__name__}")
    parts = []
    for key in sorted(value):
        ids = value[key]
        if ids.__class__ is not list and not isinstance(ids, tuple):
            raise TypeError(f"ids under {key!r} must be a list")  # a str would iterate chars
        parts.append(_esc(key) + ":[" + ",".join(map(_esc, ids)) + "]")
    return "{" + ",".join(parts) + "}"


def _nullable(value: Any) -> str:
    return "null" if value is None else _esc(value)


def _integer(value: Any) -> str:
    if value.__class__ is not int:  # bool would encode as true
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return str(value)


# One encoder per chained field, in CHAINED_FIELDS order, chosen by its declared type; _esc
# raises TypeError for a non-str, which validates too.
_ENCODERS = tuple(
    {"str": _esc, "str|null": _nullable, "int": _integer, "ids": _ids}[CHAINED_FIELD_TYPES[name]]
    for name in CHAINED_FIELDS
)


def _encode(r: Sequence[Any]) -> bytes:
    # r holds the CHAINED_FIELDS values in order (a verify row has prev_hash and hash after them).
    try:
        text = _TEMPLATE % tuple(
            [encode(value) for encode, value in zip(_ENCODERS, r, strict=False)]
        )
    except TypeError as exc:
        raise ValueError(f"malformed entry: {exc}") from exc
    return text.encode("ascii")


def _check_keys(fields: Mapping[str, Any]) -> None:
    if len(fields) != len(CHAINED_FIELDS) or not all(name in fields for name in CHAINED_FIELDS):
        missing = sorted(set(CHAINED_FIELDS) - set(fields))
        extra = sorted(map(str, set(fields) - set(CHAINED_FIELDS)))
        raise ValueError(f"chained fields wrong: missing {missing}, extra {extra}")


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """Serialise an entry's chained fields canonically; raise ValueError on bad keys or types."""
    _check_keys(fields)
    return _encode([fields[name] for name in CHAINED_FIELDS])


def link_hash(prev_hash: bytes, fields: Mapping[str, Any]) -> bytes:
    """Return SHA-256(prev_hash || canonical_bytes(fields))."""
    if len(prev_hash) != 32:
        raise ValueError("prev_hash must be 32 bytes")
    return hashlib.sha256(bytes(prev_hash) + canonical_bytes(fields)).digest()


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Outcome of verify_chain; head_* and checked cover the entries verified good."""

    ok: bool
    checked: int
    head_seq: int | None
    head_hash: str | None
    first_bad_seq: int | None = None
    problem: str | None = None  # altered|missing|out_of_order|truncated|checkpoint_mismatch
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return asdict(self)


def _digest(value: Any) -> bytes:
    # Normalise a stored hash; anything unusable becomes b"" so it can never match a digest.
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        return b""


def _as_row(entry: Any) -> Sequence[Any]:
    if hasattr(entry, "chained_fields"):
        fields = entry.chained_fields()
        _check_keys(fields)  # a model exposing the wrong set of fields is a bug, not tampering
        return (*(fields[name] for name in CHAINED_FIELDS), entry.prev_hash, entry.hash)
    if isinstance(entry, Mapping):  # dict rows may carry other columns (id, ...): ignored
        return tuple(entry[name] for name in ROW_FIELDS)
    row = tuple(entry)
    if len(row) != _WIDTH:
        raise ValueError(f"entry rows need {_WIDTH} values ({', '.join(ROW_FIELDS)})")
    return row


def verify_chain(
    entries: Iterable[ChainedEntry | Sequence[Any] | Mapping[str, Any]],
    *,
    start_prev_hash: bytes = GENESIS_HASH,
    start_seq: int = 1,
    checkpoint: Checkpoint | None = None,
) -> VerificationReport:
    """Verify entries (ascending stored order) and report the first problem found."""
    prev = _digest(start_prev_hash)
    if len(prev) != 32:
        raise ValueError("start_prev_hash must be 32 bytes")
    cp_seq, cp_hash = (
        (-1, b"") if checkpoint is None else (checkpoint.seq, _digest(checkpoint.hash))
    )
    if checkpoint is not None and cp_seq < start_seq:
        if cp_seq < start_seq - 1:
            raise ValueError("checkpoint precedes the verified window; cannot check it")
        if cp_hash != prev:
            detail = "start_prev_hash differs from the checkpoint's hash"
            return _report(start_seq, start_seq, prev, cp_seq, "checkpoint_mismatch", detail)
    expected = start_seq
    sha256 = hashlib.sha256  # locals: this loop runs a million times
    rest = iter(entries)
    for entry in rest:
        row = entry if entry.__class__ is tuple and len(entry) == _WIDTH else _as_row(entry)
        seq = row[_SEQ]
        if seq != expected:
            return _seq_problem(start_seq, expected, prev, seq, rest)
        stored_prev, stored = row[_PREV], row[_HASH]
        if stored_prev.__class__ is not bytes:
            stored_prev = _digest(stored_prev)
        if stored.__class__ is not bytes:
            stored = _digest(stored)
        if stored_prev != prev:
            detail = f"entry {seq}'s prev_hash is not the previous entry's hash"
            return _report(start_seq, expected, prev, seq, "altered", detail)
        try:
            digest = sha256(prev + _encode(row)).digest()
        except ValueError as exc:
            detail = f"entry {seq} cannot be canonicalised ({exc})"
            return _report(start_seq, expected, prev, seq, "altered", detail)
        if digest != stored:
            detail = f"entry {seq}'s stored hash does not match its content"
            return _report(start_seq, expected, prev, seq, "altered", detail)
        if seq == cp_seq and digest != cp_hash:
            detail = f"entry {seq} differs from the checkpoint (history rewritten)"
            return _report(start_seq, expected, prev, seq, "checkpoint_mismatch", detail)
        prev = digest
        expected += 1
    if checkpoint is not None and cp_seq >= expected:
        detail = f"checkpoint covers seq {cp_seq} but the log ends at seq {expected - 1}"
        return _report(start_seq, expected, prev, cp_seq, "truncated", detail)
    return _report(start_seq, expected, prev)


def _report(start_seq: int, expected: int, prev: bytes, *failure: Any) -> VerificationReport:
    # Entries start_seq..expected-1 verified good and prev is the last one's hash;
    # failure is (first_bad_seq, problem, detail) or empty.
    head = (expected - 1, prev.hex()) if expected > start_seq else (None, None)
    return VerificationReport(not failure, expected - start_seq, *head, *failure)


def _seq_problem(
    start_seq: int, expected: int, prev: bytes, found: Any, rest: Iterator[Any]
) -> VerificationReport:
    # A forward jump is "missing" unless a skipped seq turns up later (reordering); telling
    # them apart needs only a scan of the remaining seqs, no hashing.
    if found.__class__ is not int:
        detail = f"entry at seq {expected} has a non-integer seq {found!r}"
        return _report(start_seq, expected, prev, expected, "altered", detail)
    where = f"found seq {found} where seq {expected} was expected"
    if found > expected:
        for entry in rest:
            row = entry if entry.__class__ is tuple and len(entry) == _WIDTH else _as_row(entry)
            if row[_SEQ].__class__ is int and expected <= row[_SEQ] < found:
                where += f"; seq {row[_SEQ]} is stored later"
                break
        else:
            detail = f"seq {expected} is missing: the next stored entry is seq {found}"
            return _report(start_seq, expected, prev, expected, "missing", detail)
    return _report(start_seq, expected, prev, found, "out_of_order", where)
