"""When to try a failed webhook again, and when to give up and dead-letter it.

The schedule is a table rather than a formula so that it reads as what it promises. The
default waits 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, 24 h and 24 h between
attempts: 12 attempts over at most 254,555 s (2 days 22 h 42 min 35 s), so an agency's
receiver may be down for a long weekend and still get every notification. Each wait is jittered
down by up to ``JITTER`` of its step, so receivers that failed together are not retried in
lock-step, while the schedule still grows and no wait is ever longer than its step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

MINUTE, HOUR = 60.0, 3600.0
DEFAULT_SCHEDULE: tuple[float, ...] = (
    5.0,
    30.0,
    2 * MINUTE,
    10 * MINUTE,
    30 * MINUTE,
    HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    24 * HOUR,
    24 * HOUR,
)
# A wait is between (1 - JITTER) and 1 times its step.
JITTER = 0.2


class RandomSource(Protocol):
    """Anything with ``random()`` in [0, 1): the ``random`` module or a seeded ``Random``."""

    def random(self) -> float: ...


def next_attempt_delay(
    attempt_number: int,
    *,
    schedule: Sequence[float] = DEFAULT_SCHEDULE,
    rng: RandomSource = random,
) -> float | None:
    """Return the seconds to wait after failed attempt ``attempt_number`` (the first is 1).

    The wait is ``schedule[attempt_number - 1]`` less up to ``JITTER`` of it; None once the
    schedule is exhausted, meaning the delivery is dead-lettered.
    """
    if attempt_number < 1:
        raise ValueError("attempt numbers start at 1")
    if attempt_number > len(schedule):
        return None
    step = schedule[attempt_number - 1]
    return step * (1.0 - JITTER * rng.random())


def delay_after_failure(
    attempt_number: int,
    *,
    elapsed: float,
    retry_after: float | None = None,
    schedule: Sequence[float] = DEFAULT_SCHEDULE,
    rng: RandomSource = random,
) -> float | None:
    """Return the seconds to wait after a failed attempt, honouring the receiver's Retry-After.

    ``elapsed`` is the seconds since the first attempt. The wait is the longer of the backoff
    and ``retry_after``, but never past the schedule's window (the sum of its steps, counted
    from the first attempt). None means dead-letter: the schedule is exhausted or its window
    has closed; a Retry-After never earns more attempts or more time.
    """
    backoff = next_attempt_delay(attempt_number, schedule=schedule, rng=rng)
    remaining = sum(schedule) - elapsed
    if backoff is None or remaining <= 0:
        return None
    return min(max(backoff, retry_after or 0.0), remaining)
