"""What auditors ask of the log: filtered entries, newest first, within what they may see."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select

from service.audit.chain import format_timestamp
from service.audit.unusual import HOUSEHOLD, Event, flag_unusual, is_auditors_own
from service.database import db
from service.involvements import involved, involved_households
from service.models.audit import AuditEntry, AuditRef
from service.models.warning import WarningMarker

WARNING = "warning"


def issued_by(agency_id: str) -> Select[str]:
    """The ids of the warnings an agency issued."""
    return select(WarningMarker.id).where(WarningMarker.issuing_agency_id == agency_id)


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


def _refers_to(ref_type: str, ref_id: str | None = None) -> ColumnElement[bool]:
    condition = exists().where(AuditRef.entry_seq == AuditEntry.seq, AuditRef.ref_type == ref_type)
    return condition if ref_id is None else condition.where(AuditRef.ref_id == ref_id)


def visible_to(agency_id: str) -> ColumnElement[bool]:
    """Entries an agency may audit: its own, and others' accesses to households it works with
    (or has worked with) and to warnings it issued.

    Other agencies' auditors' look-ups are not among them: an investigation must not be
    visible to the people it is about.
    """
    about_its_households = exists().where(
        AuditRef.entry_seq == AuditEntry.seq, AuditRef.ref_type == HOUSEHOLD,
        involved(agency_id, AuditRef.ref_id, ever=True),
    )  # fmt: skip
    about_its_warnings = exists().where(
        AuditRef.entry_seq == AuditEntry.seq, AuditRef.ref_type == WARNING,
        AuditRef.ref_id.in_(issued_by(agency_id)),
    )  # fmt: skip
    return or_(
        AuditEntry.agency_id == agency_id,
        and_(or_(about_its_households, about_its_warnings), AuditEntry.action.not_like("audit:%")),
    )


def _query(filters: EventFilter, viewer_agency: str | None) -> Select[AuditEntry]:
    query = select(AuditEntry)
    if viewer_agency is not None:
        query = query.where(visible_to(viewer_agency))
    if filters.household_id:
        query = query.where(_refers_to(HOUSEHOLD, filters.household_id))
    if filters.warning_id:
        query = query.where(_refers_to(WARNING, filters.warning_id))
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
            or_(_refers_to(HOUSEHOLD), AuditEntry.purpose == "emergency"),
            AuditEntry.outcome == "allowed",
        )
    if filters.exclude_audit_actions:
        query = query.where(AuditEntry.action.not_like("audit:%"))
    return query


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
    # With the unusual filter, candidates are scanned in pages until enough are flagged.
    for _ in range(20 if filters.unusual else 1):
        page_query = query if cursor is None else query.where(AuditEntry.seq < cursor)
        page = list(db.session.scalars(page_query.limit(page_size)))
        involved_in = _households_involved_in(page, viewer_agency)
        issued = _warnings_issued_in(page, viewer_agency)
        for event in flag_unusual(page, bulk_threshold):
            cursor = event.entry.seq
            if not _backed_by_chain(event.entry, filters, viewer_agency, involved_in | issued):
                continue
            if not filters.unusual or event.flags:
                found.append(event)
                if len(found) == limit:
                    return found, cursor
        if len(page) < page_size:
            return found, None
    return found, cursor


def _households_involved_in(page: list[AuditEntry], viewer: str | None) -> set[str]:
    if viewer is None:
        return set()
    named = {h for entry in page for h in entry.names(HOUSEHOLD)}
    return involved_households(viewer, named, ever=True)


def _warnings_issued_in(page: list[AuditEntry], viewer: str | None) -> set[str]:
    if viewer is None:
        return set()
    named = {w for entry in page for w in entry.names(WARNING)}
    if not named:
        return set()
    query = issued_by(viewer).where(WarningMarker.id.in_(named))
    return set(db.session.scalars(query))


def _backed_by_chain(
    entry: AuditEntry, filters: EventFilter, viewer: str | None, its_own: set[str]
) -> bool:
    """Check the hashed entry itself, not just the (unchained) reference index, says it matches.

    The index makes the query fast; a row slipped into it must not widen what an agency sees.
    ``its_own`` holds the ids of the viewer's households and warnings the page names.
    """
    named = entry.names(HOUSEHOLD)
    if filters.household_id and filters.household_id not in named:
        return False
    if filters.warning_id and filters.warning_id not in entry.names(WARNING):
        return False
    if viewer is None or entry.agency_id == viewer:
        return True
    about = named | entry.names(WARNING)
    return bool(about & its_own) and not is_auditors_own(entry)


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
