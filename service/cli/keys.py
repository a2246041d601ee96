"""Commands for the key ring: create, rotate, re-wrap, retire and report."""

from __future__ import annotations

from pathlib import Path

import click

from service import key_rotation
from service.cli import in_app, main
from service.config import ConfigError, load_config
from service.crypto import KeyRingError, generate_keyring, load_keyring, save_keyring
from service.keys import active_keys


@main.group("keys")
def keys_group() -> None:
    """Manage the key ring (key-encryption keys, blind-index key, audit signing key)."""


def _keyring_path() -> Path:
    try:
        config = load_config()
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    if config["KEYRING_JSON"]:
        raise click.ClickException(
            "the key ring comes from ALERTSHARE_KEYRING_JSON; change it where it is kept"
        )
    return Path(config["KEYRING"])


@keys_group.command("init")
def keys_init() -> None:
    """Create a new key ring file (mode 0600); refuses to overwrite one."""
    path = _keyring_path()
    if path.exists():
        raise click.ClickException(f"{path} exists; refusing to overwrite a key ring")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_keyring(generate_keyring(development=False), path)
    click.echo(f"created key ring {path} (key version 1). Back it up: without it data is lost.")


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Add a new key-encryption key version and make it active."""
    path = _keyring_path()
    try:
        keyring = load_keyring(path).rotated()
    except KeyRingError as error:
        raise click.ClickException(str(error)) from error
    save_keyring(keyring, path)
    click.echo(
        f"key version {keyring.active_version} is active. Restart the servers, then run "
        "'alertshare keys rewrap'."
    )


@keys_group.command("rewrap")
@click.option("--batch-size", default=500, show_default=True)
@in_app()
def keys_rewrap(batch_size: int) -> None:
    """Re-wrap every data key under the active version (resumable; payloads stay sealed)."""
    provider = active_keys().provider
    total = key_rotation.stale_rows(provider.active_version)
    with click.progressbar(length=total, label="re-wrapping data keys", file=None) as bar:
        done = key_rotation.rewrap_all(provider, batch_size, on_batch=bar.update)
    click.echo(f"re-wrapped {done} records under key version {provider.active_version}")


@keys_group.command("retire")
@click.argument("version", type=int)
@in_app()
def keys_retire(version: int) -> None:
    """Remove key VERSION from the key ring once no row uses it."""
    in_use = key_rotation.rows_on_version(version)
    if in_use:
        raise click.ClickException(
            f"{in_use} records still use key version {version}; run 'alertshare keys rewrap'"
        )
    path = _keyring_path()
    try:
        keyring = load_keyring(path).without_version(version)
    except KeyRingError as error:
        raise click.ClickException(str(error)) from error
    save_keyring(keyring, path)
    click.echo(f"retired key version {version}")


@keys_group.command("status")
@in_app()
def keys_status() -> None:
    """Report the active key version and how many rows each version wraps."""
    keyring = active_keys().keyring
    click.echo(f"active key version: {keyring.active_version}")
    click.echo(f"versions in key ring: {', '.join(map(str, sorted(keyring.keks)))}")
    for table, counts in key_rotation.rows_per_version().items():
        summary = ", ".join(f"v{v}: {n}" for v, n in sorted(counts.items())) or "no rows"
        click.echo(f"  {table}: {summary}")
