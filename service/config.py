"""Configuration: defaults, then ``ALERTSHARE_*`` environment variables, then a test's mapping."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

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
    # Rate limits (service/api/rate_limits.py): per OAuth client for requests with a live token,
    # per source address for the rest; refusals are audited as one summary entry per source
    # and window of RATE_LIMIT_SUMMARY_SECONDS. The storage is memory:// (one process) or
    # redis://... (shared by several); the key prefix separates instances sharing a Redis.
    "RATE_LIMIT_AUTHENTICATED": "600/minute",
    "RATE_LIMIT_ANONYMOUS": "60/minute",
    # Per source address, for /oauth/introspect and /oauth/revoke: a gateway introspects for
    # every request it passes on, so these get their own, larger budget.
    "RATE_LIMIT_INTROSPECTION": "600/minute",
    "RATE_LIMIT_STORAGE": "memory://",
    "RATE_LIMIT_KEY_PREFIX": "alertshare",
    "RATE_LIMIT_SUMMARY_SECONDS": 60,
    # Set when a gateway in front enforces the limits: production then accepts memory:// with
    # several workers (the app's own limits still apply, per process).
    "RATE_LIMITS_BY_GATEWAY": False,
    # How many server processes serve the app; gunicorn sets it (service/gunicorn_conf.py).
    "WORKERS": None,
    # host:port of the Prometheus metrics listener (service/metrics), off the API's address:
    # gunicorn's master serves the app servers' metrics there, each worker its own.
    "METRICS_BIND": None,
    # Networks production may send webhooks to besides public addresses (comma-separated CIDRs):
    # a partnership whose receivers sit on a private network lists it. Parsed by create_app.
    "WEBHOOK_ALLOWED_NETWORKS": "",
}

# Environment values arrive as strings; these keys are converted to int.
_INT_KEYS = {
    "TOKEN_EXPIRES_IN", "MAX_CONTENT_LENGTH", "UNUSUAL_READS_PER_HOUR", "TRUSTED_PROXIES",
    "UNACKNOWLEDGED_AFTER_HOURS", "RATE_LIMIT_SUMMARY_SECONDS", "WORKERS",
}  # fmt: skip
_FLOAT_KEYS = {"DELIVERY_TIMEOUT"}
_BOOL_KEYS = {"AUDIT", "RATE_LIMITS_BY_GATEWAY"}

MIN_SECRET_LENGTH = 32
# A random secret of 32+ characters uses far more than this many different characters (even a hex
# one, from 16); a repeated character or short pattern padded out to length uses fewer.
MIN_SECRET_DISTINCT_CHARACTERS = 8
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(?=:)")


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
            try:
                config[key] = _convert(key, value)
            except ValueError:
                raise ConfigError(f"ALERTSHARE_{key} must be a number, not {value!r}") from None
    config.update(overrides or {})
    if config["ENV"] not in MODES:
        raise ConfigError(f"ALERTSHARE_ENV must be one of {', '.join(MODES)}")
    data_dir = Path(config["DATA_DIR"]).resolve()
    config["DATA_DIR"] = str(data_dir)
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{data_dir / 'alertshare.db'}"
    config["DATABASE_URL"] = database_url(str(config["DATABASE_URL"]))
    if not config["KEYRING"] and not config["KEYRING_JSON"]:
        config["KEYRING"] = str(data_dir / "keyring.json")
    if config["METRICS_BIND"]:
        metrics_address(str(config["METRICS_BIND"]))
    return config


def metrics_address(bind: str) -> tuple[str, int]:
    """Return the host and port of a ``METRICS_BIND`` (``host:port``, ``[::1]:9464`` for IPv6),
    or refuse it in one line."""
    host, _, port = bind.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"ALERTSHARE_METRICS_BIND must be host:port, such as 127.0.0.1:9464, not {bind!r}"
        )
    return host, int(port)


def database_url(value: str) -> str:
    """Return ``value`` with its scheme in lower case, or refuse it in one line if no installed
    database driver can use it."""
    # URL schemes are case-insensitive (RFC 3986); SQLAlchemy's dialect names are not.
    url = _URL_SCHEME.sub(lambda scheme: scheme.group().lower(), value.strip(), count=1)
    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, ValueError, ImportError) as error:
        # The URL itself is not repeated: it may hold a password.
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"ALERTSHARE_DATABASE_URL is not a usable database URL: {reason}"
        ) from None
    return url


def production_problems(config: Mapping[str, Any]) -> list[str]:
    """List why ``config`` must not run in production (checks that need no database)."""
    problems = [
        problem
        for problem in (
            _secret_problem(str(config.get("SECRET_KEY") or "")),
            _issuer_problem(str(config.get("ISSUER") or "")),
        )
        if problem
    ]
    if not config.get("AUDIT", True):
        problems.append("auditing cannot be switched off in production")
    if _scheme(str(config["DATABASE_URL"])).startswith("sqlite"):
        problems.append("SQLite is the embedded development store; set a PostgreSQL DATABASE_URL")
    return problems


def _secret_problem(secret: str) -> str | None:
    # Surrounding whitespace adds nothing an attacker has to guess.
    secret = secret.strip()
    if not secret or secret == DEVELOPMENT_SECRET_KEY:
        return "ALERTSHARE_SECRET_KEY is missing or is the development secret"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"ALERTSHARE_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters"
    if len({char for char in secret if not char.isspace()}) < MIN_SECRET_DISTINCT_CHARACTERS:
        return (
            f"ALERTSHARE_SECRET_KEY uses fewer than {MIN_SECRET_DISTINCT_CHARACTERS} different "
            "characters; use a random one (python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(48))')"
        )
    return None


def _issuer_problem(issuer: str) -> str | None:
    # RFC 8414 section 2: the issuer is an https URL with a host and no query or fragment.
    must = "ALERTSHARE_ISSUER must be this server's https:// URL"
    if not issuer.strip():
        return f"{must}; it is not set"
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018 (parsed on access: raises ValueError if it is not a number)
    except ValueError:
        return f"{must}; it does not parse as a URL"
    if parts.scheme != "https" or not parts.hostname:
        return f"{must} with a host name"
    if "?" in issuer or "#" in issuer:
        return f"{must}, without a query (?) or fragment (#)"
    if parts.username is not None or any(char.isspace() for char in issuer):
        return f"{must}, without credentials or spaces"
    return None


def _scheme(url: str) -> str:
    match = _URL_SCHEME.match(url.strip())
    return match.group().lower() if match else ""
