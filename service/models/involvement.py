"""Involvements: agency X is working with this household."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    LargeBinary,
    SQLColumnExpression,
    String,
    and_,
    or_,
    orm,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, utcnow
from service.models.encrypted import EncryptedRecord, Personal, SealedRow, new_id

if TYPE_CHECKING:
    from service.models.household import Household


class Involvement(EncryptedRecord, Base):
    """Agency X is working with this household: the subscription and the need-to-know test."""

    __tablename__ = "involvement"
    __table_args__ = (
        # The need-to-know rule's look-up: this agency, this household.
        Index("ix_involvement_agency_household", "agency_id", "household_id"),
        # One current involvement per agency and household, even under concurrent requests.
        Index(
            "uq_involvement_current", "agency_id", "household_id", unique=True,
            sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL"),
        ),
    )  # fmt: skip

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    household_id: Mapped[str] = mapped_column(ForeignKey("household.id"), index=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), index=True)
    case_reference_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    lead_practitioner_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    contact_route_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    lead_contact_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    ended_reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    case_reference = Personal()
    lead_practitioner = Personal()
    contact_route = Personal()
    lead_contact = Personal()  # the lead practitioner's phone or email
    ended_reason = Personal()

    household: Mapped[Household] = orm.relationship(back_populates="involvements")

    # The rule's clock, stated twice side by side: on a loaded row, and as SQL.
    def covers(self, moment: datetime) -> bool:
        """Say whether the involvement had begun and not yet ended at ``moment``."""
        return self.started_at <= moment and (self.ended_at is None or moment < self.ended_at)

    @classmethod
    def covering(cls, moment: datetime | SQLColumnExpression[datetime]) -> ColumnElement[bool]:
        """SQL: the involvement had begun and not yet ended at ``moment``."""
        return and_(cls.started_at <= moment, or_(cls.ended_at.is_(None), cls.ended_at > moment))


class InvolvementRow(SealedRow):
    """Another agency's involvement as the briefing reads it: whom to call (see ``SealedRow``)."""

    model = Involvement
    agency_id: str
    lead_practitioner, lead_contact = Involvement.lead_practitioner, Involvement.lead_contact
    contact_route = Involvement.contact_route
