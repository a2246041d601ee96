"""Use cases for households and their members: naming a household, looking it up, and keeping
its members."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, select

from service.crypto.normalise import (
    normalise_nhs_number,
    normalise_postcode,
    normalise_uprn,
)
from service.database import db, utcnow
from service.errors import InvalidInput, NotFound
from service.involvements import involved
from service.keys import active_keys
from service.models.agency import AgencyRow
from service.models.household import PERSON_ROLES, Household, Person
from service.warnings import Flag, add_to_flag, with_active_warnings


def _checked(
    errors: dict[str, list[str]], field: str, check: Callable[[str], str], value: str
) -> str:
    """Run a normaliser, collecting its complaint under ``field`` instead of raising."""
    try:
        return check(value)
    except ValueError as error:
        errors[field] = [str(error)]
        return value


def register_household(
    agency_id: str,
    *,
    uprn: str | None = None,
    address_line1: str | None = None,
    address_line2: str | None = None,
    town: str | None = None,
    postcode: str | None = None,
) -> Household:
    """Record a household, identified by UPRN and/or postcode plus first address line."""
    errors: dict[str, list[str]] = {}
    if uprn is not None:
        uprn = _checked(errors, "uprn", normalise_uprn, uprn)
    if postcode is not None:
        postcode = _checked(errors, "postcode", normalise_postcode, postcode)
    if uprn is None and not (postcode and address_line1):
        errors["uprn"] = ["Give a UPRN, or a postcode and first address line."]
    if errors:
        raise InvalidInput("The household is not valid.", errors=errors)
    household = Household(
        created_by=agency_id,
        uprn=uprn,
        address_line1=address_line1,
        address_line2=address_line2,
        town=town,
        postcode=postcode,
    )
    db.session.add(household)
    return household


def add_member(
    household: Household,
    *,
    role: str,
    given_name: str,
    family_name: str,
    date_of_birth: date | None = None,
    nhs_number: str | None = None,
    relationship: str | None = None,
) -> Person:
    """Record someone living in ``household``; an NHS number must pass its check digit."""
    errors: dict[str, list[str]] = {}
    if role not in PERSON_ROLES:
        errors["role"] = [f"One of: {', '.join(PERSON_ROLES)}."]
    if nhs_number is not None:
        nhs_number = _checked(errors, "nhs_number", normalise_nhs_number, nhs_number)
    if errors:
        raise InvalidInput("The household member is not valid.", errors=errors)
    person = Person(
        household_id=household.id,
        role=role,
        given_name=given_name,
        family_name=family_name,
        date_of_birth=date_of_birth.isoformat() if date_of_birth else None,
        nhs_number=nhs_number,
        relationship=relationship,
    )
    db.session.add(person)
    return person


def find_households_by_uprn(uprn: str) -> list[Household]:
    """Return households with this UPRN (exact match through its blind index)."""
    index = active_keys().indexer.uprn(uprn)
    return list(db.session.scalars(_HOUSEHOLDS_BY_UPRN, {"index": index}))


def find_households_by_address(postcode: str, address_line1: str) -> list[Household]:
    """Return households at this postcode and first address line, however they were typed."""
    index = active_keys().indexer.postcode_address(postcode, address_line1)
    return list(db.session.scalars(_HOUSEHOLDS_BY_ADDRESS, {"index": index}))


def find_people_by_name_and_birth_date(family_name: str, date_of_birth: date) -> list[Person]:
    """Return people with this family name and date of birth."""
    index = active_keys().indexer.person(family_name, date_of_birth)
    return list(db.session.scalars(_PEOPLE_BY_NAME_AND_BIRTH, {"index": index}))


def find_people_by_nhs_number(nhs_number: str) -> list[Person]:
    """Return people with this NHS number (which must pass its check digit)."""
    index = active_keys().indexer.nhs_number(nhs_number)
    return list(db.session.scalars(_PEOPLE_BY_NHS_NUMBER, {"index": index}))


# Built once (compiled forms and cache keys reused): every publish and involvement resolves its
# household by one of these.
_HOUSEHOLDS_BY_UPRN = select(Household).where(Household.uprn_index == bindparam("index"))
_HOUSEHOLDS_BY_ADDRESS = select(Household).where(
    Household.postcode_line1_index == bindparam("index")
)
_PEOPLE_BY_NAME_AND_BIRTH = select(Person).where(Person.name_dob_index == bindparam("index"))
_PEOPLE_BY_NHS_NUMBER = select(Person).where(Person.nhs_number_index == bindparam("index"))


@dataclass(frozen=True)
class Address:
    line1: str
    postcode: str
    line2: str | None = None
    town: str | None = None


@dataclass(frozen=True)
class HouseholdRef:
    """How a request names a household: exactly one of its id, its UPRN, or its address."""

    household_id: str | None = None
    uprn: str | None = None
    address: Address | None = None


def find_household(ref: HouseholdRef) -> Household | None:
    """Return the household ``ref`` names, if it is registered."""
    if ref.household_id is not None:
        return db.session.get(Household, ref.household_id)
    if ref.uprn is not None:
        found = find_households_by_uprn(ref.uprn)
    else:
        assert ref.address is not None
        found = find_households_by_address(ref.address.postcode, ref.address.line1)
    # Two registrations of one dwelling are possible (by UPRN, then by address); the oldest
    # one is the household everyone is told about.
    return min(found, key=lambda household: household.created_at) if found else None


def get_household(household_id: str) -> Household:
    """Return the household or raise NotFound."""
    household = db.session.get(Household, household_id)
    if household is None:
        raise NotFound("No such household.")
    return household


def resolve_household(ref: HouseholdRef, agency_id: str) -> Household:
    """Return the household ``ref`` names, registering it (by UPRN or address) if it is new."""
    household = find_household(ref)
    if household is not None:
        return household
    if ref.household_id is not None:
        raise NotFound("No such household.", errors={"household.household_id": ["Not found."]})
    if ref.uprn is not None:
        return register_household(agency_id, uprn=ref.uprn)
    assert ref.address is not None
    return register_household(
        agency_id, address_line1=ref.address.line1, address_line2=ref.address.line2,
        town=ref.address.town, postcode=ref.address.postcode,
    )  # fmt: skip


@dataclass(frozen=True)
class Match:
    household_id: str
    matched_by: str  # uprn | address | person
    involved: bool  # the looking agency works with the household now
    flag: Flag  # what the looking agency may know of the household's active warnings


def look_up(
    agency_id: str,
    today: date,
    *,
    uprn: str | None = None,
    address: Address | None = None,
    family_name: str | None = None,
    date_of_birth: date | None = None,
    nhs_number: str | None = None,
) -> list[Match]:
    """Find registered households by UPRN, address or a person living there; never create one.

    One query, returning ids only (a look-up shows no address), each with whether
    ``agency_id`` works with the household now and its flag as that agency may see it.
    """
    indexer = active_keys().indexer
    if uprn is not None:
        matched_by, query, index = "uprn", _BY_UPRN, indexer.uprn(uprn)
    elif address is not None:
        index = indexer.postcode_address(address.postcode, address.line1)
        matched_by, query = "address", _BY_ADDRESS
    elif nhs_number is not None:
        index = indexer.nhs_number(normalise_nhs_number(nhs_number))
        matched_by, query = "person", _BY_NHS_NUMBER
    else:
        assert family_name is not None and date_of_birth is not None
        matched_by, query = "person", _BY_NAME_AND_BIRTH
        index = indexer.person(family_name, date_of_birth)
    parameters = {"agency_id": agency_id, "now": utcnow(), "index": index}
    # Plain columns on the session's connection: the ORM's result machinery would cost more
    # than the query (this is the hottest read).
    rows = db.session.connection().execute(query, parameters)
    matches: list[Match] = []
    contacts: dict[str, AgencyRow] = {}  # the issuers', by id
    for row in rows:  # a household's rows are adjacent: one per active warning, or one
        if not matches or matches[-1].household_id != row.household_id:
            matches.append(Match(row.household_id, matched_by, bool(row.involved), Flag()))
        if row.issuing_agency_id is not None:
            add_to_flag(matches[-1].flag, row, agency_id, today, contacts)
    return matches


def _matching(condition: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    found = (
        select(
            Household.id.label("household_id"),
            involved(bindparam("agency_id"), Household.id, at=bindparam("now")).label("involved"),
        )
        .where(condition)
        .order_by(Household.created_at, Household.id)
    )
    return with_active_warnings(found)


def _living_there(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return Household.id.in_(select(Person.household_id).where(condition))


# Built once, a statement per way of matching: the look-up is the hottest read, and a statement
# built per request costs more CPU than the query itself (its cache key too is computed once).
# Each brings the matches' flags along (a round trip costs more than the rows it saves).
_BY_UPRN = _matching(Household.uprn_index == bindparam("index"))
_BY_ADDRESS = _matching(Household.postcode_line1_index == bindparam("index"))
_BY_NHS_NUMBER = _matching(_living_there(Person.nhs_number_index == bindparam("index")))
_BY_NAME_AND_BIRTH = _matching(_living_there(Person.name_dob_index == bindparam("index")))
_MEMBERS = (
    select(Person)
    .where(Person.household_id == bindparam("household_id"))
    .order_by(Person.created_at)
)


def list_members(household_id: str) -> list[Person]:
    """Return the household's members, in the order they were added."""
    return list(db.session.scalars(_MEMBERS, {"household_id": household_id}))


def get_member(household_id: str, member_id: str) -> Person:
    """Return a member of the household or raise NotFound."""
    person = db.session.get(Person, member_id)
    if person is None or person.household_id != household_id:
        raise NotFound("No such member of this household.")
    return person


def correct_member(person: Person, changes: dict[str, Any]) -> Person:
    """Correct a member's details; an NHS number must pass its check digit."""
    errors: dict[str, list[str]] = {}
    if changes.get("role") is not None and changes["role"] not in PERSON_ROLES:
        errors["role"] = [f"One of: {', '.join(PERSON_ROLES)}."]
    if changes.get("nhs_number") is not None:
        changes["nhs_number"] = _checked(
            errors, "nhs_number", normalise_nhs_number, changes["nhs_number"]
        )
    if errors:
        raise InvalidInput("The household member is not valid.", errors=errors)
    for name, value in changes.items():
        if name == "date_of_birth" and value is not None:
            value = value.isoformat()
        setattr(person, name, value)
    person.updated_at = utcnow()
    return person
