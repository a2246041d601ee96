"""The OAuth 2.0 authorization server and resource protector: all of Authlib lives here."""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, current_app, g
from joserfc.jwk import KeySet, KeySetSerialization
from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from service.database import db, utcnow
from service.models.agency import Agency
from service.models.oauth import OAuthClient, OAuthToken, UsedAssertion, hash_secret
from service.oauth.scopes import ALL_SCOPES, TOKENS_INTROSPECT

CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]
MAX_ASSERTION_LIFETIME = 300
CLIENT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,46}\.[0-9a-f]{16}")


def query_client(client_id: str) -> OAuthClient | None:
    """Return the active client with ``client_id``; revoked clients and disabled agencies vanish."""
    if not CLIENT_ID_PATTERN.fullmatch(client_id or ""):
        return None  # not one of ours; also keeps NUL bytes and huge strings away from the database
    query = select(OAuthClient).where(OAuthClient.client_id == client_id)
    client: OAuthClient | None = db.session.scalar(query)
    if client is None or not client.is_active:
        return None
    # The audit entry names the client that tried, whether or not it then authenticates.
    identify(client)
    return client


class ClientIdentity(Protocol):
    """What a request needs to know of its client: who it is, for which agency."""

    @property
    def client_id(self) -> str: ...

    @property
    def agency_id(self) -> str: ...


def identify(client: ClientIdentity) -> None:
    """Remember which client this request comes from (authenticated, or trying to)."""
    g.oauth_client = client


def identified_client() -> ClientIdentity | None:
    """Return the client this request comes from, if one was identified."""
    client: ClientIdentity | None = g.get("oauth_client")
    return client


@dataclass(frozen=True)
class BearerClient:
    client_id: str
    agency_id: str


@dataclass(frozen=True)
class BearerToken(TokenMixin):  # type: ignore[misc]
    """A presented access token as the resource protector checks it: plain values from one
    column query, not three ORM records (this runs first on every API request)."""

    client: BearerClient
    scope: str
    issued_at: int
    expires_in: int
    revoked: bool  # the token, its client or its agency

    @property
    def agency_id(self) -> str:
        return self.client.agency_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.issued_at + self.expires_in <= int(utcnow().timestamp())

    def is_revoked(self) -> bool:
        return self.revoked


# Built once: the statement, its compiled form and its cache key are reused by every request.
_BEARER = (
    select(
        OAuthToken.scope, OAuthToken.issued_at, OAuthToken.expires_in,
        OAuthToken.revoked_at.is_not(None).label("token_revoked"),
        OAuthClient.client_id, OAuthClient.agency_id,
        (OAuthClient.revoked_at.is_not(None) | Agency.disabled_at.is_not(None)).label("cut_off"),
    )
    .join(OAuthClient, OAuthClient.id == OAuthToken.client_pk)
    .join(Agency, Agency.id == OAuthClient.agency_id)
    .where(OAuthToken.token_hash == bindparam("token_hash"))
)  # fmt: skip


def bearer_token(token_string: str) -> BearerToken | None:
    """Return the stored token whose hash matches ``token_string``, for checking a request.

    A revoked client or a disabled agency takes its live tokens down with it.
    """
    row = db.session.execute(_BEARER, {"token_hash": hash_secret(token_string)}).first()
    if row is None:
        return None
    return BearerToken(
        BearerClient(row.client_id, row.agency_id), row.scope, row.issued_at, row.expires_in,
        revoked=bool(row.token_revoked or row.cut_off),
    )  # fmt: skip


def query_token(token_string: str) -> OAuthToken | None:
    """Return the stored token whose hash matches ``token_string``."""
    return db.session.scalar(
        select(OAuthToken).where(OAuthToken.token_hash == hash_secret(token_string))
    )


def save_token(token: dict[str, Any], oauth_request: Any) -> None:
    """Store an issued token by its hash only; the caller sees the plaintext once."""
    db.session.add(
        OAuthToken(
            token_hash=hash_secret(token["access_token"]),
            client_pk=oauth_request.client.id,
            scope=token.get("scope", ""),
            issued_at=int(time.time()),
            expires_in=int(token["expires_in"]),
        )
    )


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication with a single-use signed assertion."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=30)

    def verify_claims(self, claims: Any) -> None:
        # A long-lived assertion is a long-lived credential: refuse anything but short ones,
        # before the parent class records its jti.
        exp = claims.get("exp")
        if (
            not isinstance(exp, int | float)
            or isinstance(exp, bool)
            or not math.isfinite(exp)
            or exp - time.time() > MAX_ASSERTION_LIFETIME
        ):
            raise InvalidClientError(
                description=f"Assertions need an exp at most {MAX_ASSERTION_LIFETIME} s ahead."
            )
        super().verify_claims(claims)

    def get_audiences(self) -> list[str]:
        base = issuer_url()
        return [base, f"{base}/oauth/token", f"{base}/oauth/introspect", f"{base}/oauth/revoke"]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        # The primary key makes a replayed (client, jti) pair fail even under concurrency.
        now = int(time.time())
        db.session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < now))
        spent = UsedAssertion(
            client_id=str(claims["sub"]),
            jti_hash=hashlib.sha256(str(jti).encode()).hexdigest(),
            expires_at=int(claims.get("exp", now)) + self.leeway,
        )
        try:
            with db.session.begin_nested():
                db.session.add(spent)
        except IntegrityError:
            return False
        return True

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        # A secret-based client has no keys: refuse before the JOSE layer errors out.
        if client.auth_method != self.CLIENT_AUTH_METHOD or not client.jwks:
            raise InvalidClientError(description="The client does not use private_key_jwt.")
        return KeySet.import_key_set(cast(KeySetSerialization, client.public_jwks))


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS


class TokenIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> OAuthToken | None:
        return query_token(token_string)

    def check_permission(self, token: OAuthToken, client: OAuthClient, request: Any) -> bool:
        # The token's own client, or a resource server allowed to introspect; others learn
        # only "active": false.
        return token.check_client(client) or TOKENS_INTROSPECT in client.scopes

    def introspect_token(self, token: OAuthToken) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client.client_id,
            "token_type": "Bearer",
            "scope": token.scope,
            "sub": token.client.client_id,
            "agency": token.agency_id,
            "iss": issuer_url(),
            "exp": token.expires_at,
            "iat": token.issued_at,
        }


class TokenRevocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> OAuthToken | None:
        return query_token(token_string)

    def revoke_token(self, token: OAuthToken, request: Any) -> None:
        token.revoked_at = utcnow()


class HashedBearerTokenValidator(BearerTokenValidator):  # type: ignore[misc]
    def authenticate_token(self, token_string: str) -> BearerToken | None:
        return bearer_token(token_string)


class ProblemResourceProtector(ResourceProtector):  # type: ignore[misc]
    """A resource protector whose failures become RFC 9457 problems via one error handler."""

    def raise_error_response(self, error: OAuth2Error) -> None:
        raise error


require_oauth = ProblemResourceProtector()
require_oauth.register_token_validator(HashedBearerTokenValidator())


def issuer_url() -> str:
    """Return this server's issuer identifier.

    Production requires ALERTSHARE_ISSUER; only development falls back to the request's host,
    which a caller controls and so must never decide which assertion audiences are accepted.
    """
    configured = current_app.config.get("ISSUER")
    return str(configured or g.request_host_url).rstrip("/")


def metadata() -> dict[str, Any]:
    """Return the RFC 8414 authorization server metadata document."""
    base = issuer_url()
    return {
        "issuer": base,
        "token_endpoint": f"{base}/oauth/token",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "scopes_supported": list(ALL_SCOPES),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
    }


def init_app(app: Flask) -> None:
    """Build this app's authorization server; Authlib reads its settings from ``app.config``."""
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"client_credentials": app.config["TOKEN_EXPIRES_IN"]}
    app.config["OAUTH2_SCOPES_SUPPORTED"] = list(ALL_SCOPES)
    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(ClientCredentialsGrant)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJWT())
    server.register_endpoint(TokenIntrospection)
    server.register_endpoint(TokenRevocation)
    app.extensions["alertshare.oauth"] = server


def authorization_server() -> AuthorizationServer:
    """Return the current app's authorization server."""
    return current_app.extensions["alertshare.oauth"]
