"""Unusual access: reads without involvement at the time, emergency reads, bulk browsing.

Flags rest on the hash-chained entries themselves, never on the unchained reference index
alone: a flag accuses someone, so it must rest on what verification protects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select

from service.audit.chain import format_timestamp
from service.database import db
from service.involvements import involvements_with
from service.models.audit import AuditEntry, AuditRef

HOUSEHOLD = "household"


@dataclass
class Event:
    """An audit entry as an auditor sees it, with any unusual-access flags."""

    entry: AuditEntry
    flags: list[str] = field(default_factory=list)


def is_auditors_own(entry: AuditEntry) -> bool:
    """Say whether the entry records an auditor's look-up (not a practitioner's access)."""
    return entry.action.startswith("audit:")


def parse_timestamp(occurred_at: str) -> datetime:
    """Parse an entry's canonical UTC timestamp."""
    return datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))


def flag_unusual(entries: list[AuditEntry], bulk_threshold: int) -> list[Event]:
    """Flag reads without involvement at the time, emergency reads and bulk browsing."""
    households_of = {e.seq: e.names(HOUSEHOLD) for e in entries if e.outcome == "allowed"}
    involvements = involvements_with({h for hs in households_of.values() for h in hs})
    browsing = _bulk_browsers([e for e in entries if households_of.get(e.seq)], bulk_threshold)
    events = []
    for entry in entries:
        flags = []
        households = households_of.get(entry.seq, set())
        if households and not is_auditors_own(entry):
            at = parse_timestamp(entry.occurred_at)
            covered = {
                i.household_id
                for i in involvements
                if i.agency_id == entry.agency_id and i.covers(at)
            }
            if households - covered:
                flags.append("no_involvement")
            if entry.seq in browsing:
                flags.append("bulk_browsing")
        if entry.purpose == "emergency" and entry.outcome == "allowed":
            flags.append("emergency")
        events.append(Event(entry, flags))
    return events


def _bulk_browsers(entries: list[AuditEntry], threshold: int) -> set[int]:
    """Return seqs of reads by a practitioner who read > threshold households in the hour to it."""
    people = {(e.agency_id, e.practitioner) for e in entries if e.practitioner}
    if not people:
        return set()
    times = [parse_timestamp(e.occurred_at) for e in entries]
    window_start = format_timestamp(min(times) - timedelta(hours=1))
    rows = db.session.execute(
        select(AuditEntry, AuditRef.ref_id)
        .join(AuditRef, AuditRef.entry_seq == AuditEntry.seq)
        .where(AuditRef.ref_type == HOUSEHOLD, AuditEntry.outcome == "allowed",
               AuditEntry.action.not_like("audit:%"),
               AuditEntry.occurred_at >= window_start,
               AuditEntry.occurred_at <= max(e.occurred_at for e in entries),
               or_(*(and_(AuditEntry.agency_id == a, AuditEntry.practitioner == p)
                     for a, p in people)))
    ).all()  # fmt: skip
    reads: dict[tuple[str | None, str | None], list[tuple[str, str]]] = defaultdict(list)
    for read, household_id in rows:
        if household_id in read.names(HOUSEHOLD):  # the index row is backed by the entry itself
            reads[(read.agency_id, read.practitioner)].append((read.occurred_at, household_id))
    flagged = set()
    for entry in entries:
        lower = format_timestamp(parse_timestamp(entry.occurred_at) - timedelta(hours=1))
        distinct = {h for t, h in reads[(entry.agency_id, entry.practitioner)]
                    if lower <= t <= entry.occurred_at}  # fmt: skip
        if len(distinct) > threshold:
            flagged.add(entry.seq)
    return flagged
