"""Appending to the audit log and verifying it: plain functions over the database session."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import delete, insert, select, text, update

from service.audit.chain import (
    GENESIS_HASH,
    VerificationReport,
    canonical_bytes,
    canonical_json,
    format_timestamp,
    link_hash,
    verify_chain,
)
from service.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    public_key_from_private,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from service.database import db, utcnow
from service.models.audit import (
    AuditArchive,
    AuditCheckpoint,
    AuditEntry,
    AuditHead,
    AuditRef,
)

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

    Appends are serialised on the chain-head row: whoever updates it holds it (a row lock on
    PostgreSQL, the write lock on SQLite) until commit, so the chain cannot fork. Everything
    that can be prepared is prepared before taking it; on PostgreSQL the head update, the hash,
    the entry and its references are then a single statement, so the head is held for one round
    trip and the commit.
    """
    if pending.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {pending.outcome!r}")
    occurred_at = format_timestamp(now or utcnow())
    columns = {
        **_chained(pending, _SEQ_MARKER, occurred_at),
        "targets": canonical_json(pending.targets).decode(),
        "returned": canonical_json(pending.returned).decode(),
    }
    del columns["seq"]
    refs = [
        {"ref_type": ref_type, "ref_id": ref_id, "relation": relation}
        for relation, refs_by_type in (("target", pending.targets), ("returned", pending.returned))
        for ref_type, ids in refs_by_type.items()
        for ref_id in ids
    ]
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        prefix, suffix = _split_at_seq(canonical_bytes(_chained(pending, _SEQ_MARKER, occurred_at)))
        seq = connection.execute(
            _APPEND_PG_WITH_REFS if refs else _APPEND_PG,
            {**columns, "prefix": prefix, "suffix": suffix, "refs": json.dumps(refs),
             "head_id": HEAD_ID},
        ).scalar_one()  # fmt: skip
        return int(seq)
    seq, prev_hash = connection.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one()
    digest = link_hash(bytes(prev_hash), _chained(pending, seq, occurred_at))
    connection.execute(
        insert(AuditEntry), {**columns, "seq": seq, "prev_hash": bytes(prev_hash), "hash": digest}
    )
    if refs:
        connection.execute(insert(AuditRef), [{**ref, "entry_seq": seq} for ref in refs])
    connection.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(prev_hash=bytes(prev_hash), hash=digest)
    )
    return int(seq)


# The canonical form sorts keys, so seq sits at one place in it; the database fills it in.
_SEQ_MARKER = 2**63 - 1


def _split_at_seq(canonical: bytes) -> tuple[str, str]:
    prefix, suffix = canonical.decode("ascii").split(f'"seq":{_SEQ_MARKER},')
    return prefix + '"seq":', "," + suffix


# One statement on PostgreSQL: take the head (locking it), hash the entry onto it with
# SHA-256(prev_hash || canonical bytes), and insert the entry and its references.
_APPEND_HEAD_AND_ENTRY = """
    WITH head AS (
        UPDATE audit_head
        SET seq = seq + 1, prev_hash = hash,
            hash = sha256(hash || convert_to(:prefix || (seq + 1)::text || :suffix, 'UTF8'))
        WHERE id = :head_id
        RETURNING seq, prev_hash, hash
    ), entry AS (
        INSERT INTO audit_entry (seq, occurred_at, kind, action, outcome, status, agency_id,
            client_id, practitioner, purpose, request_id, source_address, targets, returned,
            prev_hash, hash)
        SELECT seq, :occurred_at, :kind, :action, :outcome, :status, :agency_id, :client_id,
            :practitioner, :purpose, :request_id, :source_address, :targets, :returned,
            prev_hash, hash
        FROM head
        RETURNING seq
    )"""
_APPEND_PG = text(_APPEND_HEAD_AND_ENTRY + " SELECT seq FROM entry")
_APPEND_PG_WITH_REFS = text(
    _APPEND_HEAD_AND_ENTRY
    + """, refs AS (
        INSERT INTO audit_ref (entry_seq, ref_type, ref_id, relation)
        SELECT entry.seq, r->>'ref_type', r->>'ref_id', r->>'relation'
        FROM entry, jsonb_array_elements(CAST(:refs AS jsonb)) AS r
    )
    SELECT seq FROM entry"""
)


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


def latest_archive() -> AuditArchive | None:
    """Return the newest archive record (entries up to its ``through_seq`` were removed)."""
    query = select(AuditArchive).order_by(AuditArchive.through_seq.desc())
    return db.session.scalars(query).first()


def verify_log(
    checkpoint: Checkpoint | None = None, public_key: bytes | None = None
) -> VerificationReport:
    """Walk the whole chain; name the first entry altered, missing, reordered or truncated.

    After an archival the walk starts from the archive record's hash, once its signature checks
    out against ``public_key``; a checkpoint older than the archive can no longer be checked
    and is ignored.
    """
    archive = latest_archive()
    start_seq, start_hash = (1, GENESIS_HASH)
    if archive is not None:
        if public_key is None or not _archive_signed(archive, public_key):
            detail = (
                "the archive record's signature cannot be verified; nothing after it is trusted"
            )
            return VerificationReport(
                False, 0, None, None, archive.through_seq, "archive_invalid", detail
            )
        start_seq, start_hash = archive.through_seq + 1, bytes(archive.through_hash)
    if checkpoint is not None and checkpoint.seq < start_seq - 1:
        checkpoint = None
    # The head first, the entries (all of them, in insertion order so reordered ones look
    # reordered; targets and returned hashed as stored), then the head again: appends are
    # serialised and commit in seq order, so entries committed meanwhile simply chain on.
    before = _head()
    result = db.session.connection().execute(
        select(*_ROW_COLUMNS)
        .where(AuditEntry.seq >= start_seq)
        .order_by(AuditEntry.id)
        .execution_options(yield_per=10_000)
    )
    try:
        report = verify_chain(
            (tuple(row) for row in result), start_prev_hash=start_hash, start_seq=start_seq,
            checkpoint=checkpoint,
        )  # fmt: skip
    finally:
        result.close()  # verification may stop early; release the server-side cursor
    if not report.ok:
        return report
    return _check_head(report, before, _head(), start_seq, start_hash)


def _head() -> tuple[int, bytes] | None:
    row = db.session.execute(
        select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)
    ).first()
    return (int(row[0]), bytes(row[1])) if row is not None else None


def _check_head(
    report: VerificationReport,
    before: tuple[int, bytes] | None,
    after: tuple[int, bytes] | None,
    start_seq: int,
    start_hash: bytes,
) -> VerificationReport:
    """Hold the intact chain against the head row, which remembers how far it reached."""
    last = report.head_seq if report.head_seq is not None else start_seq - 1

    def failed(seq: int, problem: str, detail: str) -> VerificationReport:
        return VerificationReport(
            False, report.checked, report.head_seq, report.head_hash, seq, problem, detail
        )

    if before is None or after is None:
        return failed(start_seq, "head_altered", "the chain head row is missing")
    if before[0] > last:
        detail = f"the chain head records seq {before[0]} but the log ends at seq {last}"
        return failed(last + 1, "truncated", detail)
    if after[0] < last:
        detail = f"entries after seq {after[0]} lie beyond the chain head: not appended by us"
        return failed(after[0] + 1, "head_altered", detail)
    if before[0] >= start_seq:
        stored = db.session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == before[0]))
        expected = bytes(stored) if stored is not None else b""
    else:
        expected = start_hash
    if before[1] != expected:
        return failed(before[0], "head_altered", "the chain head's hash is not its entry's hash")
    return report


def _archive_signed(archive: AuditArchive, public_key: bytes) -> bool:
    statement = Checkpoint(
        archive.through_seq, bytes(archive.through_hash).hex(), archive.created_at,
        archive.key_id, archive.signature,
    )  # fmt: skip
    try:
        verify_checkpoint_signature(statement, public_key)
    except CheckpointError:
        return False
    return True


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
        line = (
            json.dumps(
                {**row.chained_fields(), "prev_hash": row.prev_hash.hex(), "hash": row.hash.hex()},
                sort_keys=True,
            ).encode()
            + b"\n"
        )
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


def current_head_seq() -> int:
    """Return the seq of the newest entry appended."""
    return int(db.session.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0)


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


def latest_checkpoint(public_key: bytes) -> tuple[Checkpoint | None, list[int]]:
    """Return the newest stored checkpoint whose signature checks out, and the ids of any newer
    rows that do not (forged or damaged: a finding in itself, but no reason to stop checking).
    """
    rows = db.session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc())
    )
    invalid: list[int] = []
    for row in rows:
        try:
            checkpoint = Checkpoint(row.seq, row.hash, row.created_at, row.key_id, row.signature)
            verify_checkpoint_signature(checkpoint, public_key)
        except CheckpointError:
            invalid.append(row.id)
            continue
        return checkpoint, invalid
    return None, invalid


def verify_with_stored_checkpoints(public_key: bytes) -> tuple[VerificationReport, int | None]:
    """Verify against the newest valid stored checkpoint; report invalid ones if all else is
    well. Returns the report and the checkpoint's seq."""
    checkpoint, invalid = latest_checkpoint(public_key)
    report = verify_log(checkpoint, public_key)
    if report.ok and invalid:
        report = VerificationReport(
            False, report.checked, report.head_seq, report.head_hash, None, "checkpoint_invalid",
            f"stored checkpoints {invalid} do not check out against the signing key",
        )  # fmt: skip
    return report, checkpoint.seq if checkpoint else None
