"""Database models, one aggregate per module."""

from service.models.agency import AGENCY_TYPES, Agency
from service.models.household import Household, Involvement, Person
from service.models.oauth import OAuthClient, OAuthToken, UsedAssertion

__all__ = [
    "AGENCY_TYPES",
    "Agency",
    "Household",
    "Involvement",
    "OAuthClient",
    "OAuthToken",
    "Person",
    "UsedAssertion",
]
