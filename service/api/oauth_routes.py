"""The OAuth 2.0 endpoints: token, introspection, revocation and server metadata."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from service.api.access import public
from service.oauth import authorization_server, metadata
from service.oauth.server import TokenIntrospection, TokenRevocation

bp = Blueprint("oauth", __name__)


@bp.post("/oauth/token")
@public(action="token:issue")
def issue_token() -> Response:
    """Issue an access token (client_credentials grant)."""
    return authorization_server().create_token_response()  # type: ignore[no-any-return]


@bp.post("/oauth/introspect")
@public(action="token:introspect")
def introspect_token() -> Response:
    """Describe a token to its own client (RFC 7662)."""
    server = authorization_server()
    return server.create_endpoint_response(TokenIntrospection.ENDPOINT_NAME)  # type: ignore[no-any-return]


@bp.post("/oauth/revoke")
@public(action="token:revoke")
def revoke_token() -> Response:
    """Revoke a token (RFC 7009)."""
    server = authorization_server()
    return server.create_endpoint_response(TokenRevocation.ENDPOINT_NAME)  # type: ignore[no-any-return]


@bp.get("/.well-known/oauth-authorization-server")
@public()
def server_metadata() -> dict[str, Any]:
    """Describe this authorization server (RFC 8414)."""
    return metadata()
