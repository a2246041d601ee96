"""Agencies: the member organisations of the safeguarding partnership."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, utcnow
from service.models.encrypted import EncryptedRecord, Personal, SealedRow

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
    """Whom to call at an agency, read from plain columns (see ``SealedRow``): a warning's
    issuer in the look-up's flag view and in a household's record, another agency working with
    the household in the briefing."""

    model = Agency
    name: str
    duty_contact = Agency.duty_contact
