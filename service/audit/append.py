"""Appending to the audit log: one entry at a time, serialised on the chain-head row."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update

from service import metrics
from service.audit.chain import canonical_bytes, canonical_json, format_timestamp, link_hash
from service.audit.entry import OUTCOMES, RECORDED_FIELDS, PendingEntry
from service.database import db, utcnow
from service.models.audit import AuditEntry, AuditHead, AuditRef

HEAD_ID = 1


def append(pending: PendingEntry, now: datetime | None = None) -> int:
    """Append ``pending`` to the chain in the current transaction; return its seq.

    Appends are serialised on the chain-head row: whoever updates it holds it (a row lock on
    PostgreSQL, the write lock on SQLite) until commit, so the chain cannot fork. Everything
    that can be prepared is prepared before taking it; on PostgreSQL the head update, the hash,
    the entry and its references are then a single statement, so the head is held for one round
    trip and the commit.
    """
    entry = _Prepared.of(pending, now or utcnow())
    with metrics.AUDIT_APPEND_SECONDS.time():
        return _append(entry)


def _append(entry: _Prepared) -> int:
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        return _append_sqlite(entry)
    seq = connection.execute(_APPEND_PG_WITH_REFS if entry.refs else _APPEND_PG,
                             entry.pg_parameters()).scalar_one()  # fmt: skip
    return int(seq)


def append_all(pending: Sequence[PendingEntry], now: datetime | None = None) -> list[int]:
    """Append several entries, in order, in the current transaction; return their seqs.

    For a batch (the delivery worker records several attempts at once). On PostgreSQL the
    first takes the head; the rest follow in one pipelined round trip, however many there are,
    so the head is held for two round trips and the commit, not one round trip per entry.
    Holding the head, this transaction's entries get consecutive seqs.
    """
    at = now or utcnow()
    entries = [_Prepared.of(entry, at) for entry in pending]
    connection = db.session.connection()
    if connection.dialect.name != "postgresql" or len(entries) <= 1:
        return [append(entry, at) for entry in pending]
    with metrics.AUDIT_APPEND_SECONDS.time():  # the batch's one turn at the head
        first = _append(entries[0])
        connection.execute(_APPEND_PG_WITH_REFS, [entry.pg_parameters() for entry in entries[1:]])
    return list(range(first, first + len(entries)))


def _append_sqlite(entry: _Prepared) -> int:
    connection = db.session.connection()
    seq, prev_hash = connection.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one()
    digest = link_hash(bytes(prev_hash), {**entry.chained, "seq": seq})
    connection.execute(
        insert(AuditEntry),
        {**entry.columns, "seq": seq, "prev_hash": bytes(prev_hash), "hash": digest},
    )
    if entry.refs:
        connection.execute(insert(AuditRef), [{**ref, "entry_seq": seq} for ref in entry.refs])
    connection.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(prev_hash=bytes(prev_hash), hash=digest)
    )
    return int(seq)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An entry ready to chain: its chained fields, stored columns and references."""

    chained: dict[str, Any]
    columns: dict[str, Any]
    refs: list[dict[str, str]]

    @classmethod
    def of(cls, pending: PendingEntry, now: datetime) -> _Prepared:
        if pending.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {pending.outcome!r}")
        chained = {
            **pending.recorded(),
            "status": int(pending.status),
            "occurred_at": format_timestamp(now),
        }
        # The stored columns: the chained fields, with the id maps as their canonical JSON text.
        columns = {
            **chained,
            "targets": canonical_json(pending.targets).decode(),
            "returned": canonical_json(pending.returned).decode(),
        }
        refs = [
            {"ref_type": ref_type, "ref_id": ref_id, "relation": relation}
            for relation, by_type in (("target", pending.targets), ("returned", pending.returned))
            for ref_type, ids in by_type.items()
            for ref_id in ids
        ]
        return cls(chained, columns, refs)

    def pg_parameters(self) -> dict[str, Any]:
        """The parameters of the one-statement PostgreSQL append (see ``_pg_append``)."""
        prefix, suffix = _split_at_seq(canonical_bytes({**self.chained, "seq": _SEQ_MARKER}))
        return {**self.columns, "prefix": prefix, "suffix": suffix,
                "refs": json.dumps(self.refs), "head_id": HEAD_ID}  # fmt: skip


def current_head_seq() -> int:
    """Return the seq of the newest entry appended."""
    return int(db.session.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0)


# The canonical form sorts keys, so seq sits at one place in it; the database fills it in.
_SEQ_MARKER = 2**63 - 1


def _split_at_seq(canonical: bytes) -> tuple[str, str]:
    prefix, suffix = canonical.decode("ascii").split(f'"seq":{_SEQ_MARKER},')
    return prefix + '"seq":', "," + suffix


def _pg_append(with_refs: bool) -> Any:
    # One statement on PostgreSQL: take the head (locking it), hash the entry onto it with
    # SHA-256(prev_hash || canonical bytes), and insert the entry and its references.
    stored = (*RECORDED_FIELDS, "occurred_at")  # every chained column but seq
    statement = f"""
    WITH head AS (
        UPDATE audit_head
        SET seq = seq + 1, prev_hash = hash,
            hash = sha256(hash || convert_to(:prefix || (seq + 1)::text || :suffix, 'UTF8'))
        WHERE id = :head_id
        RETURNING seq, prev_hash, hash
    ), entry AS (
        INSERT INTO audit_entry (seq, {", ".join(stored)}, prev_hash, hash)
        SELECT seq, {", ".join(":" + name for name in stored)}, prev_hash, hash
        FROM head
        RETURNING seq
    )"""
    if with_refs:
        statement += """, refs AS (
        INSERT INTO audit_ref (entry_seq, ref_type, ref_id, relation)
        SELECT entry.seq, r->>'ref_type', r->>'ref_id', r->>'relation'
        FROM entry, jsonb_array_elements(CAST(:refs AS jsonb)) AS r
    )"""
    return text(statement + " SELECT seq FROM entry")


_APPEND_PG = _pg_append(with_refs=False)
_APPEND_PG_WITH_REFS = _pg_append(with_refs=True)
