"""The pre-visit briefing: everything a practitioner should know before knocking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import BindParameter, and_, bindparam, or_, select, true

from service.database import db, utcnow
from service.errors import NotFound
from service.incidents import IncidentCounts, count_recent
from service.involvements import (
    NO_SUCH_HOUSEHOLD,
    check_access,
    household_access,
    others_working_with,
)
from service.models.agency import Agency, AgencyRow
from service.models.household import Household, HouseholdRow, Person, PersonRow
from service.models.incident import Incident
from service.models.involvement import Involvement, InvolvementRow
from service.models.warning import WarningMarker, WarningRow
from service.vocabulary import strictest_first
from service.warnings import (
    RECORD_COLUMNS,
    RECORD_ORDER,
    HouseholdRecord,
    column_slices,
    may_see_detail,
    readable_incidents,
    record_of,
    record_rows,
    sides,
    with_record,
)


@dataclass(frozen=True)
class Briefing:
    household: HouseholdRow
    members: list[PersonRow]
    warnings: list[WarningRow]  # active, and the caller may see their detail
    flagged: list[WarningRow]  # active and restricted from the caller: risk and issuer only
    precautions: list[str]  # of the warnings above, strictest first
    other_agencies: list[InvolvementRow]
    counts: IncidentCounts
    agencies: dict[str, AgencyRow]  # every agency named above (issuers, other agencies)

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
    household: HouseholdRow
    involved_now: bool  # the caller works with the household now
    members: list[PersonRow]  # in the order they were added
    others: list[InvolvementRow]  # other agencies' current involvements, oldest first
    agencies: dict[str, AgencyRow]  # those agencies, by id


def _household_people_and_record(
    agency_id: str, household_id: str
) -> tuple[_People, HouseholdRecord]:
    """Read the household, whether the agency may see it (NotFound if not, as for
    ``accessible_household``), its members, who else works with it, and its warnings and
    incidents (``household_record``): one query, plain rows."""
    parameters = {"agency_id": agency_id, "household_id": household_id, "now": utcnow()}
    rows = db.session.connection().execute(_BRIEFING, parameters).all()
    if not rows:
        raise NotFound(NO_SUCH_HOUSEHOLD)
    involved_now, issuer = rows[0][_ACCESS_AT]
    may_see = check_access(involved_now, issuer)
    members, others, agencies = [], [], {}
    for row in rows:
        if row[_MEMBER_AT.start] is not None:
            members.append(PersonRow(row[_MEMBER_AT]))
        elif row[_OTHER_AT.start] is not None:
            others.append(InvolvementRow(row[_OTHER_AT]))
            agency = AgencyRow(row[_AGENCY_AT])
            agencies[agency.id] = agency
    record = record_of(record_rows(rows))
    return _People(HouseholdRow(rows[0][_HOUSEHOLD_AT]), may_see, members, others, agencies), record


# Built once (compiled form and cache key reused): every briefing runs it. The household's
# row is repeated, once per side (``_SIDES``): members join the first copy, other agencies'
# current involvements (with their agencies) the second, the household's warnings (with their
# issuers) the third, its incidents (with the warnings resting on them) the fourth. So the
# rows are members plus involvements plus warnings plus incidents (one per warning resting on
# them), never their product (ten members and twelve agencies: 22 rows and ~0.6 ms of CPU,
# where their product, 120 rows, took ~2.5 ms), in one round trip: a statement costs more CPU
# than its rows. Plain columns, read into plain rows (``SealedRow``): ORM instances were the
# largest share of a briefing's CPU. Only the columns the briefing shows (no blind indexes,
# no household or member timestamps): each column selected costs CPU in every briefing. The
# caller's access is asked of the household id itself, once, and a caller refused it gets no
# rows (NotFound).
(_MEMBERS, _OTHERS, _WARNINGS, _INCIDENTS), _SIDES = sides(4, "sides")
_SIDE = _SIDES.c.side
_AGENCY: BindParameter[str] = bindparam("agency_id")
_NOW: BindParameter[datetime] = bindparam("now")
_HOUSEHOLD_ID: BindParameter[str] = bindparam("household_id")
_ACCESS = household_access(_AGENCY, _HOUSEHOLD_ID, at=_NOW)
_PARTS = (
    HouseholdRow.columns(Household), _ACCESS, PersonRow.columns(Person),
    InvolvementRow.columns(Involvement), AgencyRow.columns(Agency), RECORD_COLUMNS,
)  # fmt: skip
_HOUSEHOLD_AT, _ACCESS_AT, _MEMBER_AT, _OTHER_AT, _AGENCY_AT, _ = column_slices(_PARTS)
_BRIEFING = (
    with_record(
        select(*(column for part in _PARTS for column in part))
        .select_from(Household)
        .join(_SIDES, true())
        .outerjoin(Person, and_(_SIDE == _MEMBERS, Person.household_id == Household.id))
        .outerjoin(Involvement, and_(_SIDE == _OTHERS, others_working_with(Household.id, _AGENCY)))
        .outerjoin(Agency, Agency.id == Involvement.agency_id),
        and_(_SIDE == _WARNINGS, WarningMarker.household_id == Household.id),
        and_(_SIDE == _INCIDENTS, Incident.household_id == Household.id),
    )
    .where(Household.id == _HOUSEHOLD_ID, or_(*_ACCESS))
    .order_by(_SIDE, Person.created_at, Person.id, Involvement.started_at, Involvement.id,
              *RECORD_ORDER)
)  # fmt: skip
