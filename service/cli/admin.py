"""Commands for the database schema, agencies and their OAuth clients."""

from __future__ import annotations

import json
from typing import Any

import click

from service import agencies, clients, migrate
from service.cli import in_app, main
from service.models.agency import AGENCY_TYPES
from service.oauth.scopes import ALL_SCOPES


@main.group("db")
def db_group() -> None:
    """Manage the database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@in_app(needs="nothing")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head), creating it if need be."""
    migrate.upgrade(revision)
    click.echo(f"database at {', '.join(migrate.current_revisions())}")


@db_group.command("downgrade")
@click.argument("revision")
@in_app(needs="database")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION."""
    migrate.downgrade(revision)
    click.echo(f"database at {', '.join(migrate.current_revisions()) or 'base'}")


@db_group.command("current")
@in_app(needs="database")
def db_current() -> None:
    """Show the database's revision and the migration head."""
    click.echo(f"current: {', '.join(migrate.current_revisions()) or 'none'}")
    click.echo(f"head:    {', '.join(migrate.heads())}")


@main.group("agency")
def agency_group() -> None:
    """Manage member agencies."""


@agency_group.command("add")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--type", "agency_type", required=True, type=click.Choice(AGENCY_TYPES))
@click.option("--duty-contact", required=True, help="Duty desk phone or address to call.")
@in_app()
def agency_add(slug: str, name: str, agency_type: str, duty_contact: str) -> None:
    """Add agency SLUG."""
    agencies.add_agency(slug, name, agency_type, duty_contact)
    click.echo(f"added agency {slug}")


@agency_group.command("list")
@click.option("--all", "include_disabled", is_flag=True, help="Include disabled agencies.")
@in_app()
def agency_list(include_disabled: bool) -> None:
    """List agencies."""
    for agency in agencies.list_agencies(include_disabled):
        state = "active" if agency.is_active else "disabled"
        click.echo(f"{agency.id}\t{agency.agency_type}\t{state}\t{agency.name}")


@agency_group.command("disable")
@click.argument("slug")
@in_app()
def agency_disable(slug: str) -> None:
    """Disable agency SLUG: its clients and tokens stop working at once."""
    agencies.disable_agency(slug)
    click.echo(f"disabled agency {slug}")


@main.group("client")
def client_group() -> None:
    """Manage OAuth clients of agencies."""


@client_group.command("add")
@click.argument("agency")
@click.option("--name", required=True, help="What the client is, e.g. 'Mosaic case system'.")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(ALL_SCOPES))
@click.option("--jwks", type=click.File(), help="Public JWK set file: use private_key_jwt.")
@in_app()
def client_add(agency: str, name: str, scopes: tuple[str, ...], jwks: Any) -> None:
    """Add an OAuth client to AGENCY; a secret is printed once."""
    method = "private_key_jwt" if jwks else "client_secret_basic"
    issued = clients.add_client(
        agency, name, list(scopes), method, json.load(jwks) if jwks else None
    )
    click.echo(f"client_id: {issued.client.client_id}")
    if issued.secret:
        click.echo(f"client_secret: {issued.secret}  (shown once; stored hashed)")


@client_group.command("list")
@click.option("--agency")
@in_app()
def client_list(agency: str | None) -> None:
    """List OAuth clients."""
    for client in clients.list_clients(agency):
        state = "revoked" if client.revoked_at else "active"
        click.echo(f"{client.client_id}\t{client.auth_method}\t{state}\t{client.allowed_scopes}")


@client_group.command("revoke")
@click.argument("client_id")
@in_app()
def client_revoke(client_id: str) -> None:
    """Revoke CLIENT_ID and every token it holds."""
    clients.revoke_client(client_id)
    click.echo(f"revoked {client_id}")


@client_group.command("rotate-secret")
@click.argument("client_id")
@click.option(
    "--revoke-tokens",
    is_flag=True,
    help="Also end the tokens issued under earlier secrets (e.g. when one leaked), including "
    "any still being issued under them as the rotation commits.",
)
@in_app()
def client_rotate_secret(client_id: str, revoke_tokens: bool) -> None:
    """Give CLIENT_ID a new secret; the old one stops working at once.

    Tokens already issued live out their lifetime unless --revoke-tokens ends them, along
    with any still being issued to a request that authenticated with the old secret.
    """
    issued = clients.rotate_client_secret(client_id, revoke_tokens=revoke_tokens)
    click.echo(f"client_secret: {issued.secret}  (shown once; stored hashed)")
    if revoke_tokens:
        plural = "" if issued.revoked_tokens == 1 else "s"
        click.echo(
            f"revoked {issued.revoked_tokens} live token{plural} issued under earlier secrets; "
            "any still being issued under them are refused too"
        )
    else:
        click.echo(
            "tokens issued under the old secret live out their lifetime (--revoke-tokens ends them)"
        )
