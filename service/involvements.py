"""Use cases for involvements, and the need-to-know rule every access decision rests on."""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    SQLColumnExpression,
    and_,
    bindparam,
    exists,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from service.database import db, utcnow
from service.errors import Conflict, NotFound
from service.models.household import Household
from service.models.involvement import Involvement
from service.models.warning import WarningMarker
from service.notifications import involvement_added


def involved(
    agency_id: str | SQLColumnExpression[str],
    household_id: str | SQLColumnExpression[str],
    *,
    at: datetime | SQLColumnExpression[datetime] | None = None,
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
        conditions.append(Involvement.covering(utcnow() if at is None else at))
    # Never correlated to an involvement of the enclosing query (a briefing joins other
    # agencies' involvements beside this test of the caller's).
    return exists().where(*conditions).correlate_except(Involvement)


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


def household_access(
    agency_id: str | SQLColumnExpression[str],
    household_id: str | SQLColumnExpression[str],
    *,
    at: datetime | SQLColumnExpression[datetime] | None = None,
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Who may see a household's detail: an agency working with it now, or one that issued a
    warning about it (withdrawn ones aside). Two SQL conditions, for ``check_access``."""
    # Any of the household's warnings, whatever warning the enclosing query joins.
    issued = exists().where(
        WarningMarker.household_id == household_id,
        WarningMarker.issuing_agency_id == agency_id,
        WarningMarker.status != "entered-in-error",
    )
    issued = issued.correlate_except(WarningMarker)
    return involved(agency_id, household_id, at=at), issued


# The same answer for a household that does not exist and one the agency may not see.
NO_SUCH_HOUSEHOLD = "No such household among those your agency works with."


def check_access(involved_now: bool | None, issuer: bool | None) -> bool:
    """Raise NotFound unless the values of ``household_access`` let the agency see the
    household (so others learn nothing); return whether it works with the household now."""
    if not (involved_now or issuer):
        raise NotFound(NO_SUCH_HOUSEHOLD)
    return bool(involved_now)


def others_working_with(
    household_id: SQLColumnExpression[str], agency_id: SQLColumnExpression[str]
) -> ColumnElement[bool]:
    """SQL: an involvement with the household, of an agency other than ``agency_id``, not
    ended: who else to call."""
    return and_(
        Involvement.household_id == household_id,
        Involvement.agency_id != agency_id,
        Involvement.ended_at.is_(None),
    )


# Built once (their compiled forms and cache keys are reused): every detail read checks access.
_AGENCY: BindParameter[str] = bindparam("agency_id")
_HOUSEHOLD: BindParameter[str] = bindparam("household_id")
_NOW: BindParameter[datetime] = bindparam("now")
_ACCESS = select(*household_access(_AGENCY, _HOUSEHOLD, at=_NOW))
_ACCESSIBLE_HOUSEHOLD = select(Household, *household_access(_AGENCY, Household.id, at=_NOW)).where(
    Household.id == _HOUSEHOLD
)
_ACTIVE_INVOLVEMENT = select(Involvement).where(
    Involvement.agency_id == _AGENCY,
    Involvement.household_id == _HOUSEHOLD,
    Involvement.ended_at.is_(None),
)


def require_household_access(agency_id: str, household_id: str) -> bool:
    """Raise NotFound unless the agency may see the household's detail (so others learn
    nothing); return whether it works with the household now, decided in the same query."""
    parameters = {"agency_id": agency_id, "household_id": household_id, "now": utcnow()}
    involved_now, issuer = db.session.execute(_ACCESS, parameters).one()
    return check_access(involved_now, issuer)


def accessible_household(agency_id: str, household_id: str) -> tuple[Household, bool]:
    """Return the household if the agency may see its detail (NotFound otherwise, as for
    ``require_household_access``), and whether the agency works with it now: one query."""
    parameters = {"agency_id": agency_id, "household_id": household_id, "now": utcnow()}
    row = db.session.execute(_ACCESSIBLE_HOUSEHOLD, parameters).first()
    if row is None:
        raise NotFound(NO_SUCH_HOUSEHOLD)
    return row[0], check_access(row[1], row[2])


def active_involvement(agency_id: str, household_id: str) -> Involvement | None:
    """Return the agency's current involvement with the household, if any."""
    parameters = {"agency_id": agency_id, "household_id": household_id}
    return db.session.scalars(_ACTIVE_INVOLVEMENT, parameters).first()


def register_involvement(
    household: Household,
    agency_id: str,
    *,
    case_reference: str | None,
    lead_practitioner: str | None = None,
    lead_contact: str | None = None,
    contact_route: str | None = None,
) -> Involvement:
    """Record that ``agency_id`` is working with ``household``; one current involvement each."""
    current = active_involvement(agency_id, household.id)
    if current is not None:
        raise Conflict(
            f"Your agency already works with this household (involvement {current.id}).",
            errors={"household": ["Already involved; end that involvement first."]},
        )
    involvement = Involvement(
        household_id=household.id,
        agency_id=agency_id,
        case_reference=case_reference,
        lead_practitioner=lead_practitioner,
        lead_contact=lead_contact,
        contact_route=contact_route,
        started_at=utcnow(),
    )
    try:
        with db.session.begin_nested():  # a concurrent declaration loses here, not at commit
            db.session.add(involvement)
    except IntegrityError as error:
        raise Conflict("Your agency already works with this household.") from error
    involvement_added(household.id, agency_id)
    return involvement


def ensure_involved(household: Household, agency_id: str) -> None:
    """Register ``agency_id`` as working with ``household`` unless it already is (an agency
    publishing a warning about a household works with it).

    One statement, with no read before it and no savepoint: the unique index on current
    involvements decides (INSERT ... ON CONFLICT DO NOTHING), so an agency already involved, or
    registered by a concurrent request, is left as it is. The session is flushed first (a
    household new in this unit of work); the involvement is written by the statement, not
    added to the session.
    """
    involvement = Involvement(household_id=household.id, agency_id=agency_id, started_at=utcnow())
    db.session.flush()
    started = _start_unless_involved(db.session.get_bind().dialect.name)
    if db.session.connection().execute(started, involvement.stored_values()).first() is not None:
        involvement_added(household.id, agency_id)


@functools.cache
def _start_unless_involved(dialect: str) -> Insert:
    # Built once per dialect (compiled form and cache key reused), its
    # values bound per call; run on the connection, as a statement of its own, not the ORM's.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(Involvement)
        .on_conflict_do_nothing(
            index_elements=[Involvement.agency_id, Involvement.household_id],
            index_where=Involvement.ended_at.is_(None),
        )
        .returning(Involvement.id)
    )


def end_involvement(involvement_id: str, agency_id: str, reason: str) -> Involvement:
    """End the agency's own involvement; another agency's is not found."""
    involvement = db.session.get(Involvement, involvement_id)
    if involvement is None or involvement.agency_id != agency_id:
        raise NotFound("No such involvement of your agency.")
    if involvement.ended_at is not None:
        raise Conflict("This involvement has already ended.")
    involvement.ended_at = utcnow()
    involvement.ended_reason = reason
    return involvement


def list_involvements(agency_id: str, household_id: str | None = None) -> list[Involvement]:
    """Return the agency's own involvements, newest first, optionally with one household."""
    query = select(Involvement).where(Involvement.agency_id == agency_id)
    if household_id is not None:
        query = query.where(Involvement.household_id == household_id)
    return list(db.session.scalars(query.order_by(Involvement.started_at.desc()).limit(500)))
