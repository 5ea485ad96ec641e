"""Time as the forwarder reads it: a wall clock, a monotonic clock, and sleeping.

Delivery (backoff, linger, rate limits, lease deadlines) reads time only
through a :class:`Clock`, so tests drive it with a fake one and never wait for
real backoffs to pass.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """The three things delivery asks of time."""

    def time(self) -> float:
        """Wall-clock Unix seconds (stored in the queue: lease and retry deadlines)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back (pauses, durations)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
