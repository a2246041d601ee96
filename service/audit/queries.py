"""What auditors ask of the log: filtered events, access reports, unusual access."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select

from service.audit.chain import format_timestamp
from service.database import db
from service.models.audit import AuditEntry, AuditRef
from service.models.household import Involvement

HOUSEHOLD = "household"


@dataclass(frozen=True)
class EventFilter:
    """Auditor's filters; every one optional. ``since``/``until`` are aware datetimes."""

    household_id: str | None = None
    warning_id: str | None = None
    agency_id: str | None = None
    practitioner: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unusual: bool = False
    # Access reports are about practitioners' access, not auditors' own look-ups.
    exclude_audit_actions: bool = False


@dataclass
class Event:
    """An audit entry as an auditor sees it, with any unusual-access flags."""

    entry: AuditEntry
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "seq": e.seq, "occurred_at": e.occurred_at, "action": e.action,
            "outcome": e.outcome, "status": e.status, "agency_id": e.agency_id,
            "client_id": e.client_id, "practitioner": e.practitioner, "purpose": e.purpose,
            "request_id": e.request_id, "source_address": e.source_address,
            "targets": json.loads(e.targets), "returned": json.loads(e.returned),
            "hash": e.hash.hex(), "flags": self.flags,
        }  # fmt: skip


def _refers_to(ref_type: str, ref_id: str) -> ColumnElement[bool]:
    return exists().where(
        AuditRef.entry_seq == AuditEntry.seq, AuditRef.ref_type == ref_type,
        AuditRef.ref_id == ref_id,
    )  # fmt: skip


def visible_to(agency_id: str) -> ColumnElement[bool]:
    """Entries an agency may audit: its own, and others' reads of households it works with.

    Other agencies' auditors' look-ups are not among them: an investigation must not be
    visible to the people it is about.
    """
    involved = select(Involvement.household_id).where(Involvement.agency_id == agency_id)
    about_its_households = exists().where(
        AuditRef.entry_seq == AuditEntry.seq, AuditRef.ref_type == HOUSEHOLD,
        AuditRef.ref_id.in_(involved),
    )  # fmt: skip
    return or_(
        AuditEntry.agency_id == agency_id,
        and_(about_its_households, AuditEntry.action.not_like("audit:%")),
    )


def _query(filters: EventFilter, viewer_agency: str | None) -> Select[AuditEntry]:
    query = select(AuditEntry)
    if viewer_agency is not None:
        query = query.where(visible_to(viewer_agency))
    if filters.household_id:
        query = query.where(_refers_to(HOUSEHOLD, filters.household_id))
    if filters.warning_id:
        query = query.where(_refers_to("warning", filters.warning_id))
    for column, value in (
        (AuditEntry.agency_id, filters.agency_id), (AuditEntry.practitioner, filters.practitioner),
        (AuditEntry.action, filters.action), (AuditEntry.outcome, filters.outcome),
    ):  # fmt: skip
        if value:
            query = query.where(column == value)
    if filters.since:
        query = query.where(AuditEntry.occurred_at >= format_timestamp(filters.since))
    if filters.until:
        query = query.where(AuditEntry.occurred_at < format_timestamp(filters.until))
    if filters.unusual:
        query = query.where(
            or_(_refers_to_any(HOUSEHOLD), AuditEntry.purpose == "emergency"),
            AuditEntry.outcome == "allowed",
        )
    if filters.exclude_audit_actions:
        query = query.where(AuditEntry.action.not_like("audit:%"))
    return query


def _refers_to_any(ref_type: str) -> ColumnElement[bool]:
    return exists().where(AuditRef.entry_seq == AuditEntry.seq, AuditRef.ref_type == ref_type)


def find_events(
    filters: EventFilter,
    viewer_agency: str | None,
    *,
    before_seq: int | None = None,
    limit: int = 100,
    bulk_threshold: int = 20,
) -> tuple[list[Event], int | None]:
    """Return up to ``limit`` events, newest first, and the cursor for the next page."""
    query = _query(filters, viewer_agency).order_by(AuditEntry.seq.desc())
    page_size = 500 if filters.unusual else limit
    found: list[Event] = []
    cursor = before_seq
    involved = _involved_households(viewer_agency) if viewer_agency is not None else set()
    # With the unusual filter, candidates are scanned in pages until enough are flagged.
    for _ in range(20 if filters.unusual else 1):
        page_query = query if cursor is None else query.where(AuditEntry.seq < cursor)
        page = list(db.session.scalars(page_query.limit(page_size)))
        for event in flag_unusual(page, bulk_threshold):
            cursor = event.entry.seq
            if not _backed_by_chain(event.entry, filters, viewer_agency, involved):
                continue
            if not filters.unusual or event.flags:
                found.append(event)
                if len(found) == limit:
                    return found, cursor
        if len(page) < page_size:
            return found, None
    return found, cursor


def _involved_households(agency_id: str) -> set[str]:
    query = select(Involvement.household_id).where(Involvement.agency_id == agency_id)
    return set(db.session.scalars(query))


def _backed_by_chain(
    entry: AuditEntry, filters: EventFilter, viewer: str | None, involved: set[str]
) -> bool:
    """Check the hashed entry itself, not just the (unchained) reference index, says it matches.

    The index makes the query fast; a row slipped into it must not widen what an agency sees.
    """
    named = _named(entry, HOUSEHOLD)
    if filters.household_id and filters.household_id not in named:
        return False
    if filters.warning_id and filters.warning_id not in _named(entry, "warning"):
        return False
    if viewer is None or entry.agency_id == viewer:
        return True
    return bool(named & involved) and not entry.action.startswith("audit:")


def _named(entry: AuditEntry | Any, ref_type: str) -> set[str]:
    """Return the ids of ``ref_type`` the (hash-chained) entry itself names."""
    targets, returned = json.loads(entry.targets), json.loads(entry.returned)
    return set(targets.get(ref_type, [])) | set(returned.get(ref_type, []))


def iter_events(
    filters: EventFilter, viewer_agency: str | None, bulk_threshold: int = 20
) -> Iterator[Event]:
    """Yield every matching event, newest first, in batches (for exports and reports)."""
    cursor: int | None = None
    while True:
        events, cursor = find_events(
            filters, viewer_agency, before_seq=cursor, limit=500, bulk_threshold=bulk_threshold
        )
        yield from events
        if cursor is None:
            return


def _parse(occurred_at: str) -> datetime:
    return datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))


def flag_unusual(entries: list[AuditEntry], bulk_threshold: int) -> list[Event]:
    """Flag reads without involvement at the time, emergency reads and bulk browsing."""
    # From the chained entries themselves, never from the unchained reference index alone:
    # a flag accuses someone, so it must rest on what verification protects.
    households_of = {e.seq: _named(e, HOUSEHOLD) for e in entries if e.outcome == "allowed"}
    involved = _involvements({h for hs in households_of.values() for h in hs})
    browsing = _bulk_browsers([e for e in entries if households_of.get(e.seq)], bulk_threshold)
    events = []
    for entry in entries:
        flags = []
        households = households_of.get(entry.seq, set())
        if households and not entry.action.startswith("audit:"):
            at = _parse(entry.occurred_at)
            if any(not _was_involved(involved, entry.agency_id, h, at) for h in households):
                flags.append("no_involvement")
            if entry.seq in browsing:
                flags.append("bulk_browsing")
        if entry.purpose == "emergency" and entry.outcome == "allowed":
            flags.append("emergency")
        events.append(Event(entry, flags))
    return events


def _involvements(
    household_ids: set[str],
) -> dict[tuple[str, str], list[tuple[datetime, datetime | None]]]:
    spans: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    if household_ids:
        rows = db.session.execute(
            select(Involvement.agency_id, Involvement.household_id, Involvement.started_at,
                   Involvement.ended_at).where(Involvement.household_id.in_(household_ids))
        )  # fmt: skip
        for agency_id, household_id, started, ended in rows:
            spans[(agency_id, household_id)].append((started, ended))
    return spans


def _was_involved(
    spans: dict[tuple[str, str], list[tuple[datetime, datetime | None]]],
    agency_id: str | None,
    household_id: str,
    at: datetime,
) -> bool:
    return any(
        start <= at and (end is None or at < end)
        for start, end in spans.get((agency_id or "", household_id), ())
    )


def _bulk_browsers(entries: list[AuditEntry], threshold: int) -> set[int]:
    """Return seqs of reads by a practitioner who read > threshold households in the hour to it."""
    people = {(e.agency_id, e.practitioner) for e in entries if e.practitioner}
    if not people:
        return set()
    times = [_parse(e.occurred_at) for e in entries]
    window_start = format_timestamp(min(times) - timedelta(hours=1))
    rows = db.session.execute(
        select(AuditEntry.agency_id, AuditEntry.practitioner, AuditEntry.occurred_at,
               AuditRef.ref_id, AuditEntry.targets, AuditEntry.returned)
        .join(AuditRef, AuditRef.entry_seq == AuditEntry.seq)
        .where(AuditRef.ref_type == HOUSEHOLD, AuditEntry.outcome == "allowed",
               AuditEntry.action.not_like("audit:%"),
               AuditEntry.occurred_at >= window_start,
               AuditEntry.occurred_at <= max(e.occurred_at for e in entries),
               or_(*(and_(AuditEntry.agency_id == a, AuditEntry.practitioner == p)
                     for a, p in people)))
    ).all()  # fmt: skip
    reads: dict[tuple[str | None, str | None], list[tuple[str, str]]] = defaultdict(list)
    for agency_id, practitioner, occurred_at, household_id, targets, returned in rows:
        chained = json.loads(targets).get(HOUSEHOLD, []) + json.loads(returned).get(HOUSEHOLD, [])
        if household_id in chained:  # the index row is backed by the entry itself
            reads[(agency_id, practitioner)].append((occurred_at, household_id))
    flagged = set()
    for entry in entries:
        lower = format_timestamp(_parse(entry.occurred_at) - timedelta(hours=1))
        distinct = {h for t, h in reads[(entry.agency_id, entry.practitioner)]
                    if lower <= t <= entry.occurred_at}  # fmt: skip
        if len(distinct) > threshold:
            flagged.add(entry.seq)
    return flagged


@dataclass
class AccessLine:
    """Who (agency, practitioner) accessed a household: when, why, how often."""

    agency_id: str | None
    practitioner: str | None
    purposes: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)
    first: str = ""
    last: str = ""
    count: int = 0
    flags: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agency_id": self.agency_id, "practitioner": self.practitioner,
            "purposes": sorted(self.purposes), "actions": sorted(self.actions),
            "first_access": self.first, "last_access": self.last, "accesses": self.count,
            "flags": sorted(self.flags),
        }  # fmt: skip


def access_report(
    household_id: str, bulk_threshold: int = 20
) -> tuple[list[AccessLine], list[int]]:
    """Group every allowed access to a household by agency and practitioner.

    Returns the lines and the seqs of the entries they summarise (for the report's own entry).
    """
    filters = EventFilter(household_id=household_id, outcome="allowed", exclude_audit_actions=True)
    lines: dict[tuple[str | None, str | None], AccessLine] = {}
    seqs: list[int] = []
    for event in iter_events(filters, None, bulk_threshold):
        e = event.entry
        seqs.append(e.seq)
        line = lines.setdefault(
            (e.agency_id, e.practitioner), AccessLine(e.agency_id, e.practitioner)
        )
        line.count += 1
        line.actions.add(e.action)
        if e.purpose:
            line.purposes.add(e.purpose)
        line.first = min(line.first or e.occurred_at, e.occurred_at)
        line.last = max(line.last, e.occurred_at)
        line.flags.update(event.flags)
    return sorted(lines.values(), key=lambda line: line.last, reverse=True), seqs
