"""A fake :class:`forwarder.clock.Clock`: time moves only when the test moves it.

``advance`` moves wall and monotonic time together and wakes every sleeper
whose deadline has come. ``running(speed)`` moves it in the background at
``speed`` times real time, for end-to-end tests where the sender and a real
HTTP fake both run: backoffs, ``Retry-After`` and linger then take a fraction
of their real length, and the test's assertions read this clock, not the
wall.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator


class FakeClock:
    """Wall and monotonic time under the test's control."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = start
        self._mono = 1_000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleepers that are due."""
        self._wall += seconds
        self._mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    @contextlib.asynccontextmanager
    async def running(self, speed: float = 20.0, tick: float = 0.005) -> AsyncIterator[None]:
        """Advance ``speed`` fake seconds per real second until the block ends."""

        async def drive() -> None:
            while True:
                await asyncio.sleep(tick)
                self.advance(tick * speed)

        task = asyncio.create_task(drive())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
