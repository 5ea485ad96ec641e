"""The per-target token bucket (forwarder.ratelimit), on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from forwarder.ratelimit import TokenBucket


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_full_bucket_allows_a_burst_then_asks_to_wait() -> None:
    """A new bucket grants ``burst`` requests at once, then names the wait for the next token."""
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.5)


def test_tokens_refill_at_the_rate() -> None:
    """Tokens come back at ``rate`` a second; the named wait shrinks as time passes."""
    clock = FakeClock()
    bucket = TokenBucket(rate=4.0, burst=1, clock=clock)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(0.25)
    clock.advance(0.1)
    assert bucket.try_acquire() == pytest.approx(0.15)
    clock.advance(0.15)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(0.25)


def test_a_refused_attempt_takes_no_token() -> None:
    """Asking while empty does not dig a deeper hole: the wait is the same on every ask."""
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    bucket.try_acquire()
    waits = [bucket.try_acquire() for _ in range(5)]
    assert waits == [pytest.approx(1.0)] * 5


def test_idle_time_saves_up_at_most_burst_tokens() -> None:
    """After a long idle period only ``burst`` requests pass at once, not rate times idle time."""
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=5, clock=clock)
    for _ in range(5):
        bucket.try_acquire()
    clock.advance(3600)
    granted = 0
    while bucket.try_acquire() == 0.0:
        granted += 1
    assert granted == 5


def test_fractional_rates_are_exact() -> None:
    """A caller waiting as told gets ``rate`` a second: 150 a minute at 2.5/s, plus the burst."""
    clock = FakeClock()
    bucket = TokenBucket(rate=2.5, burst=1, clock=clock)
    start = clock.now
    granted = 0
    while clock.now - start < 60.0:  # one simulated minute
        wait = bucket.try_acquire()
        if wait == 0.0:
            granted += 1
        else:
            clock.advance(wait)
    assert granted in (150, 151)


def test_slow_rate_names_a_long_wait() -> None:
    """At 0.2 requests a second the next token is five seconds away."""
    clock = FakeClock()
    bucket = TokenBucket(rate=0.2, burst=1, clock=clock)
    bucket.try_acquire()
    assert bucket.try_acquire() == pytest.approx(5.0)


async def test_acquire_waits_and_serves_callers_in_order() -> None:
    """``acquire`` waits for tokens on the real clock and serves callers in arrival order."""
    bucket = TokenBucket(rate=500.0, burst=1)
    order: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(6)))
    assert order == [0, 1, 2, 3, 4, 5]
    # Every token is spent: the next one is still to come.
    assert bucket.try_acquire() > 0.0
