"""Alembic environment: runs migrations on the engine the caller hands over."""

from alembic import context

import service.models  # noqa: F401  (registers every table on the metadata)
from service.database import Base

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
