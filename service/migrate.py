"""Schema migrations with Alembic: the only way tables are created or changed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from service.database import db

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    """Return an Alembic configuration, bound to ``engine`` when one is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(revision: str = "head", engine: Engine | None = None) -> None:
    """Migrate the database up to ``revision``."""
    command.upgrade(alembic_config(engine or db.engine), revision)


def downgrade(revision: str, engine: Engine | None = None) -> None:
    """Migrate the database down to ``revision``."""
    command.downgrade(alembic_config(engine or db.engine), revision)


def heads() -> tuple[str, ...]:
    """Return the head revisions of the migration scripts (one in a healthy tree)."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine | None = None) -> tuple[str, ...]:
    """Return the revisions the database is stamped with."""
    with (engine or db.engine).connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def schema_is_current() -> bool:
    """Say whether the database is at the migration head."""
    return set(current_revisions()) == set(heads())
