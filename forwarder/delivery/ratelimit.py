"""A token bucket capping requests per second to one target."""

from __future__ import annotations

import asyncio

from forwarder.clock import SYSTEM_CLOCK, Clock


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``acquire`` waits for one.

    Waiting is a sleep sized to the deficit, never a poll, so a throttled
    sender costs no CPU.
    """

    def __init__(self, rate: float, burst: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._sleep = clock.sleep
        self._clock = clock.monotonic
        self._last = self._clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> float:
        """Take a token if there is one and return 0, else return seconds until one is due."""
        self._refill()
        # Float clocks lose precision: 0.4 s at 2.5/s can refill 0.99999999999994
        # tokens, and a femtosecond sleep for the rest would be a wasted wake-up
        # (on a fake clock, an endless loop). A token a nanosecond short is a token.
        if self._tokens >= 1.0 - self.rate * 1e-9:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait until a token is available and take it (callers are served in order)."""
        async with self._lock:
            # A timed sleep sized to the deficit, not a poll: nothing can make
            # tokens arrive sooner than the clock does.
            while (wait := self.try_acquire()) > 0:
                await self._sleep(wait)
