"""Who is asking and why: the request context every use case receives."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

PURPOSES_OF_USE = ("pre_visit", "case_work", "safeguarding_enquiry", "emergency", "audit")
PRACTITIONER_REF_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}")
# Ids of our records (UUIDs, slugs, client ids): anything else in a path is not one of ours.
RECORD_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated agency client acting for a practitioner, for a purpose of use."""

    agency_id: str
    client_id: str
    scopes: frozenset[str]
    practitioner: str | None
    purpose: str | None
    request_id: str
    source_address: str | None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@functools.lru_cache(maxsize=1024)
def recordable_address(raw: str | None) -> str | None:
    """Return the client's IP address in canonical form, or None if it is not one.

    Behind trusted proxies the address comes from a header; it goes into the hash-chained
    audit log, so only a well-formed address may. (Remembered: most requests come from the
    few addresses of the partners' case systems and gateways.)
    """
    try:
        return str(ipaddress.ip_address(raw or ""))
    except ValueError:
        return None


def practitioner_errors(value: str | None) -> list[str]:
    """Return what is wrong with an acting-practitioner reference (empty when valid)."""
    if not value:
        return ["Missing. Send the acting practitioner's reference from your case system."]
    if not PRACTITIONER_REF_PATTERN.fullmatch(value):
        return ["Must be 1-64 characters: letters, digits and . _ : @ / -, starting alphanumeric."]
    return []


def purpose_errors(value: str | None) -> list[str]:
    """Return what is wrong with a purpose of use (empty when valid)."""
    if not value:
        return [f"Missing. One of: {', '.join(PURPOSES_OF_USE)}."]
    if value not in PURPOSES_OF_USE:
        return [f"Unknown purpose of use. One of: {', '.join(PURPOSES_OF_USE)}."]
    return []
