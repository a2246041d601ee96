"""Configuration: defaults, then ``ALERTSHARE_*`` environment variables, then a test's mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.webhooks.schedule import DEFAULT_SCHEDULE

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-do-not-use-in-production"
MODES = ("development", "production")

DEFAULTS: dict[str, Any] = {
    "ENV": "development",
    "SECRET_KEY": DEVELOPMENT_SECRET_KEY,
    "DATA_DIR": "alertshare-data",
    "DATABASE_URL": None,  # derived from DATA_DIR when unset
    "KEYRING": None,  # derived from DATA_DIR when unset
    "KEYRING_JSON": None,
    "ISSUER": None,  # derived from the request host when unset
    "TOKEN_EXPIRES_IN": 900,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "LOG_LEVEL": "INFO",
    "UNUSUAL_READS_PER_HOUR": 20,
    "TRUSTED_PROXIES": 0,  # how many reverse proxies set X-Forwarded-For in front of us
    # Only benchmarks switch auditing off, to measure its cost; production refuses to.
    "AUDIT": True,
    # The delivery worker: seconds between webhook retries (comma-separated; the last step ends
    # the schedule, then the delivery is dead-lettered) and each attempt's time limit.
    "DELIVERY_SCHEDULE": ",".join(f"{step:g}" for step in DEFAULT_SCHEDULE),
    "DELIVERY_TIMEOUT": 5.0,
    # warning.published events nobody acknowledged within this many hours are listed to chase.
    "UNACKNOWLEDGED_AFTER_HOURS": 24,
}

# Environment values arrive as strings; these keys are converted to int.
_INT_KEYS = {
    "TOKEN_EXPIRES_IN", "MAX_CONTENT_LENGTH", "UNUSUAL_READS_PER_HOUR", "TRUSTED_PROXIES",
    "UNACKNOWLEDGED_AFTER_HOURS",
}  # fmt: skip
_FLOAT_KEYS = {"DELIVERY_TIMEOUT"}
_BOOL_KEYS = {"AUDIT"}


class ConfigError(RuntimeError):
    """The configuration cannot run safely; the message is a one-line reason."""


def _convert(key: str, value: str) -> Any:
    if key in _INT_KEYS:
        return int(value)
    if key in _FLOAT_KEYS:
        return float(value)
    if key in _BOOL_KEYS:
        return value.strip().lower() not in ("0", "false", "no", "off")
    return value


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the merged configuration: defaults, environment, then ``overrides``."""
    config = dict(DEFAULTS)
    for key in DEFAULTS:
        value = os.environ.get(f"ALERTSHARE_{key}")
        if value is not None:
            config[key] = _convert(key, value)
    config.update(overrides or {})
    if config["ENV"] not in MODES:
        raise ConfigError(f"ALERTSHARE_ENV must be one of {', '.join(MODES)}")
    data_dir = Path(config["DATA_DIR"]).resolve()
    config["DATA_DIR"] = str(data_dir)
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{data_dir / 'alertshare.db'}"
    if not config["KEYRING"] and not config["KEYRING_JSON"]:
        config["KEYRING"] = str(data_dir / "keyring.json")
    return config


def production_problems(config: Mapping[str, Any]) -> list[str]:
    """List why ``config`` must not run in production (checks that need no database)."""
    problems = []
    secret = config.get("SECRET_KEY") or ""
    if not secret or secret == DEVELOPMENT_SECRET_KEY:
        problems.append("ALERTSHARE_SECRET_KEY is missing or is the development secret")
    elif len(secret) < 32:
        problems.append("ALERTSHARE_SECRET_KEY must be at least 32 characters")
    issuer = str(config.get("ISSUER") or "")
    if not issuer.startswith("https://"):
        problems.append("ALERTSHARE_ISSUER must be set to this server's https:// URL")
    if not config.get("AUDIT", True):
        problems.append("auditing cannot be switched off in production")
    if str(config["DATABASE_URL"]).startswith("sqlite"):
        problems.append("SQLite is the embedded development store; set a PostgreSQL DATABASE_URL")
    return problems
