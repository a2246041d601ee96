"""Summary entries: the refusals over a rate limit, one entry per source and window.

The log stays complete in count without growing with a flood: each closed window of a
source's refusals (``refusal_tally``) becomes one entry, ``kind`` ``summary``, action
``request:rate-limited``, status 429, naming the client (when the limit was a client's) or
the address, the first refused request's id, and in its targets the number of refusals and
the times of the first and last (ids, never contents, like every entry). Written by whichever
process next notices a closed window: a later request (a few per request), the delivery
worker's loop (counts in Redis only: it cannot see a server's memory), or a process writing
its in-memory counts as it exits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from service.audit.append import append
from service.audit.entry import PendingEntry, outcome_of
from service.audit.refusal_tally import RefusalTally, RefusalWindow
from service.database import db, utcnow
from service.models.audit import AuditRef
from service.unit_of_work import unit_of_work

# Where an app keeps the tally the worker's loop writes from (``app.extensions``): a shared one
# (Redis), or None when counts live in each server's memory, which no worker can see.
TALLY_EXTENSION = "alertshare.refusal_tally"
RATE_LIMITED_ACTION = "request:rate-limited"
SUMMARY_KIND = "summary"
REFUSED_STATUS = 429
# The targets of a summary entry.
SUMMARY_ID, REFUSALS, FIRST_AT, LAST_AT = (
    "refusal_summary", "refusals", "first_refusal_at", "last_refusal_at",
)  # fmt: skip


def summary_entry(window: RefusalWindow) -> PendingEntry:
    """Return the audit entry that records the refusals counted in ``window``."""
    refusal = window.refusal
    entry = PendingEntry(
        action=RATE_LIMITED_ACTION, kind=SUMMARY_KIND, status=REFUSED_STATUS,
        outcome=outcome_of(REFUSED_STATUS), agency_id=refusal.agency_id,
        client_id=refusal.client_id, request_id=refusal.request_id,
        source_address=refusal.address,
    )  # fmt: skip
    entry.target(SUMMARY_ID, window.summary_id)
    entry.target(REFUSALS, str(window.count))
    entry.target(FIRST_AT, window.first)
    entry.target(LAST_AT, window.last)
    return entry


def refusals_in(entry: Mapping[str, Any]) -> int:
    """Return how many requests an audit entry (as the auditors' API shows it) stands for."""
    if entry.get("kind") == SUMMARY_KIND and entry.get("action") == RATE_LIMITED_ACTION:
        return int(entry["targets"][REFUSALS][0])
    return 1


def write_closed_windows(
    tally: RefusalTally | None, now: datetime | None = None, limit: int = 100
) -> int:
    """Append one summary entry for each window of refusals closed by ``now``, each in its own
    unit of work; return how many refusals they record.

    A window whose entry cannot be written is given back, for the next call to try again.
    """
    if tally is None:
        return 0
    now = now or utcnow()
    recorded = 0
    for key in tally.closed(now, limit):
        window = tally.claim(key, now)
        if window is None:
            continue  # another writer has it
        try:
            with unit_of_work():
                if not _written(window.summary_id):
                    append(summary_entry(window))
        except BaseException:
            tally.release(key)
            raise
        tally.complete(key)
        recorded += window.count
    return recorded


def _written(summary_id: str) -> bool:
    # A writer that died between its commit and completing the window leaves it to be claimed
    # again: its entry is found by the summary's id (indexed, as every target is).
    query = select(AuditRef.entry_seq).where(
        AuditRef.ref_type == SUMMARY_ID, AuditRef.ref_id == summary_id
    )
    return db.session.scalar(query.limit(1)) is not None
