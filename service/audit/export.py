"""Auditors' view of an entry, and its export as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from service.audit.chain import CHAINED_FIELDS
from service.audit.unusual import Event

# When and what first, then the other chained fields; the entry's hash and the flags last.
EVENT_FIELDS = (
    "seq",
    "occurred_at",
    *(name for name in CHAINED_FIELDS if name not in ("seq", "occurred_at")),
    "hash",
    "flags",
)
FORMATS = {"jsonl": "application/jsonl", "csv": "text/csv"}


def event_document(event: Event) -> dict[str, Any]:
    """Return an event as auditors see it: the chained fields, its hash and its flags."""
    document = {**event.entry.as_dict(), "hash": event.entry.hash.hex(), "flags": event.flags}
    return {name: document[name] for name in EVENT_FIELDS}


def export_lines(documents: Iterable[dict[str, Any]], format: str) -> Iterator[str]:
    """Yield event documents as JSON Lines, or as CSV with a header row."""
    if format == "jsonl":
        for document in documents:
            yield json.dumps(document) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EVENT_FIELDS)
    for document in documents:
        writer.writerow(
            [json.dumps(value) if isinstance(value, dict | list) else value
             for value in document.values()]
        )  # fmt: skip
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
