"""gunicorn settings for production serving (``alertshare serve`` passes this module).

Metrics (``service.metrics``): with ``ALERTSHARE_METRICS_BIND`` set, the master serves
``/metrics`` on that address, adding up what every worker counted. Workers write their figures
to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode):
the operator's directory, emptied at start (it must serve this one server alone), or else a
private one (mode 0700) made at start and removed at exit. A worker that dies keeps its counts:
its files stay and are still added up, so counters never go backwards.
"""

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from service.config import ConfigError, metrics_address

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

METRICS_BIND = "ALERTSHARE_METRICS_BIND"
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The master's metrics listener, and the multiprocess directory it made (removed at exit).
_metrics: dict[str, Any] = {}


def on_starting(server: Any) -> None:
    """Tell the app, before any worker starts, how many workers serve it: its production checks
    refuse rate limits counted per process when several workers would each allow the limit.
    Prepare the metrics' multiprocess directory before any worker can count into memory."""
    os.environ["ALERTSHARE_WORKERS"] = str(server.cfg.workers)
    bind = os.environ.get(METRICS_BIND)
    if bind:
        try:
            metrics_address(bind)
        except ConfigError as error:
            _refuse(server, str(error))
        _prepare_multiprocess_directory(server)


def _prepare_multiprocess_directory(server: Any) -> None:
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROCESS_DIR):
        # Loaded already (the app preloaded in the master): its counters are per process now.
        _refuse(server, f"{METRICS_BIND} with a preloaded app needs {MULTIPROCESS_DIR} set")
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
        # Files left by an earlier run would be added to this run's figures.
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="alertshare-metrics-")  # mode 0700
        os.environ[MULTIPROCESS_DIR] = _metrics["made"] = directory


def when_ready(server: Any) -> None:
    """Serve the metrics of every worker from the master, which serves no requests itself."""
    bind = os.environ.get(METRICS_BIND)
    if not bind:
        return
    from service.metrics.exposition import listen, multiprocess_registry

    try:
        _metrics["listener"] = listen(bind, multiprocess_registry())
    except OSError as error:  # the port is taken, or the address is not this host's
        _refuse(server, f"cannot serve metrics on {bind}: {error}")
    server.log.info("Metrics at http://%s/metrics", bind)


def post_fork(server: Any, worker: Any) -> None:
    """A worker must not hold the master's metrics port open (it would outlive the master)."""
    listener = _metrics.get("listener")
    if listener is not None:
        listener.socket.close()


def post_worker_init(worker: Any) -> None:
    """Keep the loaded application out of the garbage collector's way (``gc.freeze``).

    The ~150,000 objects the worker made loading the app (modules, mappers, the statements
    built at import, schema classes) live as long as it does, yet every full collection walks
    them all: one took ~70 ms, and a request pays for the collections its allocations trigger
    (about 2% of the look-up's and briefing's CPU, in its p99 most). Frozen, they are left out
    of every collection; what requests allocate is collected as before.
    """
    gc.collect()  # what loading left unreachable goes now, not frozen with the rest
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Let prometheus-client forget a dead worker's live gauges (its counts are kept)."""
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Stop serving metrics; remove the multiprocess directory if this server made it."""
    listener = _metrics.pop("listener", None)
    if listener is not None:
        from service.metrics.exposition import stop

        stop(listener)
    made = _metrics.pop("made", None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def _refuse(server: Any, reason: str) -> None:
    # One line, as the app's own refusals are, and no workers started.
    server.log.error("alertshare: %s", reason)
    made = _metrics.pop("made", None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
    raise SystemExit(1)
