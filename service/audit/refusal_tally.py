"""Where refusals over a rate limit are counted until their summary entry is written.

A request refused over a rate limit gets no audit entry of its own (a flood would grow the log
without bound); it is counted here, per source and window, and ``refusals`` writes one summary
entry for each window once it has closed. Counting lives in the rate limiter's own storage: in
process memory for one process (the embedded default), in Redis when several processes share
the limits, so their refusals from one source in one window add up to one count.

A window is claimed before its summary is written and completed after the commit; a claim
whose writer died runs out after ``CLAIM_LEASE_SECONDS`` and the next writer takes it over
(the summary's id, chosen when the window opened, lets it see whether the entry was already
written). Refusals still arriving for a claimed window (a slow request, a skewed clock) open a
fresh count under a new id, written as a summary of its own: nothing is counted twice or lost.

A Redis that fails (down, or not answering) is not asked again for ``REDIS_RETRY_SECONDS``:
meanwhile the tally refuses at once (``TallyUnavailable``) and each refusal is recorded on its
own, rather than every refused request waiting out the socket timeout.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

import redis

from service.audit.chain import format_timestamp

# A window is written once it has been closed this long: refusals taken by another process
# just before it closed (clocks a little apart) have landed by then.
CLOSING_GRACE_SECONDS = 2.0
CLAIM_LEASE_SECONDS = 60.0
# After a Redis failure, how long the tally leaves Redis alone.
REDIS_RETRY_SECONDS = 10.0

log = logging.getLogger(__name__)
Result = TypeVar("Result")


class TallyUnavailable(RuntimeError):
    """The tally's storage failed moments ago and is not being asked until it may be back."""


@dataclass(frozen=True)
class Refusal:
    """A request refused over a rate limit: whom it counted against, and where it came from."""

    source: str  # the limit's key: "client:<client id>" or "address:<address>"
    address: str | None
    client_id: str | None = None
    agency_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class RefusalWindow:
    """The refusals of one source in one window, claimed for their summary entry."""

    key: str
    summary_id: str  # unique to this count: the entry that records it carries it
    refusal: Refusal  # the first refusal counted (its address and request id)
    window_start: str
    count: int
    first: str  # canonical UTC timestamps of the first and last refusal counted
    last: str


class RefusalTally(Protocol):
    """Counts refusals per source and window until their summary is written."""

    def record(self, refusal: Refusal, at: datetime) -> None:
        """Count ``refusal`` in its source's window at ``at``."""

    def closed(self, now: datetime, limit: int = 100) -> list[str]:
        """Return the keys of up to ``limit`` windows closed by ``now`` with refusals to write."""

    def claim(self, key: str, now: datetime) -> RefusalWindow | None:
        """Take a closed window for writing; None if another writer holds it or it is gone."""

    def complete(self, key: str) -> None:
        """Forget a claimed window: its summary entry is committed."""

    def release(self, key: str) -> None:
        """Give a claimed window back unwritten, for the next writer."""


def window_of(at: datetime, seconds: int) -> tuple[int, int]:
    """Return the (start, end) epoch seconds of the ``seconds``-long window holding ``at``."""
    start = math.floor(at.timestamp() / seconds) * seconds
    return start, start + seconds


def _timestamp(epoch: float) -> str:
    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


@dataclass
class _Count:
    summary_id: str
    refusal: Refusal
    window_start: str
    window_end: int
    count: int
    first: str
    last: str

    def add(self, other: _Count) -> None:
        self.count += other.count
        self.first, self.last = min(self.first, other.first), max(self.last, other.last)

    def claimed(self, key: str) -> RefusalWindow:
        return RefusalWindow(key, self.summary_id, self.refusal, self.window_start, self.count,
                             self.first, self.last)  # fmt: skip


class MemoryTally:
    """One process's refusals, in its memory (the embedded default: one process serves).

    Counts not yet written when the process ends are lost with it, as are its rate limits.
    """

    def __init__(self, window_seconds: int) -> None:
        self.window_seconds = window_seconds
        self._open: dict[str, _Count] = {}
        self._claimed: dict[str, _Count] = {}
        self._lock = threading.Lock()

    def record(self, refusal: Refusal, at: datetime) -> None:
        start, end = window_of(at, self.window_seconds)
        key, stamp = f"{refusal.source}|{start}", format_timestamp(at)
        count = _Count(uuid.uuid4().hex, refusal, _timestamp(start), end, 1, stamp, stamp)
        with self._lock:
            if key in self._open:
                self._open[key].add(count)
            else:
                self._open[key] = count

    def closed(self, now: datetime, limit: int = 100) -> list[str]:
        cutoff = now.timestamp() - CLOSING_GRACE_SECONDS
        with self._lock:
            due = [key for key, count in self._open.items() if count.window_end <= cutoff]
        return due[:limit]

    def claim(self, key: str, now: datetime) -> RefusalWindow | None:
        with self._lock:
            if key in self._claimed or key not in self._open:
                return None
            count = self._claimed[key] = self._open.pop(key)
            return count.claimed(key)

    def complete(self, key: str) -> None:
        with self._lock:
            self._claimed.pop(key, None)

    def release(self, key: str) -> None:
        with self._lock:
            count = self._claimed.pop(key, None)
            if count is None:
                return
            later = self._open.get(key)
            if later is not None:
                count.add(later)  # one count, under the id chosen first
            self._open[key] = count


# KEYS: window, index. ARGV: summary id, timestamp, address, client id, agency id, request id,
# source, window end, window start. Opens the window (indexed by its end) or adds to it.
_RECORD = """
if redis.call('HSETNX', KEYS[1], 'summary_id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'first', ARGV[2], 'last', ARGV[2], 'address', ARGV[3],
             'client_id', ARGV[4], 'agency_id', ARGV[5], 'request_id', ARGV[6],
             'source', ARGV[7], 'window_start', ARGV[9])
  redis.call('ZADD', KEYS[2], ARGV[8], KEYS[1])
else
  if ARGV[2] < redis.call('HGET', KEYS[1], 'first') then
    redis.call('HSET', KEYS[1], 'first', ARGV[2])
  end
  if ARGV[2] > redis.call('HGET', KEYS[1], 'last') then
    redis.call('HSET', KEYS[1], 'last', ARGV[2])
  end
end
return redis.call('HINCRBY', KEYS[1], 'count', 1)
"""
# KEYS: window, its claimed copy, index. ARGV: now, lease end. Moves the count aside (later
# refusals open a fresh one) or takes over a claim whose lease ran out; returns its fields.
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  if tonumber(redis.call('HGET', KEYS[2], 'lease') or '0') > tonumber(ARGV[1]) then
    return false
  end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  redis.call('ZREM', KEYS[3], KEYS[1])
  return false
end
redis.call('HSET', KEYS[2], 'lease', ARGV[2])
return redis.call('HGETALL', KEYS[2])
"""
# KEYS: window, its claimed copy, index. The window leaves the index unless refusals reopened it.
_COMPLETE = """
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[3], KEYS[1])
end
return 1
"""


class RedisTally:
    """Refusals counted in Redis, shared by every process using the same storage and prefix."""

    def __init__(self, url: str, prefix: str, window_seconds: int, **options: Any) -> None:
        self.window_seconds = window_seconds
        self.client = redis.Redis.from_url(url, decode_responses=True, **options)
        self.index = f"{prefix}:refusals"
        self._record = self.client.register_script(_RECORD)
        self._claim = self.client.register_script(_CLAIM)
        self._complete = self.client.register_script(_COMPLETE)
        self._retry_at = 0.0  # monotonic time before which Redis is left alone

    def _call(self, command: Callable[[], Result]) -> Result:
        """Run ``command`` against Redis, unless Redis failed in the last few seconds."""
        if time.monotonic() < self._retry_at:
            raise TallyUnavailable("Redis failed moments ago")
        try:
            return command()
        except redis.RedisError as error:
            self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
            log.warning("Redis failed (%s): refusals are recorded one entry each for the next "
                        "%g s", type(error).__name__, REDIS_RETRY_SECONDS)  # fmt: skip
            raise

    def record(self, refusal: Refusal, at: datetime) -> None:
        start, end = window_of(at, self.window_seconds)
        key = f"{self.index}:{refusal.source}:{start}"
        self._call(lambda: self._record(keys=[key, self.index], args=[
            uuid.uuid4().hex, format_timestamp(at), refusal.address or "",
            refusal.client_id or "", refusal.agency_id or "", refusal.request_id or "",
            refusal.source, end, _timestamp(start),
        ]))  # fmt: skip

    def closed(self, now: datetime, limit: int = 100) -> list[str]:
        cutoff = now.timestamp() - CLOSING_GRACE_SECONDS
        keys = self._call(
            lambda: self.client.zrangebyscore(self.index, "-inf", cutoff, start=0, num=limit)
        )
        return cast(list[str], keys)

    def claim(self, key: str, now: datetime) -> RefusalWindow | None:
        moment = now.timestamp()
        keys, lease = [key, f"{key}:claimed", self.index], [moment, moment + CLAIM_LEASE_SECONDS]
        found = self._call(lambda: self._claim(keys=keys, args=lease))
        if not found:
            return None
        fields = dict(zip(found[::2], found[1::2], strict=True))
        refusal = Refusal(
            fields["source"], fields["address"] or None, fields["client_id"] or None,
            fields["agency_id"] or None, fields["request_id"] or None,
        )  # fmt: skip
        return RefusalWindow(key, fields["summary_id"], refusal, fields["window_start"],
                             int(fields["count"]), fields["first"], fields["last"])  # fmt: skip

    def complete(self, key: str) -> None:
        self._call(lambda: self._complete(keys=[key, f"{key}:claimed", self.index]))

    def release(self, key: str) -> None:
        self._call(lambda: self.client.hdel(f"{key}:claimed", "lease"))


def tally_for(storage_url: str, prefix: str, window_seconds: int, **options: Any) -> RefusalTally:
    """Return the tally kept beside the rate limiter's storage at ``storage_url``."""
    if storage_url.startswith("memory://"):
        return MemoryTally(window_seconds)
    # The rate limiter's name for a Unix socket; redis-py's is unix://.
    url = storage_url.replace("redis+unix://", "unix://", 1)
    return RedisTally(url, prefix, window_seconds, **options)
