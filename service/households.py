"""Use cases for households and their members (storage and look-ups)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy import select

from service.crypto.normalise import (
    normalise_nhs_number,
    normalise_postcode,
    normalise_uprn,
)
from service.database import db
from service.errors import InvalidInput
from service.keys import active_keys
from service.models.household import PERSON_ROLES, Household, Person


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
    return list(db.session.scalars(select(Household).where(Household.uprn_index == index)))


def find_households_by_address(postcode: str, address_line1: str) -> list[Household]:
    """Return households at this postcode and first address line, however they were typed."""
    index = active_keys().indexer.postcode_address(postcode, address_line1)
    query = select(Household).where(Household.postcode_line1_index == index)
    return list(db.session.scalars(query))


def find_people_by_name_and_birth_date(family_name: str, date_of_birth: date) -> list[Person]:
    """Return people with this family name and date of birth."""
    index = active_keys().indexer.person(family_name, date_of_birth)
    return list(db.session.scalars(select(Person).where(Person.name_dob_index == index)))


def find_people_by_nhs_number(nhs_number: str) -> list[Person]:
    """Return people with this NHS number (which must pass its check digit)."""
    index = active_keys().indexer.nhs_number(nhs_number)
    return list(db.session.scalars(select(Person).where(Person.nhs_number_index == index)))
