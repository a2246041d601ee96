"""gunicorn settings for alertshare app servers behind nginx (deploy/nginx/alertshare.conf).

Run as ``gunicorn --config deploy/gunicorn.conf.py`` (the image copies it to
/etc/alertshare/gunicorn.conf.py). It builds on the app's own ``service.gunicorn_conf``, which
``alertshare serve`` uses too: sync workers, their timeouts, and the server hooks the app relies
on (telling it how many workers serve it, and whatever else that module grows). This file adds
what a deployment decides: where to listen, how many workers, which proxy to believe, and
request limits no stricter than nginx's, so that nginx, which answers with problem documents,
is always the one to refuse. Command-line options (``--bind``, ``--workers``) win over it.
"""

import math
import os

from service.gunicorn_conf import *  # noqa: F403 (the app's settings and hooks, all of them)

wsgi_app = "service.wsgi:app"
# Containers: every address, port 8000 (nginx's upstreams, the compose services and the
# Kubernetes Service all say 8000). deploy/local passes --bind 127.0.0.1:PORT.
bind = ["0.0.0.0:8000"]


def _cores() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's
    limit), so a container on a large host does not start a worker per host core."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as limits:
            quota, period = limits.read().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


# Sync workers, one request each at a time: 2 x cores + 1 keeps the CPUs busy while some wait on
# PostgreSQL. WEB_CONCURRENCY (or --workers) overrides it.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * _cores() + 1)

# X-Forwarded-Proto is believed only from these addresses. The app itself trusts one proxy
# (ALERTSHARE_TRUSTED_PROXIES=1). In containers only nginx or the ingress can reach port 8000
# (compose's network, the Kubernetes NetworkPolicy), so they set FORWARDED_ALLOW_IPS="*".
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# nginx refuses a request line over 4094 bytes and header lines over 4 KiB
# (large_client_header_buffers 4 4k), 16 KiB of headers in all: gunicorn's own limits sit at or
# above those, so a request nginx lets through is never refused here with a plain-text 400.
# The header count is bounded by those 16 KiB (at 4 bytes a line at least), so it is set to
# gunicorn's maximum.
limit_request_line = 4094
limit_request_field_size = 8190
limit_request_fields = 32768

# Recycle workers now and then (staggered), so slow growth in one never becomes an outage.
max_requests = 10000
max_requests_jitter = 1000

# The workers' heartbeat files: in memory when /dev/shm is writable (a read-only root filesystem
# leaves /tmp to a tmpfs or emptyDir, which also works).
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

proc_name = "alertshare"
