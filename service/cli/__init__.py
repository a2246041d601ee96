"""The ``alertshare`` command: one group, with subcommands in modules by concern."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from flask import Flask

from service import ConfigError, create_app
from service.database import db
from service.errors import DomainError

F = TypeVar("F", bound=Callable[..., Any])


def load_app() -> Flask:
    try:
        return create_app()
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


def in_app(commit: bool = False) -> Callable[[F], F]:
    """Run a command inside an app context; commit at the end when it changes data."""

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with load_app().app_context():
                try:
                    result = func(*args, **kwargs)
                    if commit:
                        db.session.commit()
                    return result
                except DomainError as error:
                    db.session.rollback()
                    details = "; ".join(f"{k}: {' '.join(v)}" for k, v in error.errors.items())
                    raise click.ClickException(f"{error.detail} {details}".strip()) from error
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
    from service.cli import admin, audit, keys, serve  # noqa: F401


_register()
