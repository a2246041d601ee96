"""The JSON documents the API returns, made from records (opened here, in the HTTP layer)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from marshmallow import Schema

from service.agencies import agencies_by_id
from service.briefings import Briefing
from service.models.agency import AgencyRow
from service.models.household import Household, HouseholdRow, Person, PersonRow
from service.models.incident import Incident, IncidentRow
from service.models.involvement import Involvement
from service.models.notification import Delivery, Webhook
from service.models.warning import WarningMarker, WarningRow, WarningVersion
from service.notifications import FeedItem, payload
from service.vocabulary import CHILDREN_PROMPT, CUMULATIVE_PROMPT, PRE_VISIT_QUESTIONS, PRECAUTIONS
from service.warnings import Flag, members_of


@dataclass(frozen=True)
class Names:
    """The agencies and household members a response names, each loaded once for it (the
    session's identity map holds records only while something refers to them)."""

    agencies: dict[str, AgencyRow]
    members: dict[str, Person] | dict[str, PersonRow]

    def issuer(self, agency_id: str) -> dict[str, Any]:
        return issuer(self.agencies[agency_id])


def names_for(warnings: Iterable[WarningMarker | WarningRow]) -> Names:
    """Load what the documents of these warnings will name."""
    warnings = list(warnings)
    agencies = agencies_by_id({w.issuing_agency_id for w in warnings})
    naming_members = {
        w.household_id for w in warnings if '"member_id"' in (w.persons_of_concern or "")
    }
    return Names(agencies, members_of(naming_members))


def issuer(agency: AgencyRow) -> dict[str, Any]:
    return {"agency_id": agency.id, "name": agency.name, "duty_contact": agency.duty_contact}


def flag(value: Flag) -> dict[str, Any]:
    return {
        "active_warnings": value.active_warnings,
        "risk_level": value.risk_level,
        "categories": sorted(value.categories),
        "precautions": [p for p in PRECAUTIONS if p in value.precautions],
        "review_overdue": value.review_overdue,
        "issuers": [issuer(agency) for agency in value.issuers.values()],
    }


def household(record: Household | HouseholdRow) -> dict[str, Any]:
    return {
        "id": record.id,
        "uprn": record.uprn,
        "address": {"line1": record.address_line1, "line2": record.address_line2,
                    "town": record.town, "postcode": record.postcode},
    }  # fmt: skip


def member(person: Person | PersonRow) -> dict[str, Any]:
    return {
        "id": person.id, "given_name": person.given_name, "family_name": person.family_name,
        "date_of_birth": date.fromisoformat(person.date_of_birth) if person.date_of_birth else None,
        "role": person.role,
        "relationship": person.relationship, "nhs_number": person.nhs_number,
    }  # fmt: skip


def involvement(record: Involvement) -> dict[str, Any]:
    return {
        "id": record.id, "household_id": record.household_id, "agency_id": record.agency_id,
        "case_reference": record.case_reference,
        "lead_practitioner": {"name": record.lead_practitioner, "contact": record.lead_contact},
        "contact_route": record.contact_route, "started_at": record.started_at,
        "ended_at": record.ended_at, "ended_reason": record.ended_reason,
    }  # fmt: skip


def incident(record: Incident | IncidentRow) -> dict[str, Any]:
    return {
        "id": record.id, "household_id": record.household_id, "agency_id": record.agency_id,
        "occurred_on": record.occurred_on, "categories": record.category_list,
        "summary": record.summary, "description": record.description,
        "police_reported": record.police_reported, "crime_reference": record.crime_reference,
        "recorded_at": record.recorded_at,
    }  # fmt: skip


def _persons_of_concern(record: WarningMarker | WarningRow, names: Names) -> list[dict[str, Any]]:
    people = []
    for person in json.loads(record.persons_of_concern or "[]"):
        known = names.members.get(person.get("member_id", ""))
        people.append({
            "member_id": person.get("member_id"),
            "given_name": known.given_name if known else person.get("given_name"),
            "family_name": known.family_name if known else person.get("family_name"),
        })  # fmt: skip
    return people


def warning(
    record: WarningMarker | WarningRow, today: date, names: Names | None = None
) -> dict[str, Any]:
    names = names or names_for([record])
    return {
        "id": record.id, "household_id": record.household_id,
        "issuing_agency": names.issuer(record.issuing_agency_id),
        "status": record.status, "version": record.version, "risk_level": record.risk_level,
        "categories": record.category_list, "precautions": record.precaution_list,
        "persons_of_concern": _persons_of_concern(record, names), "handling": record.handling,
        "shared_with": record.shared_with,
        "children_in_household": record.children_in_household,
        "subject_informed": {
            "informed": record.subject_informed, "informed_on": record.informed_on,
            "reason_withheld": record.reason_withheld, "recheck_on": record.recheck_on,
        },
        "review_by": record.review_by,
        "review_overdue": record.status == "active" and record.review_by < today,
        "status_reason": record.status_reason,
        "incidents": [incident(i) for i in record.incidents],
        "created_at": record.created_at, "updated_at": record.updated_at,
    }  # fmt: skip


def warning_version(record: WarningVersion) -> dict[str, Any]:
    return {
        "version": record.version, "change": record.change, "changed_by": record.changed_by,
        "changed_at": record.changed_at, "warning": json.loads(record.snapshot),
    }  # fmt: skip


def warnings(records: list[WarningMarker], today: date) -> list[dict[str, Any]]:
    names = names_for(records)
    return [warning(record, today, names) for record in records]


def briefing(value: Briefing, today: date) -> dict[str, Any]:
    # The briefing loaded every agency and member it names with the rows that name them.
    names = Names(value.agencies, {person.id: person for person in value.members})
    return {
        "household": household(value.household),
        "members": [{**member(p), "is_child": p.role == "child"} for p in value.members],
        "children_prompt": CHILDREN_PROMPT if value.children_present else None,
        "warnings": [warning(w, today, names) for w in value.warnings],
        "restricted_warnings": [
            {"risk_level": w.risk_level, "issuing_agency": names.issuer(w.issuing_agency_id),
             "review_overdue": w.review_by < today}
            for w in value.flagged
        ],  # fmt: skip
        "precautions": [{"code": p, "advice": PRECAUTIONS[p]} for p in value.precautions],
        "other_agencies": [
            {"agency": names.issuer(i.agency_id), "lead_practitioner": i.lead_practitioner,
             "lead_contact": i.lead_contact, "contact_route": i.contact_route}
            for i in value.other_agencies
        ],  # fmt: skip
        "checklist": list(PRE_VISIT_QUESTIONS),
        "incidents_last_12_months": {
            "since": value.counts.since, "agencies": value.counts.agencies,
            "by_category": value.counts.by_category, "withheld": value.counts.withheld,
            "cumulative_prompt": CUMULATIVE_PROMPT if value.counts.cumulative_prompt else None,
        },
    }  # fmt: skip


def notification(item: FeedItem) -> dict[str, Any]:
    ack = item.acknowledgement
    return {
        **payload(item.notification, item.case_reference),
        "acknowledged": {"practitioner": ack.practitioner, "at": ack.acknowledged_at}
        if ack is not None else None,
    }  # fmt: skip


def webhook(record: Webhook) -> dict[str, Any]:
    return {
        "id": record.id, "url": record.url, "event_types": record.event_types.split(),
        "created_at": record.created_at, "disabled_at": record.disabled_at,
        "disabled_reason": record.disabled_reason,
        "previous_secret_until": record.previous_secret_until,
    }  # fmt: skip


def delivery(record: Delivery, event_type: str) -> dict[str, Any]:
    return {
        "id": record.id, "notification_id": record.notification_id, "event_type": event_type,
        "status": record.status, "attempts": record.attempts, "created_at": record.created_at,
        "next_attempt_at": record.next_attempt_at if record.status == "pending" else None,
        "last_status": record.last_status, "last_error": record.last_error,
        "finished_at": record.finished_at,
    }  # fmt: skip


def dump(schema: type[Schema], document: Any) -> dict[str, Any]:
    """Serialise a document with its schema (dates as ISO 8601, nothing the schema lacks)."""
    body: dict[str, Any] = _instance(schema).dump(document)
    return body


def load(schema: type[Schema], data: Any) -> Any:
    """Validate and deserialise a request body or query with its schema (problems on failure)."""
    return _instance(schema).load(data)


@functools.cache
def _instance(schema: type[Schema]) -> Schema:
    # Building a schema binds every field (a measurable share of a look-up); loading and dumping
    # keep no state on the instance, so one per schema class serves every request.
    return schema()
