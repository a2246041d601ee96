"""Appending to the audit log and verifying it: plain functions over the database session."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from service.audit.chain import (
    VerificationReport,
    canonical_json,
    format_timestamp,
    link_hash,
    verify_chain,
)
from service.audit.checkpoint import (
    Checkpoint,
    public_key_from_private,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from service.database import db, utcnow
from service.models.audit import AuditCheckpoint, AuditEntry, AuditHead, AuditRef

OUTCOMES = ("allowed", "denied", "failed")
HEAD_ID = 1


@dataclass
class PendingEntry:
    """What one request did, gathered while it runs and appended when it ends."""

    action: str
    outcome: str = "allowed"
    status: int = 200
    agency_id: str | None = None
    client_id: str | None = None
    practitioner: str | None = None
    purpose: str | None = None
    request_id: str | None = None
    source_address: str | None = None
    kind: str = "entry"
    targets: dict[str, list[str]] = field(default_factory=dict)
    returned: dict[str, list[str]] = field(default_factory=dict)

    def target(self, ref_type: str, *ids: str) -> None:
        """Name records the request acted on (by id, never by content)."""
        known = self.targets.setdefault(ref_type, [])
        known.extend(i for i in ids if i not in known)

    def returning(self, ref_type: str, ids: list[str]) -> None:
        """Name every record the response returns."""
        known = self.returned.setdefault(ref_type, [])
        known.extend(i for i in ids if i not in known)


def _chained(pending: PendingEntry, seq: int, occurred_at: str) -> dict[str, Any]:
    return {
        "action": pending.action, "agency_id": pending.agency_id,
        "client_id": pending.client_id, "kind": pending.kind, "occurred_at": occurred_at,
        "outcome": pending.outcome, "practitioner": pending.practitioner,
        "purpose": pending.purpose, "request_id": pending.request_id,
        "returned": pending.returned, "seq": seq, "source_address": pending.source_address,
        "status": int(pending.status), "targets": pending.targets,
    }  # fmt: skip


def append(pending: PendingEntry, now: datetime | None = None) -> int:
    """Append ``pending`` to the chain in the current transaction; return its seq.

    The head row is updated first: that write locks it (a row lock on PostgreSQL, the write
    lock on SQLite) until commit, so concurrent appends queue and the chain cannot fork.
    """
    if pending.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {pending.outcome!r}")
    seq, prev_hash = db.session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one()
    fields = _chained(pending, seq, format_timestamp(now or utcnow()))
    digest = link_hash(bytes(prev_hash), fields)
    row = {**fields, "prev_hash": bytes(prev_hash), "hash": digest}
    row["targets"] = canonical_json(pending.targets).decode()
    row["returned"] = canonical_json(pending.returned).decode()
    db.session.execute(insert(AuditEntry).values(**row))
    refs = [
        {"entry_seq": seq, "ref_type": ref_type, "ref_id": ref_id, "relation": relation}
        for relation, refs_by_type in (("target", pending.targets), ("returned", pending.returned))
        for ref_type, ids in refs_by_type.items()
        for ref_id in ids
    ]
    if refs:
        db.session.execute(insert(AuditRef), refs)
    db.session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(hash=digest))
    return int(seq)


_ROW_COLUMNS = (
    AuditEntry.action,
    AuditEntry.agency_id,
    AuditEntry.client_id,
    AuditEntry.kind,
    AuditEntry.occurred_at,
    AuditEntry.outcome,
    AuditEntry.practitioner,
    AuditEntry.purpose,
    AuditEntry.request_id,
    AuditEntry.returned,
    AuditEntry.seq,
    AuditEntry.source_address,
    AuditEntry.status,
    AuditEntry.targets,
    AuditEntry.prev_hash,
    AuditEntry.hash,
)  # fmt: skip — the order of service.audit.chain.ROW_FIELDS


def _decoded(result: Iterable[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    loads = json.loads
    for r in result:
        yield (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], loads(r[9]), r[10], r[11],
               r[12], loads(r[13]), bytes(r[14]), bytes(r[15]))  # fmt: skip


def verify_log(checkpoint: Checkpoint | None = None) -> VerificationReport:
    """Walk the whole chain; name the first entry altered, missing, reordered or truncated."""
    # In insertion order (id), not seq order: reordered entries must look reordered.
    result = db.session.execute(
        select(*_ROW_COLUMNS).order_by(AuditEntry.id).execution_options(yield_per=10_000)
    )
    try:
        report = verify_chain(_decoded(result), checkpoint=checkpoint)
    finally:
        result.close()  # verification may stop early; release the server-side cursor
    head_seq = db.session.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0
    if report.ok and head_seq > (report.head_seq or 0):
        # The head row remembers more entries than the table holds: the tail was removed.
        last = report.head_seq or 0
        return VerificationReport(
            False,
            report.checked,
            report.head_seq,
            report.head_hash,
            last + 1,
            "truncated",
            f"the chain head records seq {head_seq} but the log ends at seq {last}",
        )
    return report


def create_checkpoint(signing_key: bytes) -> Checkpoint:
    """Sign the current head, keep the checkpoint, and return it for export."""
    seq, head_hash = db.session.execute(
        select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)
    ).one()
    signed = sign_checkpoint(signing_key, int(seq), bytes(head_hash))
    db.session.add(
        AuditCheckpoint(
            seq=signed.seq,
            hash=signed.hash,
            created_at=signed.created_at,
            key_id=signed.key_id,
            signature=signed.signature,
        )
    )
    return signed


def latest_checkpoint(signing_key: bytes) -> Checkpoint | None:
    """Return the newest stored checkpoint, after checking its signature against our key."""
    row = db.session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc())
    ).first()
    if row is None:
        return None
    checkpoint = Checkpoint(row.seq, row.hash, row.created_at, row.key_id, row.signature)
    verify_checkpoint_signature(checkpoint, public_key_from_private(signing_key))
    return checkpoint
