"""Incidents: what happened to a practitioner, recorded by the agency it happened to."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from sqlalchemy import Boolean, Date, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, utcnow
from service.models.encrypted import EncryptedRecord, Personal, SealedRow, new_id


class _Categorised(Protocol):
    categories: str


class CategoryCodes:
    """Categories as a list (stored as space-separated codes, from DESIGN.md's list), for a
    record and its row alike."""

    @property
    def category_list(self: _Categorised) -> list[str]:
        return self.categories.split()


class Incident(CategoryCodes, EncryptedRecord, Base):
    """One incident at a household; low-level ones add up across agencies."""

    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_household_occurred", "household_id", "occurred_on"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    household_id: Mapped[str] = mapped_column(ForeignKey("household.id"))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), index=True)
    occurred_on: Mapped[date] = mapped_column(Date)
    # Space-separated category codes (from DESIGN.md's list): not personal, and counted in SQL.
    categories: Mapped[str] = mapped_column(Text)
    police_reported: Mapped[bool] = mapped_column(Boolean)
    summary_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    description_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    crime_reference_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    summary = Personal()
    description = Personal()
    crime_reference = Personal()


class IncidentRow(CategoryCodes, SealedRow):
    """An incident as a household's record reads it (see ``SealedRow``)."""

    model = Incident
    household_id: str
    agency_id: str
    occurred_on: date
    categories: str
    police_reported: bool
    recorded_at: datetime
    summary, description = Incident.summary, Incident.description
    crime_reference = Incident.crime_reference
