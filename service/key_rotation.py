"""Key rotation: re-wrap every record's data key under the active key, without opening payloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update

from service.crypto import KeyProvider, rewrap_key
from service.database import Base, db
from service.models.encrypted import EncryptedRecord
from service.unit_of_work import unit_of_work


def encrypted_models() -> list[type[Any]]:
    """Return every mapped model that holds personal data."""
    return sorted(
        (
            mapper.class_
            for mapper in Base.registry.mappers
            if issubclass(mapper.class_, EncryptedRecord)
        ),
        key=lambda model: model.__tablename__,
    )


def rows_per_version() -> dict[str, dict[int, int]]:
    """Return, per table, how many rows each key version wraps."""
    counts: dict[str, dict[int, int]] = {}
    for model in encrypted_models():
        query = select(model.key_version, func.count()).group_by(model.key_version)
        counts[model.__tablename__] = {int(v): int(n) for v, n in db.session.execute(query)}
    return counts


def rows_on_version(version: int) -> int:
    """Return how many rows, across all tables, still use key ``version``."""
    return sum(per_table.get(version, 0) for per_table in rows_per_version().values())


def stale_rows(active_version: int) -> int:
    """Return how many rows are wrapped under a key other than ``active_version``."""
    return sum(
        n
        for per_table in rows_per_version().values()
        for version, n in per_table.items()
        if version != active_version
    )


def _rewrap_batch(model: type[Any], provider: KeyProvider, batch_size: int) -> int:
    rows = db.session.execute(
        select(model.id, model.key_version, model.wrapped_key)
        .where(model.key_version != provider.active_version)
        .order_by(model.id)
        .limit(batch_size)
    ).all()
    changes = []
    for record_id, version, wrapped in rows:
        new_version, new_wrapped = rewrap_key(
            provider, model.__tablename__, record_id, version, wrapped
        )
        changes.append({"id": record_id, "key_version": new_version, "wrapped_key": new_wrapped})
    if changes:
        # ORM bulk UPDATE by primary key: one executemany per batch, not a statement per row.
        db.session.execute(update(model), changes)
    return len(rows)


def rewrap_all(
    provider: KeyProvider, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
) -> int:
    """Re-wrap every stale data key, one unit of work per batch; safe to stop and run again."""
    done = 0
    for model in encrypted_models():
        while True:
            with unit_of_work():
                count = _rewrap_batch(model, provider, batch_size)
            if not count:
                break
            done += count
            if on_batch:
                on_batch(count)
    return done
