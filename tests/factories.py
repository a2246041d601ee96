"""Test data through the real use cases and the real token endpoint, with keyword defaults."""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey

from service import agencies, clients, households, involvements
from service.database import db
from service.oauth.scopes import API_SCOPES
from service.unit_of_work import unit_of_work

_sequence = itertools.count(1)
ACTING = {"X-Acting-Practitioner": "sw-0042", "X-Purpose-Of-Use": "pre_visit"}


@dataclass
class ClientCredentials:
    agency_id: str
    client_id: str
    secret: str | None = None
    private_key: ECKey | None = None


def create_agency(
    app: Flask,
    *,
    slug: str | None = None,
    name: str = "Test Children's Services",
    agency_type: str = "children_social_care",
    duty_contact: str = "Duty desk 0300 000 0000",
) -> str:
    """Create an agency and return its slug."""
    slug = slug or f"agency-{next(_sequence)}"
    with app.app_context():
        agencies.add_agency(slug, name, agency_type, duty_contact)
        db.session.commit()
    return slug


def create_client(
    app: Flask,
    *,
    agency_id: str | None = None,
    scopes: tuple[str, ...] = API_SCOPES,
    private_key_jwt: bool = False,
) -> ClientCredentials:
    """Create an OAuth client (secret or key pair) for an agency, creating the agency if needed."""
    agency_id = agency_id or create_agency(app)
    key = (
        ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex})
        if private_key_jwt
        else None
    )
    with app.app_context():
        issued = clients.add_client(
            agency_id,
            "Test case system",
            list(scopes),
            "private_key_jwt" if key else "client_secret_basic",
            {"keys": [key.as_dict(private=False)]} if key else None,
        )
        db.session.commit()
        return ClientCredentials(agency_id, issued.client.client_id, issued.secret, key)


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def client_assertion(
    creds: ClientCredentials,
    *,
    audience: str = "http://localhost/oauth/token",
    expires_in: int = 60,
    jti: str | None = None,
    key: ECKey | None = None,
) -> dict[str, str]:
    """Return the form fields of a signed private_key_jwt assertion."""
    now = int(time.time())
    claims = {
        "iss": creds.client_id,
        "sub": creds.client_id,
        "aud": audience,
        "iat": now,
        "exp": now + expires_in,
        "jti": jti or uuid.uuid4().hex,
    }
    signing_key = key or creds.private_key
    assert signing_key is not None
    assertion = jwt.encode({"alg": "ES256", "kid": signing_key.kid}, claims, signing_key)
    return {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def request_token(client: FlaskClient, creds: ClientCredentials, scope: str | None = None) -> Any:
    """POST to the real token endpoint and return the response."""
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    if creds.private_key is not None:
        return client.post("/oauth/token", data={**form, **client_assertion(creds)})
    assert creds.secret is not None
    return client.post("/oauth/token", data=form, headers=basic_auth(creds.client_id, creds.secret))


def get_token(client: FlaskClient, creds: ClientCredentials, scope: str | None = None) -> str:
    """Return a fresh access token for ``creds`` from the real token endpoint."""
    response = request_token(client, creds, scope)
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


_addresses = itertools.count(1)


def create_household(
    app: Flask,
    *,
    created_by: str,
    involved: tuple[str, ...] = (),
    started_at: datetime | None = None,
) -> str:
    """Register a household and the agencies working with it (from ``started_at``, or now)."""
    with app.app_context(), unit_of_work():
        household = households.register_household(
            created_by, postcode="SW1A 1AA", address_line1=f"{next(_addresses)} High Street"
        )
        for agency_id in involved:
            involvement = involvements.register_involvement(
                household, agency_id, case_reference="CASE-1"
            )
            if started_at is not None:
                involvement.started_at = started_at
        return household.id


def auditor_headers(
    token: str, *, practitioner: str = "auditor-1", purpose: str = "audit"
) -> dict[str, str]:
    """Headers of an auditor's request: the token and an acting context of purpose audit."""
    return {
        "Authorization": f"Bearer {token}",
        "X-Acting-Practitioner": practitioner,
        "X-Purpose-Of-Use": purpose,
    }


def bearer(token: str, acting: bool = True) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    return {**headers, **ACTING} if acting else headers
