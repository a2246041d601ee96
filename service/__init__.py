"""alertshare: multi-agency hostility warnings about households."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, appcontext_popped, appcontext_pushed
from flask.sessions import NullSession, SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from service.config import ConfigError, load_config, production_problems


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the application from defaults, ``ALERTSHARE_*`` environment and ``config``."""
    from service import logs, oauth
    from service.api import (
        access,
        body_limit,
        ops,
        problems,
        rate_limits,
        recording,
        request_log,
        tokens,
        v1,
    )
    from service.database import db, engine_options

    settings = load_config(config)
    settings["WEBHOOK_ALLOWED_NETWORKS"] = _webhook_networks(settings["WEBHOOK_ALLOWED_NETWORKS"])
    if settings["ENV"] == "production":
        found = production_problems(settings) + rate_limits.rate_limit_problems(settings)
        if found:
            raise ConfigError("refusing to start in production: " + found[0])

    app = Flask(__name__, static_folder=None)
    app.config.update(settings)
    app.session_interface = NoCookieSessions()
    # Automatic OPTIONS answers would bypass the views' policies yet count as allowed requests.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    body_limit.init_app(app)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings["DATABASE_URL"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(settings["DATABASE_URL"])
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if settings["TRUSTED_PROXIES"]:
        # Behind a load balancer the audit log must record the client, not the proxy.
        proxies = int(settings["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)  # type: ignore[method-assign]

    logs.configure_logging(settings["LOG_LEVEL"])
    _bind_keys(app)
    db.init_app(app)
    # Hooks run in this order before a view; after it, in reverse: the unit of work closes
    # before the request is logged, so the log line shows the final status.
    request_log.init_app(app)
    recording.init_app(app)
    rate_limits.init_app(app)  # after the entry opens (a refusal is counted), before the token
    app.before_request(access.authorize)
    oauth.init_app(app)
    problems.register_problem_handlers(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(v1.bp)

    if settings["ENV"] == "production":
        with app.app_context():
            _refuse_unsafe_database()
    return app


class NoCookieSessions(SessionInterface):
    """No Flask sessions: callers authenticate with bearer tokens on every request, so no
    cookie is ever read or set, and code that writes to ``flask.session`` fails loudly. (Flask's
    signed-cookie sessions would also cost each request a serializer and a cookie parse.)"""

    def open_session(self, app: Flask, request: Any) -> NullSession:
        return _NoSession()

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


class _NoSession(NullSession):
    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("alertshare keeps no cookie sessions: callers send a bearer token")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail


def _webhook_networks(value: Any) -> tuple[Any, ...]:
    """Parse ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS once, or refuse to start in one line."""
    from service.webhooks.addresses import allowed_networks

    try:
        return allowed_networks(value or "")
    except ValueError as error:
        raise ConfigError(f"ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS: {error}") from None


def _bind_keys(app: Flask) -> None:
    """Load the app's keys once; bind them whenever one of its app contexts is pushed."""
    from service.keys import bind_keys, load_keys, unbind_keys

    keys = load_keys(app.config)

    def pushed(sender: Flask, **extra: Any) -> None:
        bind_keys(keys)

    def popped(sender: Flask, **extra: Any) -> None:
        unbind_keys()

    appcontext_pushed.connect(pushed, app, weak=False)
    appcontext_popped.connect(popped, app, weak=False)


def _refuse_unsafe_database() -> None:
    """Refuse to run production on a PostgreSQL server that may lose committed writes."""
    from sqlalchemy import text

    from service.database import db

    try:
        with db.engine.connect() as connection:
            for setting in ("synchronous_commit", "fsync"):
                value = connection.execute(text(f"SHOW {setting}")).scalar()
                if value == "off":
                    raise ConfigError(
                        f"refusing to start in production: PostgreSQL {setting} is off"
                    )
    finally:
        # Forked servers (gunicorn) must not inherit this connection.
        db.engine.dispose()


__all__ = ["ConfigError", "create_app"]
