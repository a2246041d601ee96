"""Serving the metrics: a listener of their own, apart from the API, at ``/metrics``.

Metrics are not served by the API's port: they tell anyone who reads them how busy each route
is and how deliveries fare, so they are kept off the address the proxy publishes, and a scrape
(every 15 s or so) neither needs a token nor adds an audit entry. They hold counts only: no
personal data, no ids. ``ALERTSHARE_METRICS_BIND`` (``host:port``; loopback or a private
interface) turns the listener on: gunicorn's master serves the app servers' metrics
(``service.gunicorn_conf``), each ``alertshare worker`` its own and the outbox's.

Under gunicorn every worker process writes its figures to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR``; the master, which serves no requests, adds them up at each scrape
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from service.config import metrics_address


def multiprocess_registry(directory: str | None = None) -> CollectorRegistry:
    """Every process's figures, added up from the multiprocess directory at each scrape."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def process_registry(*extra: Collector) -> CollectorRegistry:
    """This process's own figures, and ``extra`` collectors (read at each scrape)."""
    # The default registry holds names, the extras may not: keep both whatever a query asks.
    registry = CollectorRegistry(support_collectors_without_names=True)
    registry.register(REGISTRY)
    for collector in extra:
        registry.register(collector)
    return registry


def listen(bind: str, registry: CollectorRegistry) -> WSGIServer:
    """Serve ``registry`` on ``bind`` from a daemon thread; return the server (to shut down)."""
    host, port = metrics_address(bind)
    server, _ = start_http_server(port, host, registry=registry)
    return server


def stop(server: WSGIServer) -> None:
    """Stop serving and release the port."""
    server.shutdown()
    server.server_close()


@contextmanager
def serving(bind: str | None, registry: CollectorRegistry) -> Iterator[WSGIServer | None]:
    """Serve ``registry`` on ``bind`` for the duration of the block (nothing if ``bind`` is
    None or empty)."""
    if not bind:
        yield None
        return
    server = listen(bind, registry)
    try:
        yield server
    finally:
        stop(server)
