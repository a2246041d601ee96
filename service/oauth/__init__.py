"""OAuth 2.0: the authorization server, resource protection and scopes."""

from service.oauth.server import authorization_server, init_app, metadata, require_oauth

__all__ = ["authorization_server", "init_app", "metadata", "require_oauth"]
