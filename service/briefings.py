"""The pre-visit briefing: everything a practitioner should know before knocking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from service.households import list_members
from service.incidents import IncidentCounts, count_recent
from service.involvements import accessible_household, other_involvements
from service.models.household import Household, Person
from service.models.involvement import Involvement
from service.models.warning import WarningMarker
from service.vocabulary import strictest_first
from service.warnings import household_record, may_see_detail, readable_incidents


@dataclass(frozen=True)
class Briefing:
    household: Household
    members: list[Person]
    warnings: list[WarningMarker]  # active, and the caller may see their detail
    flagged: list[WarningMarker]  # active and restricted from the caller: risk and issuer only
    precautions: list[str]  # of the warnings above, strictest first
    other_agencies: list[Involvement]
    counts: IncidentCounts

    @property
    def children_present(self) -> bool:
        return any(member.role == "child" for member in self.members) or any(
            warning.children_in_household for warning in self.warnings
        )


def brief(household_id: str, agency_id: str, today: date) -> Briefing:
    """Compose the briefing for an agency involved with the household, or a warning's issuer."""
    household, involved_now = accessible_household(agency_id, household_id)
    record = household_record(household_id)
    warnings = [w for w in record.warnings if w.status == "active"]
    shown = [w for w in warnings if may_see_detail(w, agency_id, involved_now)]
    readable, withheld = readable_incidents(record, agency_id, involved_now)
    covered = {incident.id for warning in warnings for incident in warning.incidents}
    return Briefing(
        household=household,
        members=list_members(household_id),
        warnings=shown,
        flagged=[w for w in warnings if w not in shown],
        precautions=strictest_first({p for w in shown for p in w.precaution_list}),
        other_agencies=other_involvements(household_id, agency_id),
        counts=count_recent(readable, withheld, {i.id for i in readable} - covered, today),
    )
