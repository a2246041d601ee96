"""Agencies: the member organisations of the safeguarding partnership."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, utcnow
from service.models.encrypted import EncryptedRecord, Personal, SealedRow, open_sealed

AGENCY_TYPES = (
    "children_social_care",
    "adult_social_care",
    "health",
    "education",
    "housing",
    "police",
    "probation",
    "voluntary",
    "other",
)
# At most 47 characters, so that "<slug>.<16 hex>" client ids fit the 64-character columns.
SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,45}[a-z0-9])?")


class Agency(EncryptedRecord, Base):
    __tablename__ = "agency"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    agency_type: Mapped[str] = mapped_column(String(32))
    duty_contact_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    duty_contact = Personal()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class AgencyRow(SealedRow):
    """An agency as a household's record reads it: whom to call (see ``SealedRow``)."""

    model = Agency
    name: str
    duty_contact = Agency.duty_contact


@dataclass(frozen=True)
class AgencyContact:
    """Whom to call at an agency: its name and duty desk (as ``Agency`` has them), opened from
    plain columns where loading the record would cost more than the read (the look-up)."""

    id: str
    name: str
    duty_contact: str | None

    @classmethod
    def opened(
        cls,
        agency_id: str,
        name: str,
        key_version: int,
        wrapped_key: bytes,
        duty_contact_sealed: bytes,
    ) -> AgencyContact:
        """Open the duty contact from the agency row's stored columns."""
        duty_contact = open_sealed(Agency.__tablename__, agency_id, key_version, wrapped_key,
                                   "duty_contact", duty_contact_sealed)  # fmt: skip
        return cls(agency_id, name, duty_contact)
