"""The key material records and look-ups use: loaded once per app, bound while it runs.

Models and use cases call ``active_keys()``; it answers with the keys bound in the current
context, not through Flask, so a worker or a CLI command uses the same code path as a request.
``create_app`` binds an app's keys for as long as one of its app contexts is pushed;
``keys_in_use`` binds them explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.config import ConfigError
from service.crypto import (
    BlindIndexer,
    KeyProvider,
    KeyRing,
    KeyRingError,
    LocalKeyProvider,
    generate_keyring,
    keyring_from_json,
    load_keyring,
    save_keyring,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Keys:
    """What the running app encrypts, indexes and signs with."""

    keyring: KeyRing
    provider: KeyProvider
    indexer: BlindIndexer


def load_keys(config: Mapping[str, Any]) -> Keys:
    """Load the key ring named by ``config``; development mode creates one on first use."""
    try:
        if config.get("KEYRING_JSON"):
            keyring = keyring_from_json(config["KEYRING_JSON"])
        else:
            path = Path(config["KEYRING"])
            if path.exists() or config["ENV"] == "production":
                keyring = load_keyring(path)
            else:
                keyring = generate_keyring(development=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                save_keyring(keyring, path)
                log.warning("created a development key ring; never use it for real data")
    except (KeyRingError, OSError) as error:
        raise ConfigError(f"cannot load the key ring: {error}") from error
    if config["ENV"] == "production" and keyring.development:
        raise ConfigError("refusing to start in production: the key ring is a development one")
    return Keys(keyring, LocalKeyProvider(keyring), BlindIndexer(keyring.index_root_key))


# A stack, so that one app's context pushed inside another's gives the outer keys back on pop.
_bound: ContextVar[tuple[Keys, ...]] = ContextVar("alertshare_keys", default=())


def bind_keys(keys: Keys) -> None:
    """Make ``keys`` the active keys until the matching ``unbind_keys``."""
    _bound.set((*_bound.get(), keys))


def unbind_keys() -> None:
    """Return to the keys bound before the last ``bind_keys``."""
    _bound.set(_bound.get()[:-1])


@contextmanager
def keys_in_use(keys: Keys) -> Iterator[Keys]:
    """Bind ``keys`` for the duration of the block."""
    bind_keys(keys)
    try:
        yield keys
    finally:
        unbind_keys()


def active_keys() -> Keys:
    """Return the keys bound in this context; raise if none are."""
    bound = _bound.get()
    if not bound:
        raise RuntimeError("no keys are bound: push an app context or use keys_in_use()")
    return bound[-1]
