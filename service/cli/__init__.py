"""The ``alertshare`` command: one group, with subcommands in modules by concern.

Every command that touches data runs in an app context and one unit of work, and answers a
missing or unmigrated database, an unreachable server or a bad configuration in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from service import ConfigError, create_app
from service.config import load_config
from service.database import db, engine_options
from service.errors import DomainError
from service.unit_of_work import unit_of_work

F = TypeVar("F", bound=Callable[..., Any])
# What a command needs of the database: nothing yet (it creates it), that it exists, or that it
# is at the migration head.
Needs = Literal["nothing", "database", "schema"]
UPGRADE_HINT = "run 'alertshare db upgrade' (or 'alertshare demo' for a demo instance)"


def load_app(needs: Needs = "schema") -> Flask:
    """Create the app, or stop with one line saying what is missing."""
    try:
        if needs == "nothing":
            _make_database_directory()
        else:
            _require_database_file()
        if needs == "schema":
            _require_current_schema()
        return create_app()
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    except ArgumentError as error:
        raise click.ClickException(f"ALERTSHARE_DATABASE_URL is not usable: {error}") from error


def _sqlite_path() -> Path | None:
    url = make_url(load_config()["DATABASE_URL"])
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def _make_database_directory() -> None:
    path = _sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _require_database_file() -> None:
    # An SQLite connection creates a missing file, and the app a development key ring beside
    # it: a command run in the wrong directory must not leave an empty instance behind.
    path = _sqlite_path()
    if path is not None and not path.exists():
        raise click.ClickException(f"no database at {path}: {UPGRADE_HINT}")


def _require_current_schema() -> None:
    # Checked before the app is made, which would create a development key ring.
    from service import migrate

    url = load_config()["DATABASE_URL"]
    engine = create_engine(url, **engine_options(url))
    try:
        current = migrate.current_revisions(engine)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise click.ClickException(f"cannot reach the database: {reason}") from error
    finally:
        engine.dispose()
    if set(current) != set(migrate.heads()):
        at = ", ".join(current) or "no schema"
        raise click.ClickException(f"the database is not migrated ({at}): {UPGRADE_HINT}")


def in_app(needs: Needs = "schema") -> Callable[[F], F]:
    """Run a command in an app context and one unit of work: it commits if the command ends
    normally, and rolls back if it fails."""

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with load_app(needs).app_context():
                try:
                    with unit_of_work():
                        return func(*args, **kwargs)
                except DomainError as error:
                    details = "; ".join(f"{k}: {' '.join(v)}" for k, v in error.errors.items())
                    raise click.ClickException(f"{error.detail} {details}".strip()) from error
                except SQLAlchemyError as error:
                    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
                    raise click.ClickException(f"database error: {reason}") from error
                finally:
                    db.session.remove()
                    db.engine.dispose()

        return wrapper  # type: ignore[return-value]

    return decorate


@click.group()
def main() -> None:
    """alertshare: multi-agency hostility warnings about households."""


def _register() -> None:
    # Imported for their side effect of adding commands to ``main``.
    from service.cli import admin, audit, keys, serve, worker  # noqa: F401


_register()
