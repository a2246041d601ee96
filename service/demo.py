"""A demo partnership: two agencies with clients, for trying the API on a laptop."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from service import agencies, clients
from service.database import db
from service.models.agency import Agency
from service.models.oauth import OAuthClient
from service.oauth.scopes import API_SCOPES

DEMO_CLIENT_NAME = "Demo case system"
DEMO_AGENCIES = (
    (
        "kent-childrens-services",
        "Kent Children's Social Work Services",
        "children_social_care",
        "Duty desk 03000 411111",
    ),
    (
        "medway-health-visiting",
        "Medway Health Visiting Service",
        "health",
        "Duty desk 01634 000000",
    ),
)


@dataclass(frozen=True)
class DemoCredentials:
    agency_id: str
    client_id: str
    client_secret: str


def seed_demo() -> list[DemoCredentials]:
    """Create the demo agencies and clients (once) and return fresh secrets for them."""
    credentials = []
    for slug, name, agency_type, duty_contact in DEMO_AGENCIES:
        if db.session.get(Agency, slug) is None:
            agencies.add_agency(slug, name, agency_type, duty_contact)
        client = db.session.scalar(
            select(OAuthClient).where(
                OAuthClient.agency_id == slug, OAuthClient.name == DEMO_CLIENT_NAME
            )
        )
        if client is None:
            issued = clients.add_client(slug, DEMO_CLIENT_NAME, list(API_SCOPES))
        else:
            # Secrets are stored hashed, so a rerun can only show new ones.
            issued = clients.rotate_client_secret(client.client_id)
        assert issued.secret is not None
        credentials.append(DemoCredentials(slug, issued.client.client_id, issued.secret))
    db.session.commit()
    return credentials
