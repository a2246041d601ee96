"""The pre-visit briefing: everything a practitioner should know before knocking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    and_,
    bindparam,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased, joinedload, load_only
from sqlalchemy.sql.base import ExecutableOption

from service.database import db, utcnow
from service.errors import NotFound
from service.incidents import IncidentCounts, count_recent
from service.involvements import (
    NO_SUCH_HOUSEHOLD,
    check_access,
    household_access,
    others_working_with,
)
from service.models.agency import Agency
from service.models.household import Household, Person
from service.models.incident import Incident
from service.models.involvement import Involvement
from service.models.warning import WarningMarker, warning_incident
from service.vocabulary import strictest_first
from service.warnings import (
    HouseholdRecord,
    may_see_detail,
    readable_incidents,
    record_of,
    sides,
)


@dataclass(frozen=True)
class Briefing:
    household: Household
    members: list[Person]
    warnings: list[WarningMarker]  # active, and the caller may see their detail
    flagged: list[WarningMarker]  # active and restricted from the caller: risk and issuer only
    precautions: list[str]  # of the warnings above, strictest first
    other_agencies: list[Involvement]
    counts: IncidentCounts
    agencies: dict[str, Agency]  # every agency named above (issuers, other agencies), by id

    @property
    def children_present(self) -> bool:
        return any(member.role == "child" for member in self.members) or any(
            warning.children_in_household for warning in self.warnings
        )


def brief(household_id: str, agency_id: str, today: date) -> Briefing:
    """Compose the briefing for an agency involved with the household, or a warning's issuer."""
    people, record = _household_people_and_record(agency_id, household_id)
    warnings = [w for w in record.warnings if w.status == "active"]
    shown = [w for w in warnings if may_see_detail(w, agency_id, people.involved_now)]
    readable, withheld = readable_incidents(record, agency_id, people.involved_now)
    covered = {incident.id for warning in warnings for incident in warning.incidents}
    return Briefing(
        household=people.household,
        members=people.members,
        warnings=shown,
        flagged=[w for w in warnings if w not in shown],
        precautions=strictest_first({p for w in shown for p in w.precaution_list}),
        other_agencies=people.others,
        counts=count_recent(readable, withheld, {i.id for i in readable} - covered, today),
        agencies={**record.issuers, **people.agencies},
    )


@dataclass(frozen=True)
class _People:
    household: Household
    involved_now: bool  # the caller works with the household now
    members: list[Person]  # in the order they were added
    others: list[Involvement]  # other agencies' current involvements, oldest first
    agencies: dict[str, Agency]  # those agencies, by id


def _household_people_and_record(
    agency_id: str, household_id: str
) -> tuple[_People, HouseholdRecord]:
    """Read the household, whether the agency may see it (NotFound if not, as for
    ``accessible_household``), its members, who else works with it, and its warnings and
    incidents (``household_record``): one query."""
    parameters = {"agency_id": agency_id, "household_id": household_id, "now": utcnow()}
    rows = db.session.execute(_BRIEFING, parameters).unique().all()
    if not rows:
        raise NotFound(NO_SUCH_HOUSEHOLD)
    household, involved_now, issuer = rows[0][:3]
    may_see = check_access(involved_now, issuer)
    members = [row.Person for row in rows if row.Person is not None]
    others = [row.Involvement for row in rows if row.Involvement is not None]
    agencies = {row.Agency.id: row.Agency for row in rows if row.Agency is not None}
    record = record_of(
        (row.WarningMarker, row.issuer, row.Incident, row.warning_id) for row in rows
    )
    return _People(household, may_see, members, others, agencies), record


def _shown(model: Any, *columns: Any) -> ExecutableOption:
    # Load only these columns of the record, and the data key that opens its personal fields.
    # Another attribute read later in the request is loaded by a query of its own (so a
    # briefing that began to read one would show in tests/api/test_query_counts.py).
    return load_only(*columns, model.key_version, model.wrapped_key)


# Built once (compiled form and cache key reused): every briefing runs it. The household's
# row is repeated, once per side (``_SIDES``): members join the first copy, other agencies'
# current involvements (with their agencies) the second, the household's warnings (with their
# issuers and shares) the third, its incidents (with the warnings resting on them) the
# fourth. So the rows are members plus involvements plus warnings (one per share) plus
# incidents (one per warning resting on them), never their product (ten members and twelve
# agencies: 22 rows and ~0.6 ms of CPU, where their product, 120 rows, took ~2.5 ms), in one
# round trip: a statement costs more CPU than its rows. The caller's access is asked of the
# household id itself, once, and a caller refused it gets no rows (NotFound), nothing loaded.
(_MEMBERS, _OTHERS, _WARNINGS, _INCIDENTS), _SIDES = sides(4, "sides")
_SIDE = _SIDES.c.side
_AGENCY: BindParameter[str] = bindparam("agency_id")
_NOW: BindParameter[datetime] = bindparam("now")
_HOUSEHOLD_ID: BindParameter[str] = bindparam("household_id")
_ACCESS = household_access(_AGENCY, _HOUSEHOLD_ID, at=_NOW)
_ISSUER = aliased(Agency, name="issuer")
_BRIEFING = (
    select(Household, *_ACCESS, Person, Involvement, Agency, WarningMarker, _ISSUER, Incident,
           warning_incident.c.warning_id)
    .select_from(Household)
    .join(_SIDES, true())
    .outerjoin(Person, and_(_SIDE == _MEMBERS, Person.household_id == Household.id))
    .outerjoin(Involvement, and_(_SIDE == _OTHERS, others_working_with(Household.id, _AGENCY)))
    .outerjoin(Agency, Agency.id == Involvement.agency_id)
    .outerjoin(WarningMarker, and_(_SIDE == _WARNINGS, WarningMarker.household_id == Household.id))
    .outerjoin(_ISSUER, _ISSUER.id == WarningMarker.issuing_agency_id)
    .outerjoin(Incident, and_(_SIDE == _INCIDENTS, Incident.household_id == Household.id))
    .outerjoin(warning_incident, warning_incident.c.incident_id == Incident.id)
    .where(Household.id == _HOUSEHOLD_ID, or_(*_ACCESS))
    .order_by(_SIDE, Person.created_at, Person.id, Involvement.started_at, Involvement.id,
              WarningMarker.created_at, WarningMarker.id, Incident.occurred_on.desc(),
              Incident.id)
    # Only the columns the briefing shows (no blind indexes, no timestamps): each column
    # selected costs CPU in every briefing. A warning's few shares: joined, not a query.
    .options(
        joinedload(WarningMarker.shares),
        _shown(Household, Household.uprn_sealed, Household.address_line1_sealed,
               Household.address_line2_sealed, Household.town_sealed, Household.postcode_sealed),
        _shown(Person, Person.household_id, Person.role, Person.given_name_sealed,
               Person.family_name_sealed, Person.date_of_birth_sealed, Person.nhs_number_sealed,
               Person.relationship_sealed),
        _shown(Involvement, Involvement.agency_id, Involvement.lead_practitioner_sealed,
               Involvement.lead_contact_sealed, Involvement.contact_route_sealed),
        _shown(Agency, Agency.name, Agency.duty_contact_sealed),
        _shown(_ISSUER, _ISSUER.name, _ISSUER.duty_contact_sealed),
    )
)  # fmt: skip
