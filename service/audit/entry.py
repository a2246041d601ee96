"""What one audited action did, gathered while it runs: the entry before the chain places it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from service.audit.chain import CHAINED_FIELDS

OUTCOMES = ("allowed", "denied", "failed")
# The chain gives these when the entry is appended; the action's own code sets the rest.
ASSIGNED_ON_APPEND = ("occurred_at", "seq")
RECORDED_FIELDS = tuple(name for name in CHAINED_FIELDS if name not in ASSIGNED_ON_APPEND)


def outcome_of(status: int) -> str:
    """Classify an HTTP status: only a success (2xx) is an allowed access."""
    if status < 300:
        return "allowed"
    return "denied" if status in (401, 403, 404) else "failed"


@dataclass
class PendingEntry:
    """The recorded fields of one audit entry (ids, never contents)."""

    action: str
    outcome: str = "allowed"
    status: int = 200
    agency_id: str | None = None
    client_id: str | None = None
    practitioner: str | None = None
    purpose: str | None = None
    request_id: str | None = None
    source_address: str | None = None
    kind: str = "entry"
    targets: dict[str, list[str]] = field(default_factory=dict)
    returned: dict[str, list[str]] = field(default_factory=dict)

    def target(self, ref_type: str, *ids: str) -> None:
        """Name records the action acted on (by id, never by content)."""
        known = self.targets.setdefault(ref_type, [])
        known.extend(i for i in ids if i not in known)

    def returning(self, ref_type: str, ids: list[str]) -> None:
        """Name every record the response returns."""
        known = self.returned.setdefault(ref_type, [])
        known.extend(i for i in ids if i not in known)

    def recorded(self) -> dict[str, Any]:
        """Return the recorded fields by name (the chained ones but seq and occurred_at)."""
        return {name: getattr(self, name) for name in RECORDED_FIELDS}


if {f.name for f in fields(PendingEntry)} != set(RECORDED_FIELDS):
    raise TypeError("PendingEntry must carry exactly the chained fields set before append")
