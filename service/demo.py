"""A demo partnership to try the API on a laptop: two agencies with case-system clients, the
partnership's audit lead with an auditor client, and one household with a warning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select

from service import agencies, clients
from service.database import db
from service.households import (
    Address,
    HouseholdRef,
    add_member,
    find_household,
    register_household,
)
from service.incidents import IncidentReport
from service.involvements import register_involvement
from service.models.agency import Agency
from service.models.household import Household
from service.models.oauth import OAuthClient
from service.oauth.scopes import API_SCOPES, AUDIT_READ_ALL
from service.warnings import Evidence, SubjectInformed, WarningDraft, publish_warning

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


DEMO_UPRN = "100062123456"
DEMO_ADDRESS = Address(line1="14 Orchard Way", town="Maidstone", postcode="ME14 2AB")


def seed_demo_household(today: date) -> Household:
    """Create (once) a household Kent children's services works with and has warned about, so
    a look-up and a briefing show something. Every name in it is made up."""
    existing = find_household(HouseholdRef(uprn=DEMO_UPRN))
    if existing is not None:
        return existing
    issuer = DEMO_CLIENTS[0][0]
    household = register_household(
        issuer, uprn=DEMO_UPRN, address_line1=DEMO_ADDRESS.line1, town=DEMO_ADDRESS.town,
        postcode=DEMO_ADDRESS.postcode,
    )  # fmt: skip
    register_involvement(
        household, issuer, case_reference="CSC-REF-88431", lead_practitioner="Alex Morgan",
        lead_contact="07700 900461", contact_route="duty desk first",
    )  # fmt: skip
    father = add_member(household, role="adult", given_name="Darren", family_name="Pike",
                        date_of_birth=date(1984, 5, 2), relationship="father")  # fmt: skip
    add_member(household, role="child", given_name="Mia", family_name="Pike",
               date_of_birth=date(2019, 9, 14), relationship="daughter")  # fmt: skip
    db.session.flush()  # the father's id names him as the person of concern
    draft = WarningDraft(
        categories=("weapons", "intimidating_animals"), risk_level="high",
        precautions=("joint_visit", "animals_secured_before_entry"),
        persons_of_concern=({"member_id": father.id},), children_in_household=True,
        subject_informed=SubjectInformed(
            False, reason_withheld="Telling him would raise the risk to the children",
            recheck_on=today + timedelta(days=30),
        ),
    )  # fmt: skip
    threat = IncidentReport(
        occurred_on=today - timedelta(days=2), categories=(), police_reported=True,
        summary="Threatened with a knife on a home visit; two dogs loose in the hall",
        crime_reference="KE-26-112233",
    )  # fmt: skip
    publish_warning(household, issuer, draft, Evidence((threat,)), today)
    return household
