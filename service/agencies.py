"""Use cases for agencies, the member organisations of the partnership."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select

from service.database import db, utcnow
from service.errors import Conflict, InvalidInput, NotFound
from service.models.agency import AGENCY_TYPES, SLUG_PATTERN, Agency, AgencyRow


def add_agency(slug: str, name: str, agency_type: str, duty_contact: str) -> Agency:
    """Register a member agency of the partnership."""
    errors: dict[str, list[str]] = {}
    if not SLUG_PATTERN.fullmatch(slug):
        errors["id"] = ["Lower-case letters, digits and hyphens, up to 47 characters."]
    if agency_type not in AGENCY_TYPES:
        errors["agency_type"] = [f"One of: {', '.join(AGENCY_TYPES)}."]
    if not name.strip():
        errors["name"] = ["Required."]
    if not duty_contact.strip():
        errors["duty_contact"] = ["Required: the duty desk other agencies should call."]
    if errors:
        raise InvalidInput("The agency is not valid.", errors=errors)
    if db.session.get(Agency, slug) is not None:
        raise Conflict(f"Agency {slug!r} already exists.")
    agency = Agency(
        id=slug, name=name.strip(), agency_type=agency_type, duty_contact=duty_contact.strip()
    )
    db.session.add(agency)
    return agency


def list_agencies(include_disabled: bool = False) -> list[Agency]:
    """Return the partnership's agencies, by name."""
    query = select(Agency).order_by(Agency.name)
    if not include_disabled:
        query = query.where(Agency.disabled_at.is_(None))
    return list(db.session.scalars(query))


def get_agency(slug: str) -> Agency:
    """Return the agency ``slug`` or raise NotFound."""
    agency = db.session.get(Agency, slug)
    if agency is None:
        raise NotFound(f"No agency {slug!r}.")
    return agency


def agencies_by_id(agency_ids: Iterable[str]) -> dict[str, AgencyRow]:
    """Return whom to call at the named agencies, by id, in one query."""
    wanted = set(agency_ids)
    if not wanted:
        return {}
    rows = db.session.execute(_AGENCIES_BY_ID, {"agency_ids": list(wanted)})
    return {agency.id: agency for agency in map(AgencyRow, rows)}


# Built once (compiled form and cache key reused): every warning's document names its issuer.
_AGENCIES_BY_ID = select(*AgencyRow.columns(Agency)).where(
    Agency.id.in_(bindparam("agency_ids", expanding=True))
)


def disable_agency(slug: str) -> Agency:
    """Disable an agency: its clients and live tokens stop working at once."""
    agency = get_agency(slug)
    agency.disabled_at = agency.disabled_at or utcnow()
    return agency
