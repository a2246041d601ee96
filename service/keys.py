"""The app's key material: loaded once at start-up, then handed to records and indexes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app

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
EXTENSION = "alertshare.keys"


@dataclass(frozen=True)
class Keys:
    """What the running app encrypts, indexes and signs with."""

    keyring: KeyRing
    provider: KeyProvider
    indexer: BlindIndexer


def load_keys(config: dict[str, Any]) -> Keys:
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


def init_app(app: Flask) -> None:
    """Load the key ring once for ``app``."""
    app.extensions[EXTENSION] = load_keys(app.config)


def active_keys() -> Keys:
    """Return the current app's keys."""
    keys: Keys = current_app.extensions[EXTENSION]
    return keys
