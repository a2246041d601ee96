"""Commands that serve the API: production serving and the demo instance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import click

from service import migrate
from service.cli import load_app, main
from service.database import db, today
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
    from service.demo import seed_demo, seed_demo_household

    app = load_app(needs="nothing")
    if app.config["ENV"] == "production":
        raise click.ClickException("the demo runs in development mode only")
    with app.app_context():
        migrate.upgrade()
        with unit_of_work():
            credentials = seed_demo()
            household_id = seed_demo_household(today()).id
        db.session.remove()
        db.engine.dispose()
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
    click.echo(
        f"\nDemo household {household_id}: 14 Orchard Way, Maidstone ME14 2AB (UPRN "
        "100062123456); Kent children's services work with it and have warned about it."
    )
    base = f"http://127.0.0.1:{port}"
    _print_first_calls(credentials, household_id, base)
    if not no_serve:
        worker = _start_worker()
        click.echo(f"\nServing on {base}, with a delivery worker for webhooks (pid {worker.pid}); "
                   "Ctrl+C stops both")  # fmt: skip
        # SIGTERM ends the demo as Ctrl+C does, so the worker is stopped with it.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        try:
            app.run(host="127.0.0.1", port=port, debug=False)
        finally:
            worker.terminate()  # SIGTERM: it finishes the delivery in hand and exits
            worker.wait(timeout=15)


def _start_worker() -> subprocess.Popen[bytes]:
    """The delivery worker beside the demo server: a process of its own, as in production, with
    the same settings and data directory (inherited environment and working directory)."""
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--poll", "0.5"])


def _print_first_calls(credentials: list[Any], household_id: str, base: str) -> None:
    """Print curl commands to paste: a token, the caller, then the health visitor's look-up,
    involvement and briefing."""
    acting = "-H 'X-Acting-Practitioner: hv-0007' -H 'X-Purpose-Of-Use: pre_visit'"
    token = "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    health = credentials[1]
    click.echo(f"\nAs the health visitor ({health.agency_id}), get a token:")
    click.echo(f"  TOKEN=$(curl -s -u '{health.client_id}:{health.client_secret}' "
               f"-d grant_type=client_credentials {base}/oauth/token {token}")  # fmt: skip
    auth = f'-H "Authorization: Bearer $TOKEN" {acting}'
    json_body = "-H 'Content-Type: application/json'"
    click.echo("Who am I:")
    click.echo(f"  curl -s {auth} {base}/api/v1/me")
    click.echo(
        "Look the address up (the flag view: is there a warning, how serious, whom to call):"
    )
    click.echo(f"  curl -s {auth} {json_body} -d '{{\"address\": {{\"line1\": \"14 orchard way\", "
               f"\"postcode\": \"me142ab\"}}}}' {base}/api/v1/households/lookup")  # fmt: skip
    click.echo("Declare that your agency works with the family (this unlocks the detail):")
    click.echo(f"  curl -s {auth} {json_body} -d '{{\"household\": {{\"household_id\": "
               f"\"{household_id}\"}}, \"case_reference\": \"HV-5521\", \"lead_practitioner\": "
               f"{{\"name\": \"Sam Patel\", \"contact\": \"01634 555010\"}}}}' "
               f"{base}/api/v1/involvements")  # fmt: skip
    click.echo("Read the pre-visit briefing:")
    click.echo(f"  curl -s {auth} {base}/api/v1/households/{household_id}/briefing")
