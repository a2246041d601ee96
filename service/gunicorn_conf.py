"""gunicorn settings for production serving (``alertshare serve`` passes this module)."""

import os
from typing import Any

# Sync workers: on this class of machine gthread workers did not beat them.
worker_class = "sync"
timeout = 30
graceful_timeout = 20
# Access logs would repeat the app's own request log; the app log never holds query strings.
accesslog = None
errorlog = "-"
# gunicorn 27's control socket has one default path per user, shared by every instance on a
# host; nothing here uses it.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Tell the app, before any worker starts, how many workers serve it: its production checks
    refuse rate limits counted per process when several workers would each allow the limit."""
    os.environ["ALERTSHARE_WORKERS"] = str(server.cfg.workers)
