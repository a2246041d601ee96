"""Commands for auditors: verify the chain, sign checkpoints to keep elsewhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from service.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    public_key_from_private,
    verify_checkpoint_signature,
)
from service.audit.log import (
    archive_through,
    create_checkpoint,
    latest_checkpoint,
    verify_log,
)
from service.cli import in_app, main
from service.keys import active_keys


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
    signing_key = active_keys().keyring.signing_key
    checkpoint: Checkpoint | None
    try:
        if checkpoint_file:
            checkpoint = Checkpoint.from_json(Path(checkpoint_file).read_text())
            verify_checkpoint_signature(checkpoint, public_key_from_private(signing_key))
        else:
            checkpoint = latest_checkpoint(signing_key)
    except CheckpointError as error:
        raise click.ClickException(f"checkpoint refused: {error}") from error
    report = verify_log(checkpoint, public_key_from_private(signing_key))
    click.echo(json.dumps({**report.to_json(), "checkpoint_seq": checkpoint and checkpoint.seq}))
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
@in_app(commit=True)
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
@in_app(commit=True)
def audit_checkpoint(out: str | None) -> None:
    """Sign the chain head with the key ring's Ed25519 key and keep the checkpoint."""
    checkpoint = create_checkpoint(active_keys().keyring.signing_key)
    document = json.dumps(checkpoint.to_json(), indent=2)
    if out:
        Path(out).write_text(document + "\n")
    click.echo(document)
