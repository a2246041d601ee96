"""Use cases for agencies' OAuth clients: register, list, revoke, rotate secrets."""

from __future__ import annotations

import json
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any, cast

from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet, KeySetSerialization
from sqlalchemy import CursorResult, select, update

from service.agencies import get_agency
from service.database import db, utcnow
from service.errors import InvalidInput, NotFound
from service.models.oauth import (
    AUTH_METHODS,
    OAuthClient,
    OAuthToken,
    hash_secret,
    jwk_weakness,
)
from service.oauth.scopes import ALL_SCOPES


@dataclass(frozen=True)
class IssuedClient:
    """A new client and, for client_secret_basic, its secret: shown once, stored hashed.

    After a rotation with ``revoke_tokens``, ``revoked_tokens`` counts the live tokens it
    ended there and then.
    """

    client: OAuthClient
    secret: str | None
    revoked_tokens: int = 0


def _check_scopes(scopes: list[str]) -> None:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            "Unknown or no scopes.",
            errors={
                "scopes": [f"Unknown: {', '.join(unknown)}" if unknown else "At least one scope."]
            },
        )


def _check_jwks(jwks: dict[str, Any] | None) -> str:
    if not jwks:
        raise InvalidInput("private_key_jwt needs a JWK set.", errors={"jwks": ["Required."]})
    try:
        with warnings.catch_warnings():
            # joserfc warns about short RSA keys; jwk_weakness() refuses them with a reason.
            # (Registration runs in the CLI, one thread: the process-wide filter is safe here.)
            warnings.simplefilter("ignore", SecurityWarning)
            key_set = KeySet.import_key_set(cast(KeySetSerialization, jwks))
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise InvalidInput("Not a JWK set.", errors={"jwks": [str(error)]}) from error
    if any(key.is_private for key in key_set.keys):
        raise InvalidInput("Register public keys only.", errors={"jwks": ["Holds a private key."]})
    for number, key in enumerate(key_set.keys, start=1):
        weakness = jwk_weakness(key.as_dict(private=False))
        if weakness:
            raise InvalidInput(
                f"Key {number} of the JWK set is refused.", errors={"jwks": [weakness]}
            )
    return json.dumps(key_set.as_dict(private=False))


def add_client(
    agency_slug: str,
    name: str,
    scopes: list[str],
    auth_method: str = "client_secret_basic",
    jwks: dict[str, Any] | None = None,
) -> IssuedClient:
    """Create an OAuth client for an agency with the scopes it may ask for."""
    agency = get_agency(agency_slug)
    _check_scopes(scopes)
    if auth_method not in AUTH_METHODS:
        raise InvalidInput(
            "Unknown method.", errors={"auth_method": [f"One of {', '.join(AUTH_METHODS)}."]}
        )
    client = OAuthClient(
        client_id=f"{agency.id}.{secrets.token_hex(8)}",
        agency_id=agency.id,
        name=name,
        auth_method=auth_method,
        allowed_scopes=" ".join(dict.fromkeys(scopes)),
    )
    secret = None
    if auth_method == "client_secret_basic":
        secret = secrets.token_urlsafe(32)
        client.secret_hash = hash_secret(secret)
    else:
        client.jwks = _check_jwks(jwks)
    db.session.add(client)
    return IssuedClient(client, secret)


def get_client(client_id: str) -> OAuthClient:
    """Return the client ``client_id`` or raise NotFound."""
    query = select(OAuthClient).where(OAuthClient.client_id == client_id)
    client: OAuthClient | None = db.session.scalar(query)
    if client is None:
        raise NotFound(f"No client {client_id!r}.")
    return client


def list_clients(agency_slug: str | None = None) -> list[OAuthClient]:
    """Return OAuth clients, optionally of one agency."""
    query = select(OAuthClient).order_by(OAuthClient.agency_id, OAuthClient.client_id)
    if agency_slug:
        query = query.where(OAuthClient.agency_id == agency_slug)
    return list(db.session.scalars(query))


def revoke_client(client_id: str) -> OAuthClient:
    """Revoke a client: it can no longer get tokens and its live tokens stop working."""
    client = get_client(client_id)
    client.revoked_at = client.revoked_at or utcnow()
    return client


def rotate_client_secret(client_id: str, *, revoke_tokens: bool = False) -> IssuedClient:
    """Give a client_secret_basic client a new secret; the old one stops working at once.

    Tokens issued under earlier secrets live out their lifetime unless ``revoke_tokens`` ends
    them too (for a secret that leaked, not for a routine rotation). That includes a token
    whose request authenticated with an old secret and is saved only after this commits: it
    carries the generation of the secret it authenticated with, which the rotation refuses.
    """
    client = get_client(client_id)
    if client.auth_method != "client_secret_basic":
        raise InvalidInput("This client authenticates with private_key_jwt, not a secret.")
    secret = secrets.token_urlsafe(32)
    client.secret_hash = hash_secret(secret)
    # Counted in SQL, not from the value read above: two rotations at once move it on twice.
    next_generation = OAuthClient.secret_generation + 1
    client.secret_generation = next_generation
    if revoke_tokens:
        client.tokens_valid_from_generation = next_generation
    db.session.flush()  # the client row first: concurrent rotations queue on its lock
    revoked = _revoke_live_tokens(client) if revoke_tokens else 0
    return IssuedClient(client, secret, revoked)


def _revoke_live_tokens(client: OAuthClient) -> int:
    """Revoke the client's unexpired tokens; return how many.

    Only those already saved: one still being issued is refused by its generation instead.
    """
    live = (OAuthToken.issued_at + OAuthToken.expires_in) > int(time.time())
    statement = (
        update(OAuthToken)
        .where(OAuthToken.client_pk == client.id, OAuthToken.revoked_at.is_(None), live)
        .values(revoked_at=utcnow())
    )
    result = cast(CursorResult[Any], db.session.execute(statement))
    return result.rowcount
