"""Commands for auditors: verify the chain, sign checkpoints to keep elsewhere."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from service.audit.append import current_head_seq
from service.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    public_key_from_private,
    verify_checkpoint_signature,
)
from service.audit.retention import archive_through
from service.audit.verification import (
    create_checkpoint,
    verify_log,
    verify_with_stored_checkpoints,
)
from service.cli import in_app, main
from service.keys import active_keys
from service.unit_of_work import unit_of_work


@main.group("audit")
def audit_group() -> None:
    """Verify the audit log and sign checkpoints of it."""


@audit_group.command("verify")
@click.option(
    "--from-checkpoint", "checkpoint_file", type=click.Path(exists=True, dir_okay=False),
    help="A checkpoint exported earlier and kept outside the service.",
)  # fmt: skip
@in_app()
def audit_verify(checkpoint_file: str | None) -> None:
    """Walk the hash chain; exit 1 and name the first bad entry if it is not intact."""
    public_key = public_key_from_private(active_keys().keyring.signing_key)
    checkpoint_seq: int | None
    if checkpoint_file:
        try:
            checkpoint = Checkpoint.from_json(Path(checkpoint_file).read_text())
            verify_checkpoint_signature(checkpoint, public_key)
        except CheckpointError as error:
            raise click.ClickException(f"checkpoint refused: {error}") from error
        report, checkpoint_seq = verify_log(checkpoint, public_key), checkpoint.seq
    else:
        report, checkpoint_seq = verify_with_stored_checkpoints(public_key)
    click.echo(json.dumps({**report.to_json(), "checkpoint_seq": checkpoint_seq}))
    if not report.ok:
        sys.exit(1)


@audit_group.command("archive")
@click.option("--through", "through_seq", type=int, required=True, help="Last seq to archive.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, exists=False),
    required=True,
    help="JSON Lines export of the archived entries (keep it: it is the record).",
)
@in_app()
def audit_archive(through_seq: int, out: str) -> None:
    """Export entries up to --through, leave a signed truncation record, then remove them."""
    path = Path(out)
    if path.exists():
        raise click.ClickException(f"{path} exists; refusing to overwrite an export")
    try:
        with path.open("xb") as export:
            record = archive_through(through_seq, export, active_keys().keyring.signing_key)
    except ValueError as error:
        path.unlink(missing_ok=True)
        raise click.ClickException(str(error)) from error
    click.echo(
        f"archived {record.entries} entries through seq {record.through_seq} to {path} "
        f"(sha256 {record.export_sha256})"
    )


@audit_group.command("checkpoint")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the checkpoint here.")
@in_app()
def audit_checkpoint(out: str | None) -> None:
    """Sign the chain head with the key ring's Ed25519 key and keep the checkpoint."""
    document = _checkpoint_document()
    if out:
        Path(out).write_text(document + "\n")
    click.echo(document)


@audit_group.command("checkpoints")
@click.option("--every", type=float, default=900.0, show_default=True, help="Seconds between.")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Where to write checkpoint-<seq>.json files (keep it off the database host).",
)
@click.option("--count", type=int, default=0, help="Stop after this many (0: run until stopped).")
@in_app()
def audit_checkpoints(every: float, out_dir: str, count: int) -> None:
    """Sign and export a checkpoint periodically, skipping when the head has not moved."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    made, last_seq = 0, None
    while True:
        # One unit of work per checkpoint: a long wait must not hold a snapshot or a lock.
        with unit_of_work():
            head = current_head_seq()
            document = _checkpoint_document() if head != last_seq else None
        if document is not None:
            (directory / f"checkpoint-{head:012d}.json").write_text(document + "\n")
            click.echo(f"checkpoint at seq {head}")
            made, last_seq = made + 1, head
        if count and made >= count:
            return
        time.sleep(every)


def _checkpoint_document() -> str:
    checkpoint = create_checkpoint(active_keys().keyring.signing_key)
    return json.dumps(checkpoint.to_json(), indent=2)
