"""Warnings (warning markers) about a household, their versions and whom they are shared with."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.database import Base, UTCDateTime, utcnow
from service.models.encrypted import EncryptedRecord, Personal, SealedRow, new_id
from service.models.incident import CategoryCodes, Incident, IncidentRow

# Aligned with FHIR Flag.status.
STATUSES = ("active", "inactive", "entered-in-error")
RISK_LEVELS = ("low", "medium", "high")
HANDLINGS = ("involved", "restricted")

warning_incident = Table(
    "warning_incident",
    Base.metadata,
    Column("warning_id", ForeignKey("warning.id"), primary_key=True),
    Column("incident_id", ForeignKey("incident.id"), primary_key=True, index=True),
)


class WarningShare(Base):
    """A restricted warning is shared with this agency (besides its issuer)."""

    __tablename__ = "warning_share"

    warning_id: Mapped[str] = mapped_column(ForeignKey("warning.id"), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), primary_key=True, index=True)


class _WithPrecautions(Protocol):
    precautions: str


class WarningCodes(CategoryCodes):
    """A warning's categories and precautions as lists (stored as space-separated codes), for
    the record and its row alike."""

    @property
    def precaution_list(self: _WithPrecautions) -> list[str]:
        return self.precautions.split()


class WarningMarker(WarningCodes, EncryptedRecord, Base):
    """The current version of a warning; every change also leaves a ``WarningVersion``."""

    __tablename__ = "warning"
    __table_args__ = (
        Index("ix_warning_household_status", "household_id", "status"),
        Index("ix_warning_issuer_created", "issuing_agency_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    household_id: Mapped[str] = mapped_column(ForeignKey("household.id"))
    issuing_agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    version: Mapped[int] = mapped_column(Integer, default=1)
    risk_level: Mapped[str] = mapped_column(String(8))
    # Space-separated codes; categories and precautions are the flag view, not personal data.
    categories: Mapped[str] = mapped_column(Text)
    precautions: Mapped[str] = mapped_column(Text, default="")
    handling: Mapped[str] = mapped_column(String(16), default="involved")
    children_in_household: Mapped[bool] = mapped_column(Boolean)
    subject_informed: Mapped[bool] = mapped_column(Boolean)
    informed_on: Mapped[date | None] = mapped_column(Date, default=None)
    recheck_on: Mapped[date | None] = mapped_column(Date, default=None)
    review_by: Mapped[date] = mapped_column(Date, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    persons_of_concern_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    reason_withheld_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    status_reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    persons_of_concern = Personal()  # JSON: [{"member_id"} | {"given_name", "family_name"}]
    reason_withheld = Personal()  # why the subject was not told
    status_reason = Personal()  # why it was withdrawn or closed

    incidents: Mapped[list[Incident]] = relationship(
        secondary=warning_incident, order_by=Incident.occurred_on
    )
    shares: Mapped[list[WarningShare]] = relationship(cascade="all, delete-orphan")

    @property
    def shared_with(self) -> list[str]:
        return sorted(share.agency_id for share in self.shares)


class WarningRow(WarningCodes, SealedRow):
    """A warning as a household's record reads it (see ``SealedRow``), with whom it is shared
    (``shared_with``, from the statement) and the incidents it rests on (set once read)."""

    model = WarningMarker
    derived = ("shared_with", "incidents")
    household_id: str
    issuing_agency_id: str
    status: str
    version: int
    risk_level: str
    categories: str
    precautions: str
    handling: str
    children_in_household: bool
    subject_informed: bool
    informed_on: date | None
    recheck_on: date | None
    review_by: date
    created_at: datetime
    updated_at: datetime
    persons_of_concern = WarningMarker.persons_of_concern
    reason_withheld = WarningMarker.reason_withheld
    status_reason = WarningMarker.status_reason
    shared_with: list[str]
    incidents: list[IncidentRow]

    def __init__(self, values: Sequence[Any], shared_with: str | None) -> None:
        super().__init__(values)
        self.shared_with = sorted((shared_with or "").split())
        self.incidents = []


class WarningVersion(EncryptedRecord, Base):
    """A warning as it stood after one change (publish, update, review, withdraw, close)."""

    __tablename__ = "warning_version"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    warning_id: Mapped[str] = mapped_column(ForeignKey("warning.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    snapshot_sealed: Mapped[bytes] = mapped_column(LargeBinary)

    snapshot = Personal()  # JSON of the warning's fields at this version

    warning: Mapped[WarningMarker] = relationship()
