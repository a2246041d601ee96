"""WSGI entry point for gunicorn: ``gunicorn service.wsgi:app``."""

import sys

from gunicorn.arbiter import Arbiter

from service import ConfigError, create_app

try:
    app = create_app()
except ConfigError as error:
    # A setting the operator must fix: say it in one line, not a traceback, and exit with
    # gunicorn's "worker failed to boot" so its master stops instead of forking workers for ever.
    print(f"alertshare: {error}", file=sys.stderr)
    raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None
