"""Use cases for incidents: recording what happened, and counting what adds up."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

from service.database import db, utcnow
from service.errors import InvalidInput
from service.models.household import Household
from service.models.incident import Incident, IncidentRow
from service.notifications import incident_recorded
from service.vocabulary import (
    CATEGORIES,
    CUMULATIVE_AGENCIES,
    CUMULATIVE_INCIDENTS,
    LOW_LEVEL_CATEGORIES,
)


@dataclass(frozen=True)
class IncidentReport:
    """What a practitioner reports: when, what kind, what happened, and the police's part."""

    occurred_on: date
    categories: tuple[str, ...]
    summary: str
    description: str | None = None
    police_reported: bool = False
    crime_reference: str | None = None


def check_report(report: IncidentReport, today: date, prefix: str = "") -> dict[str, list[str]]:
    """Return what is wrong with ``report`` (field names under ``prefix``); empty when valid."""
    errors: dict[str, list[str]] = {}
    if report.occurred_on > today:
        errors[f"{prefix}occurred_on"] = ["Must not be in the future."]
    unknown = sorted(set(report.categories) - set(CATEGORIES))
    if unknown or not report.categories:
        errors[f"{prefix}categories"] = [f"Unknown: {unknown}" if unknown else "At least one."]
    if report.crime_reference and not report.police_reported:
        errors[f"{prefix}crime_reference"] = ["Only for an incident reported to the police."]
    return errors


def new_incident(
    household: Household, agency_id: str, report: IncidentReport, today: date
) -> Incident:
    """Return the incident the agency's practitioner suffered at the household, as a new
    record not yet written."""
    errors = check_report(report, today)
    if errors:
        raise InvalidInput("The incident is not valid.", errors=errors)
    return Incident(
        household_id=household.id,
        agency_id=agency_id,
        occurred_on=report.occurred_on,
        categories=" ".join(dict.fromkeys(report.categories)),
        police_reported=report.police_reported,
        summary=report.summary,
        description=report.description,
        crime_reference=report.crime_reference,
        recorded_at=utcnow(),
    )


def record_incident(
    household: Household, agency_id: str, report: IncidentReport, today: date
) -> Incident:
    """Record an incident the agency's practitioner suffered at the household."""
    incident = new_incident(household, agency_id, report, today)
    db.session.add(incident)
    return incident


def report_incident(
    household: Household, agency_id: str, report: IncidentReport, today: date
) -> Incident:
    """Record an incident reported on its own, and tell the other agencies working with the
    household. (Incidents reported with a warning are announced by the warning: one resting on
    a restricted warning must not reach agencies the warning is not shared with.)"""
    incident = record_incident(household, agency_id, report, today)
    incident_recorded(incident)
    return incident


@dataclass(frozen=True)
class IncidentCounts:
    """Twelve months of incidents across agencies, and whether low-level ones add up."""

    since: date
    by_category: dict[str, int]
    withheld: int  # incidents counted without their categories (restricted from the reader)
    agencies: int
    cumulative_prompt: bool


def count_recent(
    readable: list[IncidentRow], withheld: list[IncidentRow], uncovered: set[str], today: date
) -> IncidentCounts:
    """Count the last twelve months' incidents by category, across every agency.

    Incidents the reader may not read count without their categories. ``uncovered`` holds the
    ids of incidents no active warning rests on: when low-level ones among them come from
    enough agencies and are enough in number, the briefing prompts.
    """
    since = today - timedelta(days=365)
    recent = [i for i in readable if i.occurred_on >= since]
    hidden = [i for i in withheld if i.occurred_on >= since]
    by_category = Counter(c for incident in recent for c in incident.category_list)
    low_level = [
        i for i in recent
        if i.id in uncovered and LOW_LEVEL_CATEGORIES.intersection(i.category_list)
    ]  # fmt: skip
    prompt = (
        len(low_level) >= CUMULATIVE_INCIDENTS
        and len({i.agency_id for i in low_level}) >= CUMULATIVE_AGENCIES
    )
    agencies = len({i.agency_id for i in recent + hidden})
    return IncidentCounts(since, dict(sorted(by_category.items())), len(hidden), agencies, prompt)
