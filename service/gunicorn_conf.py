"""gunicorn settings for production serving (``alertshare serve`` passes this module)."""

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
