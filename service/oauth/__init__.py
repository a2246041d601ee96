"""OAuth 2.0: the authorization server, resource protection and scopes (all of Authlib)."""

from service.oauth.identity import identified_client, identify, issuer_url
from service.oauth.server import (
    BearerToken,
    authorization_server,
    init_app,
    metadata,
    require_oauth,
)

__all__ = [
    "BearerToken",
    "authorization_server",
    "identified_client",
    "identify",
    "init_app",
    "issuer_url",
    "metadata",
    "require_oauth",
]
