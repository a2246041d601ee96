"""The audit log: append-only entries in a hash chain, their referenced ids, and checkpoints."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.audit.chain import CHAINED_FIELDS
from service.database import Base

# 64-bit on PostgreSQL (years of busy logging); SQLite needs INTEGER for its rowid alias.
SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """One audited request. Ids only, never contents; the database refuses UPDATE and DELETE."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_agency_occurred", "agency_id", "occurred_at"),
        Index("ix_audit_entry_practitioner_occurred", "practitioner", "occurred_at"),
    )

    # Insertion order, independent of seq, so that reordered entries show as such.
    id: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(SequenceNumber, unique=True)
    occurred_at: Mapped[str] = mapped_column(String(27), index=True)  # canonical UTC text
    kind: Mapped[str] = mapped_column(String(16), default="entry")
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)
    agency_id: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    practitioner: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    source_address: Mapped[str | None] = mapped_column(String(64))
    targets: Mapped[str] = mapped_column(Text)  # canonical JSON: {"household": [ids]}
    returned: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    def chained_fields(self) -> dict[str, Any]:
        """Return the hash-chained fields as stored (id maps as their canonical JSON text)."""
        return {name: getattr(self, name) for name in CHAINED_FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """Return the hash-chained fields as JSON values (id maps decoded)."""
        fields = self.chained_fields()
        fields["targets"], fields["returned"] = json.loads(self.targets), json.loads(self.returned)
        return fields

    def names(self, ref_type: str) -> set[str]:
        """Return the ids of ``ref_type`` this entry names (from its chained fields only)."""
        targets, returned = json.loads(self.targets), json.loads(self.returned)
        return set(targets.get(ref_type, [])) | set(returned.get(ref_type, []))


_missing = set(CHAINED_FIELDS) - set(AuditEntry.__table__.columns.keys())
if _missing:
    raise TypeError(f"audit_entry lacks chained fields {sorted(_missing)}")


class AuditRef(Base):
    """An id an entry names (target or returned record), indexed for auditors' queries."""

    __tablename__ = "audit_ref"
    __table_args__ = (Index("ix_audit_ref_lookup", "ref_type", "ref_id", "entry_seq"),)

    entry_seq: Mapped[int] = mapped_column(
        SequenceNumber, ForeignKey("audit_entry.seq"), primary_key=True
    )
    ref_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    relation: Mapped[str] = mapped_column(String(16), primary_key=True)  # target | returned


class AuditHead(Base):
    """The single row holding the chain's head; locking it serialises appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(SequenceNumber)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed statement of the chain head at a moment, also exported for keeping elsewhere."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(SequenceNumber, index=True)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(27))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))


class AuditArchive(Base):
    """A signed truncation record: entries up to ``through_seq`` were exported, then removed.

    The append-only triggers let rows at or below the latest ``through_seq`` be deleted, and
    nothing else; verification resumes from ``through_hash``.
    """

    __tablename__ = "audit_archive"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    through_seq: Mapped[int] = mapped_column(SequenceNumber, unique=True)
    through_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    export_sha256: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(SequenceNumber)
    created_at: Mapped[str] = mapped_column(String(27))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))
