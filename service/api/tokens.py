"""The OAuth 2.0 endpoints: token, introspection, revocation and server metadata."""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError
from flask import Blueprint, Response, request

from service.api.access import public
from service.oauth import authorization_server, metadata
from service.oauth.server import TokenIntrospection, TokenRevocation

bp = Blueprint("oauth", __name__)
FORM = "application/x-www-form-urlencoded"


def _oauth_response(respond: Callable[[AuthorizationServer], Response]) -> Response:
    """Answer in RFC 6749's error format, also for errors Authlib raises before its own handling.

    Authlib checks the transport (https) and decodes credentials before it catches errors; those
    must reach the client as OAuth errors, not as a bearer-token problem or a 500.
    """
    server = authorization_server()
    try:
        _require_form()
        return respond(server)
    except OAuth2Error as error:
        return server.handle_error_response(None, error)  # type: ignore[no-any-return]
    except (UnicodeDecodeError, binascii.Error, ValueError):
        malformed = InvalidClientError(description="Malformed client credentials.")
        return server.handle_error_response(None, malformed)  # type: ignore[no-any-return]


def _require_form() -> None:
    """Refuse a body that is not a form, which Authlib would read as no parameters at all."""
    if request.mimetype == FORM or not (request.mimetype or request.content_length):
        return
    sent = "JSON" if request.is_json else "another media type"  # never echo the header back
    raise InvalidRequestError(
        description=f"Send the parameters as an {FORM} form (RFC 6749), not {sent}."
    )


@bp.post("/oauth/token")
@public(action="token:issue")
def issue_token() -> Response:
    """Issue an access token (client_credentials grant)."""
    return _oauth_response(lambda server: server.create_token_response())


@bp.post("/oauth/introspect")
@public(action="token:introspect")
def introspect_token() -> Response:
    """Describe a token to its own client (RFC 7662)."""
    endpoint = TokenIntrospection.ENDPOINT_NAME
    return _oauth_response(lambda server: server.create_endpoint_response(endpoint))


@bp.post("/oauth/revoke")
@public(action="token:revoke")
def revoke_token() -> Response:
    """Revoke a token (RFC 7009)."""
    endpoint = TokenRevocation.ENDPOINT_NAME
    return _oauth_response(lambda server: server.create_endpoint_response(endpoint))


@bp.get("/.well-known/oauth-authorization-server")
@public()
def server_metadata() -> dict[str, Any]:
    """Describe this authorization server (RFC 8414)."""
    return metadata()
