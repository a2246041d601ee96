"""Verifying the audit log: walk the chain against its head and signed checkpoints."""

from __future__ import annotations

from sqlalchemy import select

from service.audit.append import HEAD_ID
from service.audit.chain import GENESIS_HASH, ROW_FIELDS, VerificationReport, verify_chain
from service.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from service.database import db
from service.models.audit import AuditArchive, AuditCheckpoint, AuditEntry, AuditHead

# verify_chain's row shape, read straight from the table.
_ROW_COLUMNS = tuple(AuditEntry.__table__.c[name] for name in ROW_FIELDS)


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
