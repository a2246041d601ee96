import random

import pytest

from service.webhooks.schedule import (
    DEFAULT_SCHEDULE,
    JITTER,
    delay_after_failure,
    next_attempt_delay,
)

DAY = 86_400.0
WINDOW = sum(DEFAULT_SCHEDULE)


def test_the_default_schedule_spans_about_three_days() -> None:
    assert WINDOW == 254_555.0
    assert 2.9 * DAY < WINDOW < 3 * DAY
    assert len(DEFAULT_SCHEDULE) == 11  # 12 attempts in all


@pytest.mark.parametrize("seed", range(20))
def test_each_delay_is_its_step_less_at_most_the_jitter(seed: int) -> None:
    rng = random.Random(seed)
    for number, step in enumerate(DEFAULT_SCHEDULE, start=1):
        delay = next_attempt_delay(number, rng=rng)
        assert delay is not None
        assert (1 - JITTER) * step <= delay <= step


def test_delays_grow_until_the_daily_steps() -> None:
    rng = random.Random(7)
    delays = [next_attempt_delay(n, rng=rng) or 0.0 for n in range(1, len(DEFAULT_SCHEDULE) + 1)]
    # Each step is at least 1/(1 - JITTER) times the one before until the two 24 h steps, so
    # jitter can never reorder them.
    assert delays[:10] == sorted(delays[:10])
    assert delays[-1] >= (1 - JITTER) * delays[-2]
    assert (1 - JITTER) * WINDOW <= sum(delays) <= WINDOW


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [next_attempt_delay(n, rng=random.Random(3)) for n in range(1, 12)]
    again = [next_attempt_delay(n, rng=random.Random(3)) for n in range(1, 12)]
    assert first == again


def test_after_the_last_step_the_delivery_is_dead_lettered() -> None:
    assert next_attempt_delay(len(DEFAULT_SCHEDULE), rng=random.Random(1)) is not None
    assert next_attempt_delay(len(DEFAULT_SCHEDULE) + 1, rng=random.Random(1)) is None


def test_another_schedule_can_be_passed() -> None:
    schedule = (1.0, 2.0)
    rng = random.Random(5)
    first = next_attempt_delay(1, schedule=schedule, rng=rng)
    assert first is not None and 0.8 <= first <= 1.0
    assert next_attempt_delay(3, schedule=schedule, rng=rng) is None


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        next_attempt_delay(0)


def test_a_longer_retry_after_is_honoured() -> None:
    delay = delay_after_failure(1, elapsed=0.0, retry_after=600.0, rng=random.Random(1))
    assert delay == 600.0


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    delay = delay_after_failure(4, elapsed=200.0, retry_after=1.0, rng=random.Random(1))
    assert delay is not None and (1 - JITTER) * 600 <= delay <= 600


def test_a_retry_after_never_reaches_past_the_window() -> None:
    elapsed = WINDOW - 3600.0
    delay = delay_after_failure(3, elapsed=elapsed, retry_after=DAY, rng=random.Random(1))
    assert delay == 3600.0


def test_a_retry_after_never_buys_attempts_beyond_the_schedule() -> None:
    assert delay_after_failure(12, elapsed=100.0, retry_after=60.0) is None


def test_once_the_window_has_closed_the_delivery_is_dead_lettered() -> None:
    assert delay_after_failure(2, elapsed=WINDOW, retry_after=None) is None
