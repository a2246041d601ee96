"""A demo partnership to try the API on a laptop: two agencies with case-system clients, and the
partnership's audit lead with an auditor client."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from service import agencies, clients
from service.database import db
from service.models.agency import Agency
from service.models.oauth import OAuthClient
from service.oauth.scopes import API_SCOPES, AUDIT_READ_ALL

CASE_SYSTEM = "Demo case system"
AUDITOR = "Demo audit console"
# A case system sees its own agency's audit trail (audit:read), never the whole log.
CASE_SYSTEM_SCOPES = [scope for scope in API_SCOPES if scope != AUDIT_READ_ALL]
# (slug, name, type, duty contact, client name, scopes)
DEMO_CLIENTS = (
    ("kent-childrens-services", "Kent Children's Social Work Services", "children_social_care",
     "Duty desk 03000 411111", CASE_SYSTEM, CASE_SYSTEM_SCOPES),
    ("medway-health-visiting", "Medway Health Visiting Service", "health",
     "Duty desk 01634 000000", CASE_SYSTEM, CASE_SYSTEM_SCOPES),
    ("kent-safeguarding-partnership", "Kent Safeguarding Partnership (audit lead)", "other",
     "Audit lead 03000 400000", AUDITOR, [AUDIT_READ_ALL]),
)  # fmt: skip


@dataclass(frozen=True)
class DemoCredentials:
    agency_id: str
    client_name: str
    client_id: str
    client_secret: str
    scopes: str
    replaced: bool  # an earlier run made this client; its old secret no longer works


def seed_demo() -> list[DemoCredentials]:
    """Create the demo agencies and clients (once) and return fresh secrets for them.

    Secrets are stored hashed, so a rerun cannot show the old ones: it replaces them, and says so.
    """
    credentials = []
    for slug, name, agency_type, duty_contact, client_name, scopes in DEMO_CLIENTS:
        if db.session.get(Agency, slug) is None:
            agencies.add_agency(slug, name, agency_type, duty_contact)
        existing = db.session.scalar(
            select(OAuthClient).where(
                OAuthClient.agency_id == slug, OAuthClient.name == client_name
            )
        )
        if existing is None:
            issued = clients.add_client(slug, client_name, scopes)
        else:
            issued = clients.rotate_client_secret(existing.client_id)
        assert issued.secret is not None
        credentials.append(
            DemoCredentials(
                slug, client_name, issued.client.client_id, issued.secret,
                issued.client.allowed_scopes, replaced=existing is not None,
            )
        )  # fmt: skip
    return credentials
