"""Database models, one aggregate per module."""

from service.models.agency import AGENCY_TYPES, Agency
from service.models.audit import AuditArchive, AuditCheckpoint, AuditEntry, AuditHead, AuditRef
from service.models.household import Household, Person
from service.models.involvement import Involvement
from service.models.oauth import OAuthClient, OAuthToken, UsedAssertion

__all__ = [
    "AGENCY_TYPES",
    "Agency",
    "AuditArchive",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditHead",
    "AuditRef",
    "Household",
    "Involvement",
    "OAuthClient",
    "OAuthToken",
    "Person",
    "UsedAssertion",
]
