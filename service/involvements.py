"""Use cases for involvements, and the need-to-know rule every access decision rests on."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, exists, select

from service.database import db, utcnow
from service.models.household import Household
from service.models.involvement import Involvement


def involved(
    agency_id: str | SQLColumnExpression[str],
    household_id: str | SQLColumnExpression[str],
    *,
    at: datetime | None = None,
    ever: bool = False,
) -> ColumnElement[bool]:
    """The need-to-know rule: ``agency_id`` works with the household (now, at ``at``, or ever).

    A SQL condition, so that callers filter with it inside their own queries; ``is_involved``
    and ``involved_households`` answer it directly.
    """
    conditions: list[ColumnElement[bool]] = [
        Involvement.agency_id == agency_id,
        Involvement.household_id == household_id,
    ]
    if not ever:
        conditions.append(Involvement.covering(at or utcnow()))
    return exists().where(*conditions)


def is_involved(
    agency_id: str, household_id: str, *, at: datetime | None = None, ever: bool = False
) -> bool:
    """Say whether ``agency_id`` works with ``household_id`` (now, at ``at``, or ever)."""
    return db.session.scalar(select(involved(agency_id, household_id, at=at, ever=ever))) is True


def involved_households(
    agency_id: str, household_ids: Collection[str], *, ever: bool = False
) -> set[str]:
    """Return which of ``household_ids`` the agency works with (now, or ever)."""
    if not household_ids:
        return set()
    query = select(Household.id).where(
        Household.id.in_(household_ids), involved(agency_id, Household.id, ever=ever)
    )
    return set(db.session.scalars(query))


def involvements_with(household_ids: Collection[str]) -> list[Involvement]:
    """Return every involvement, past and present, with any of ``household_ids``.

    For judging many past accesses at once: ``involvement.covers(moment)`` applies the rule's
    clock to each without a query per access.
    """
    if not household_ids:
        return []
    query = select(Involvement).where(Involvement.household_id.in_(household_ids))
    return list(db.session.scalars(query))


def register_involvement(
    household: Household,
    agency_id: str,
    *,
    case_reference: str,
    lead_practitioner: str | None = None,
    contact_route: str | None = None,
) -> Involvement:
    """Record that ``agency_id`` is working with ``household``."""
    involvement = Involvement(
        household_id=household.id,
        agency_id=agency_id,
        case_reference=case_reference,
        lead_practitioner=lead_practitioner,
        contact_route=contact_route,
    )
    db.session.add(involvement)
    return involvement
