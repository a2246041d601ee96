"""The OAuth 2.0 authorization server and resource protector (clients authenticate: client_auth)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Request, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, current_app
from sqlalchemy import bindparam, select

from service.database import db, utcnow
from service.models.agency import Agency
from service.models.oauth import OAuthClient, OAuthToken, hash_secret
from service.oauth.client_auth import (
    ASSERTION_ALGORITHMS,
    CLIENT_AUTH_METHODS,
    authenticate_client,
    query_client,
)
from service.oauth.identity import issuer_url
from service.oauth.scopes import ALL_SCOPES, TOKENS_INTROSPECT


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
    revoked: bool  # the token, its client or its agency, or a rotation of the client's secret

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
        (OAuthToken.secret_generation < OAuthClient.tokens_valid_from_generation)
        .label("superseded"),
    )
    .join(OAuthClient, OAuthClient.id == OAuthToken.client_pk)
    .join(Agency, Agency.id == OAuthClient.agency_id)
    .where(OAuthToken.token_hash == bindparam("token_hash"))
)  # fmt: skip


def bearer_token(token_string: str) -> BearerToken | None:
    """Return the stored token whose hash matches ``token_string``, for checking a request.

    A revoked client or a disabled agency takes its live tokens down with it; a secret rotation
    with ``revoke_tokens`` those issued under the secrets it replaced (OAuthToken.is_revoked).
    """
    # On the session's connection, not through the ORM: plain columns need none of its work.
    connection = db.session.connection()
    row = connection.execute(_BEARER, {"token_hash": hash_secret(token_string)}).first()
    if row is None:
        return None
    return BearerToken(
        BearerClient(row.client_id, row.agency_id), row.scope, row.issued_at, row.expires_in,
        revoked=bool(row.token_revoked or row.cut_off or row.superseded),
    )  # fmt: skip


def query_token(token_string: str) -> OAuthToken | None:
    """Return the stored token whose hash matches ``token_string``."""
    return db.session.scalar(
        select(OAuthToken).where(OAuthToken.token_hash == hash_secret(token_string))
    )


def save_token(token: dict[str, Any], oauth_request: Any) -> None:
    """Store an issued token by its hash only; the caller sees the plaintext once.

    The token carries the secret generation its client authentication read: one authenticated
    by a secret that a rotation then replaced keeps the old generation however late it is
    saved, so a rotation with ``revoke_tokens`` refuses it even if it commits after the rotation.
    """
    db.session.add(
        OAuthToken(
            token_hash=hash_secret(token["access_token"]),
            client_pk=oauth_request.client.id,
            scope=token.get("scope", ""),
            issued_at=int(time.time()),
            expires_in=int(token["expires_in"]),
            secret_generation=oauth_request.secret_generation,
        )
    )


class ClientAuthenticatingServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server, with client authentication by one method per request, in words."""

    def authenticate_client(
        self, request: OAuth2Request, methods: list[str], endpoint: str = "token"
    ) -> OAuthClient:
        return authenticate_client(self.query_client, request, methods, endpoint)


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
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
    }


def init_app(app: Flask) -> None:
    """Build this app's authorization server; Authlib reads its settings from ``app.config``."""
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"client_credentials": app.config["TOKEN_EXPIRES_IN"]}
    app.config["OAUTH2_SCOPES_SUPPORTED"] = list(ALL_SCOPES)
    server = ClientAuthenticatingServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(TokenIntrospection)
    server.register_endpoint(TokenRevocation)
    app.extensions["alertshare.oauth"] = server


def authorization_server() -> AuthorizationServer:
    """Return the current app's authorization server."""
    return current_app.extensions["alertshare.oauth"]
