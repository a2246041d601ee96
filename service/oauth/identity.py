"""Who is talking to whom: the client a request comes from, and this server's issuer."""

from __future__ import annotations

from typing import Protocol

from flask import current_app, g


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


def issuer_url() -> str:
    """Return this server's issuer identifier.

    Production requires ALERTSHARE_ISSUER; only development falls back to the request's host,
    which a caller controls and so must never decide which assertion audiences are accepted.
    """
    configured = current_app.config.get("ISSUER")
    return str(configured or g.request_host_url).rstrip("/")
