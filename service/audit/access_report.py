"""Access reports: everyone who accessed a household, by agency and practitioner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.audit.events import EventFilter, iter_events


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
