"""The per-target token bucket (forwarder.delivery.ratelimit), on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from forwarder.delivery.ratelimit import TokenBucket
from tests.fakes.clock import FakeClock


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
    start = clock.monotonic()
    granted = 0
    while clock.monotonic() - start < 60.0:  # one simulated minute
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
    """``acquire`` sleeps on its clock until a token is due and serves callers in arrival order."""
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=1, clock=clock)
    order: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(6)]
    while len(order) < 6:
        await asyncio.sleep(0)  # let every caller queue up or take its token
        if len(order) < 6 and clock.sleepers:
            clock.advance(0.5)  # one token's worth of time
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]
    assert clock.monotonic() == pytest.approx(1_000.0 + 5 * 0.5)
    # Every token is spent: the next one is still to come.
    assert bucket.try_acquire() > 0.0
