"""Database models, one aggregate per module."""

from service.models.agency import AGENCY_TYPES, Agency
from service.models.audit import AuditArchive, AuditCheckpoint, AuditEntry, AuditHead, AuditRef
from service.models.household import Household, Person
from service.models.incident import Incident
from service.models.involvement import Involvement
from service.models.notification import (
    Acknowledgement,
    AgencyNotificationSettings,
    Delivery,
    Notification,
    Webhook,
)
from service.models.oauth import OAuthClient, OAuthToken, UsedAssertion
from service.models.warning import WarningMarker, WarningShare, WarningVersion

__all__ = [
    "AGENCY_TYPES",
    "Acknowledgement",
    "Agency",
    "AuditArchive",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditHead",
    "AuditRef",
    "Delivery",
    "AgencyNotificationSettings",
    "Household",
    "Incident",
    "Involvement",
    "Notification",
    "OAuthClient",
    "OAuthToken",
    "Person",
    "UsedAssertion",
    "Webhook",
    "WarningMarker",
    "WarningShare",
    "WarningVersion",
]
