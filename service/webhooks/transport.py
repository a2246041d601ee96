"""Deliver one signed webhook to a checked target and say what the worker should do next."""

from __future__ import annotations

import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from service.webhooks.addresses import DEFAULT_PORTS, CheckedTarget, IPAddress

Outcome = Literal["delivered", "retry", "failed", "gone"]

USER_AGENT = "alertshare-webhooks/1"
# Enough of a receiver's answer to show in a delivery log; the rest is never read.
EXCERPT_BYTES = 1024
# A receiver may ask us to wait, but not to park a warning's notification for days.
MAX_RETRY_AFTER = 86_400.0
# Headers the transport owns: the Host must name the checked host, whatever the caller passes.
_OWN_HEADERS = {"host", "content-type", "content-length", "transfer-encoding", "connection"}
_ERROR_CHARS = 300


@dataclass(frozen=True)
class Attempt:
    """The result of one delivery attempt.

    ``outcome``: ``delivered`` (2xx), ``retry`` (no connection, timeout, 429, 5xx), ``failed``
    (any other status, 3xx included since redirects are not followed) or ``gone`` (410: the
    receiver asks us to stop). ``status`` is None when no response came; ``error`` is a short
    line (None when delivered); ``excerpt`` is the start of the response body; ``retry_after``
    the seconds the receiver's ``Retry-After`` asked for; ``address`` the address that answered.
    """

    outcome: Outcome
    status: int | None
    error: str | None
    excerpt: str
    retry_after: float | None
    elapsed_ms: int
    address: str | None = None


class KeptConnections:
    """Connections kept open to receivers between deliveries (HTTP keep-alive), for a worker.

    Kept per checked address, with the host name TLS verifies and the trust store: a kept
    connection only ever goes where a fresh check of the URL has just said it may, so reuse opens
    no DNS-rebinding window. One connection per address; one idle over ``idle_seconds`` is
    closed rather than reused (receivers and load balancers drop idle connections, and a request
    on a dropped one would fail), and past ``most`` addresses the least recently used goes.
    """

    def __init__(self, *, idle_seconds: float = 10.0, most: int = 64) -> None:
        self.idle_seconds = idle_seconds
        self.most = most
        self._pools: OrderedDict[tuple[object, ...], tuple[HTTPConnectionPool, float]] = (
            OrderedDict()
        )

    def pool(
        self, target: CheckedTarget, address: IPAddress, ca_certs: str | None
    ) -> HTTPConnectionPool:
        """Return the pool for ``address`` (made when missing or idle too long)."""
        key = (target.scheme, address, target.port, target.hostname, ca_certs)
        now = time.monotonic()
        kept = self._pools.pop(key, None)
        if kept is not None and now - kept[1] > self.idle_seconds:
            kept[0].close()
            kept = None
        pool = kept[0] if kept is not None else _pool(target, address, ca_certs)
        self._pools[key] = (pool, now)
        while len(self._pools) > self.most:
            self._pools.popitem(last=False)[1][0].close()
        return pool

    def __len__(self) -> int:
        return len(self._pools)

    def close(self) -> None:
        """Close every kept connection."""
        while self._pools:
            self._pools.popitem()[1][0].close()


def deliver(
    target: CheckedTarget,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float = 5.0,
    ca_certs: str | None = None,
    connections: KeptConnections | None = None,
) -> Attempt:
    """POST ``body`` (JSON) with ``headers`` to ``target`` and classify the answer.

    Connects only to ``target.addresses`` (never resolving the name again), in order, moving
    to the next only when no connection could be made, so a request is sent at most once per
    call. TLS uses the hostname for SNI and certificate verification, against the system's
    trust store or the PEM bundle ``ca_certs``. Redirects are not followed. ``timeout`` bounds
    the whole call's connecting and each wait for the receiver's answer. Never raises for a
    network failure: that is an ``Attempt`` with outcome ``retry``. With ``connections``, a
    connection to the same address is reused when the receiver keeps it open; without, each
    call opens and closes its own.
    """
    started = time.monotonic()
    request_headers = {k: v for k, v in headers.items() if k.lower() not in _OWN_HEADERS}
    request_headers.update(
        {"Host": _host_header(target), "Content-Type": "application/json", "User-Agent": USER_AGENT}
    )
    errors: list[str] = []
    for address in target.addresses:
        remaining = started + timeout - time.monotonic()
        if remaining <= 0:
            errors.append(f"timed out after {timeout:g} s")
            break
        if connections is not None:
            pool = connections.pool(target, address, ca_certs)
        else:
            pool = _pool(target, address, ca_certs)
        where = _where(address, target.port)
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=request_headers,
                retries=False,
                redirect=False,
                timeout=Timeout(total=remaining),
                preload_content=False,
                release_conn=False,
                decode_content=False,
            )
        except (NewConnectionError, ConnectTimeoutError) as exc:
            # Nothing was sent, so the next address cannot receive a duplicate.
            errors.append(f"{_describe(exc)} ({where})")
            continue
        except (HTTPError, OSError) as exc:
            return _no_answer(f"{_describe(exc)} ({where})", started, str(address))
        else:
            try:
                return _answered(response, started, str(address))
            finally:
                if connections is None or response.length_remaining != 0:
                    # Not kept, or a body left unread (never read past the excerpt): closing
                    # is cheaper and safer than draining what a receiver chose to send.
                    response.close()
                response.release_conn()
        finally:
            if connections is None:
                pool.close()
    return _no_answer("; ".join(errors) or "no address to connect to", started, None)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` value asks for (delta-seconds or an HTTP-date).

    None when absent or unreadable; a date in the past is 0; capped at ``MAX_RETRY_AFTER``.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:
            # An HTTP-date is always GMT; "-0000" comes back naive.
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _pool(target: CheckedTarget, address: IPAddress, ca_certs: str | None) -> HTTPConnectionPool:
    # One connection per pool: a worker sends one delivery at a time.
    if target.scheme == "https":
        return HTTPSConnectionPool(
            str(address),
            target.port,
            maxsize=1,
            retries=False,
            cert_reqs=ssl.CERT_REQUIRED,
            ca_certs=ca_certs,
            # The socket goes to the checked address; TLS is about the name the caller gave.
            server_hostname=target.hostname,
            assert_hostname=target.hostname,
        )
    return HTTPConnectionPool(str(address), target.port, maxsize=1, retries=False)


def _answered(response: BaseHTTPResponse, started: float, address: str) -> Attempt:
    status = response.status
    try:
        raw = response.read(EXCERPT_BYTES)
    except (HTTPError, OSError):
        # The status already says what happened; a body that stalls or breaks changes nothing.
        raw = b""
    outcome = _outcome(status)
    return Attempt(
        outcome=outcome,
        status=status,
        error=None if outcome == "delivered" else f"HTTP {status}",
        excerpt=raw.decode("utf-8", errors="replace"),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        elapsed_ms=_elapsed_ms(started),
        address=address,
    )


def _no_answer(error: str, started: float, address: str | None) -> Attempt:
    return Attempt("retry", None, error[:_ERROR_CHARS], "", None, _elapsed_ms(started), address)


def _outcome(status: int) -> Outcome:
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status == 429 or status >= 500:
        return "retry"
    return "failed"


def _describe(exc: BaseException) -> str:
    """Return one short line for a network failure (no traceback, no urllib3 internals)."""
    if isinstance(exc, NewConnectionError):
        cause = exc.__cause__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else "failed"
        return f"could not connect: {reason.lower()}"
    if isinstance(exc, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, ReadTimeoutError):
        return "no response in time"
    if isinstance(exc, SSLError):
        cause = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc
        detail = getattr(cause, "verify_message", None) or str(cause)
        return f"TLS failed: {_one_line(detail)}"
    if isinstance(exc, ProtocolError):
        return "connection broken before a response"
    return f"{type(exc).__name__}: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text).splitlines()[0][:_ERROR_CHARS] if text else ""


def _host_header(target: CheckedTarget) -> str:
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    return host if DEFAULT_PORTS[target.scheme] == target.port else f"{host}:{target.port}"


def _where(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
