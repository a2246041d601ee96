"""Households and the people living in them (members)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, LargeBinary, String, orm
from sqlalchemy.orm import Mapped, mapped_column

from service.crypto import BlindIndexer
from service.database import Base, UTCDateTime, utcnow
from service.models.encrypted import EncryptedRecord, Personal, SealedRow, new_id

if TYPE_CHECKING:
    from service.models.involvement import Involvement

PERSON_ROLES = ("adult", "child")
BLIND_INDEX_BYTES = 16


def _index_column() -> Mapped[bytes | None]:
    return mapped_column(LargeBinary(BLIND_INDEX_BYTES), index=True, default=None)


class Household(EncryptedRecord, Base):
    """A dwelling, found by UPRN or by postcode and first address line."""

    __tablename__ = "household"
    blind_indexes = {
        "uprn_index": (BlindIndexer.uprn, ("uprn",)),
        "postcode_line1_index": (BlindIndexer.postcode_address, ("postcode", "address_line1")),
    }

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    uprn_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    address_line1_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    address_line2_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    town_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    postcode_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    uprn_index: Mapped[bytes | None] = _index_column()
    postcode_line1_index: Mapped[bytes | None] = _index_column()
    created_by: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    uprn = Personal()
    address_line1 = Personal()
    address_line2 = Personal()
    town = Personal()
    postcode = Personal()

    members: Mapped[list[Person]] = orm.relationship(
        back_populates="household", order_by="Person.created_at"
    )
    involvements: Mapped[list[Involvement]] = orm.relationship(back_populates="household")


class Person(EncryptedRecord, Base):
    """Someone living in a household; found by family name and date of birth, or NHS number."""

    __tablename__ = "person"
    blind_indexes = {
        "name_dob_index": (BlindIndexer.person, ("family_name", "date_of_birth")),
        "nhs_number_index": (BlindIndexer.nhs_number, ("nhs_number",)),
    }

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    household_id: Mapped[str] = mapped_column(ForeignKey("household.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    given_name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    family_name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    date_of_birth_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    nhs_number_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    relationship_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    name_dob_index: Mapped[bytes | None] = _index_column()
    nhs_number_index: Mapped[bytes | None] = _index_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    given_name = Personal()
    family_name = Personal()
    date_of_birth = Personal()  # ISO date
    nhs_number = Personal()
    relationship = Personal()

    household: Mapped[Household] = orm.relationship(back_populates="members")


class HouseholdRow(SealedRow):
    """A household as the briefing reads it (see ``SealedRow``)."""

    model = Household
    uprn, town, postcode = Household.uprn, Household.town, Household.postcode
    address_line1, address_line2 = Household.address_line1, Household.address_line2


class PersonRow(SealedRow):
    """A member as the briefing reads it (see ``SealedRow``)."""

    model = Person
    role: str
    given_name, family_name = Person.given_name, Person.family_name
    date_of_birth, nhs_number, relationship = (
        Person.date_of_birth,
        Person.nhs_number,
        Person.relationship,
    )
