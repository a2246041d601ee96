"""Retention: archive the oldest entries, leaving a signed truncation record in their place."""

from __future__ import annotations

import hashlib
import json
from typing import IO

from sqlalchemy import delete, select

from service.audit.append import append
from service.audit.checkpoint import public_key_from_private, sign_checkpoint
from service.audit.entry import PendingEntry
from service.audit.verification import latest_archive, verify_log
from service.database import db
from service.models.audit import AuditArchive, AuditEntry, AuditRef


def archive_through(through_seq: int, out: IO[bytes], signing_key: bytes) -> AuditArchive:
    """Export entries up to ``through_seq`` as JSON Lines to ``out``, then remove them.

    Refuses unless the whole chain verifies. Leaves a signed archive record and an ``archive``
    entry in the chain naming the range and the export's SHA-256; the caller commits.
    """
    report = verify_log(public_key=public_key_from_private(signing_key))
    if not report.ok:
        raise ValueError(f"the audit log does not verify ({report.problem}); not archiving")
    previous = latest_archive()
    first = previous.through_seq + 1 if previous else 1
    if not report.head_seq or not first <= through_seq < report.head_seq:
        raise ValueError(f"through_seq must be between {first} and {(report.head_seq or 1) - 1}")
    digest = hashlib.sha256()
    rows = db.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.seq.between(first, through_seq))
        .order_by(AuditEntry.seq)
    )
    last_hash = b""
    for row in rows:
        document = {**row.as_dict(), "prev_hash": row.prev_hash.hex(), "hash": row.hash.hex()}
        line = json.dumps(document, sort_keys=True).encode() + b"\n"
        digest.update(line)
        out.write(line)
        last_hash = bytes(row.hash)
    signed = sign_checkpoint(signing_key, through_seq, last_hash)
    record = AuditArchive(
        through_seq=through_seq, through_hash=last_hash, export_sha256=digest.hexdigest(),
        entries=through_seq - first + 1, created_at=signed.created_at, key_id=signed.key_id,
        signature=signed.signature,
    )  # fmt: skip
    db.session.add(record)
    db.session.flush()  # the triggers allow the deletes below only once this row exists
    db.session.execute(delete(AuditRef).where(AuditRef.entry_seq <= through_seq))
    db.session.execute(delete(AuditEntry).where(AuditEntry.seq <= through_seq))
    entry = PendingEntry(action="audit:archive", kind="archive")
    entry.target("audit_entry_range", str(first), str(through_seq))
    entry.target("audit_export_sha256", record.export_sha256)
    append(entry)
    return record
