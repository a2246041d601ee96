"""The delivery worker command: webhooks out, review reminders and audit checkpoints."""

from __future__ import annotations

import sys

import click

from service.cli import load_app, main
from service.delivery import RECORD_SECONDS, RESOLVE_SECONDS, parse_schedule


@main.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--batch",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Deliveries claimed at a time.",
)
@click.option(
    "--lease",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds a claim holds before another worker may take it over.",
)
@click.option(
    "--poll",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds to wait when nothing is due.",
)
@click.option(
    "--checkpoint-every",
    default=900.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between audit checkpoints (0: none).",
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False),
    help="Also write each checkpoint here (keep it off the database host).",
)
@click.option("--id", "worker_id", help="This worker's name in leases (default host:pid).")
def worker(
    once: bool, batch: int, lease: float, poll: float, checkpoint_every: float,
    checkpoint_dir: str | None, worker_id: str | None,
) -> None:  # fmt: skip
    """Deliver webhooks until SIGTERM/SIGINT (graceful: the delivery in hand is finished)."""
    from service.worker import default_worker_id, run

    app = load_app()
    try:
        parse_schedule(app.config.get("DELIVERY_SCHEDULE"))  # refuse a bad one before starting
    except ValueError as error:
        raise click.ClickException(f"ALERTSHARE_DELIVERY_SCHEDULE: {error}") from error
    timeout = float(app.config["DELIVERY_TIMEOUT"])
    margin = RESOLVE_SECONDS + RECORD_SECONDS
    if lease <= timeout + margin:
        # A claim must outlast a send and its recording, or every send would be handed back.
        raise click.ClickException(
            f"--lease must be more than the delivery timeout ({timeout:g} s) plus {margin:g} s"
        )
    name = (worker_id or default_worker_id())[:64]
    sys.exit(run(app, worker_id=name, batch=batch, lease=lease, poll=poll, once=once,
                 checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir))  # fmt: skip
