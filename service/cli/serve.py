"""Commands that serve the API: production serving and the demo instance."""

from __future__ import annotations

import os
import sys

import click

from service import migrate
from service.cli import load_app, main
from service.database import db
from service.unit_of_work import unit_of_work


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=(os.cpu_count() or 1) * 2 + 1, show_default=True)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the API: gunicorn in production, the development server otherwise."""
    app = load_app()
    if app.config["ENV"] == "production":
        argv = [
            "gunicorn",
            "--workers",
            str(workers),
            "--bind",
            f"{host}:{port}",
            "--config",
            "python:service.gunicorn_conf",
            "service.wsgi:app",
        ]
        os.execvp(sys.executable, [sys.executable, "-m", *argv])
    app.run(host=host, port=port, debug=False)


@main.command("demo")
@click.option("--port", default=8000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Set up and print credentials, but do not serve.")
def demo(port: int, no_serve: bool) -> None:
    """Set up a demo instance in the data directory (SQLite by default) and serve it locally.

    It uses the same data directory as every other command, so `alertshare agency list` or
    `alertshare audit verify` run in the same directory see the demo.
    """
    from service.demo import seed_demo

    app = load_app(needs="nothing")
    if app.config["ENV"] == "production":
        raise click.ClickException("the demo runs in development mode only")
    with app.app_context():
        migrate.upgrade()
        with unit_of_work():
            credentials = seed_demo()
        db.session.remove()
        db.engine.dispose()
    base = f"http://127.0.0.1:{port}"
    click.echo(
        f"alertshare demo: data in {app.config['DATA_DIR']} (development keys; not for real data)"
    )
    for item in credentials:
        click.echo(
            f"  {item.agency_id} ({item.client_name}): client_id={item.client_id} "
            f"client_secret={item.client_secret}\n      scopes: {item.scopes}"
        )
    if any(item.replaced for item in credentials):
        click.echo(
            "  These clients were made by an earlier demo run: their secrets were replaced just "
            "now, and the old ones no longer work."
        )
    first = credentials[0]
    click.echo("\nGet a token and make a first call:")
    click.echo(
        f"  TOKEN=$(curl -s -u '{first.client_id}:{first.client_secret}' "
        f"-d grant_type=client_credentials {base}/oauth/token "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    click.echo(
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'X-Acting-Practitioner: sw-0042' "
        f"-H 'X-Purpose-Of-Use: pre_visit' {base}/api/v1/me"
    )
    if not no_serve:
        click.echo(f"\nServing on {base} (Ctrl+C to stop)")
        app.run(host="127.0.0.1", port=port, debug=False)
