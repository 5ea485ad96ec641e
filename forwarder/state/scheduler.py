"""The alert-state scheduler: the daemon's task that does what falls due without an alert.

Flap releases, auto-resolves and retention happen when no alert arrives, so
something must look at the store when rows fall due. :class:`AlertScheduler`
calls :meth:`AlertStates.tick <forwarder.queue.contract.AlertStates.tick>`,
which claims the due rows in one transaction and queues what they say, then
sleeps (on the injected clock) until the next row is due, at most
:data:`MAX_WAIT` so that rows made due by another replica or by a new put are
seen within a second. The store claims each row once, so every replica may
run its own scheduler against a shared store.

Only ``forwarder run`` starts it (:mod:`forwarder.web.app`); the admin
commands open the store without one. A store error is logged and retried
with a growing pause; it never ends the task, and never the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from forwarder.clock import Clock
from forwarder.model import Identity
from forwarder.obs.logs import Redactor, get_logger
from forwarder.obs.metrics import Metrics
from forwarder.queue.contract import AlertStates, TickResult

_log = get_logger()

# The longest pause between two passes: how late a row made due elsewhere
# (another replica's put, a row whose ``due`` moved) is looked at.
MAX_WAIT: Final = 1.0
# Rows claimed per pass; a pass that hits it runs again at once (``more``).
TICK_LIMIT: Final = 1000
# The pause after a failed pass doubles from FIRST_BACKOFF up to MAX_BACKOFF.
FIRST_BACKOFF: Final = 1.0
MAX_BACKOFF: Final = 30.0
# How long :meth:`AlertScheduler.stop` lets a running pass finish.
STOP_TIMEOUT: Final = 5.0


class AlertScheduler:
    """Runs the store's due work in the background: ``start()``, then ``stop()``.

    ``alerts`` is an open queue's :attr:`~forwarder.queue.contract.Queue.alerts`.
    """

    def __init__(
        self,
        alerts: AlertStates,
        metrics: Metrics,
        clock: Clock,
        *,
        redactor: Redactor | None = None,
        limit: int = TICK_LIMIT,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self._alerts = alerts
        self._metrics = metrics
        self._clock = clock
        self._redactor = redactor if redactor is not None else Redactor()
        self._limit = limit
        self._max_wait = max_wait
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_pass = False
        self.passes = 0  # completed passes, successful or not (for tests and debugging)

    def start(self) -> None:
        """Start the background task (once)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="alert-scheduler")

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the task: at once while it waits, after the running pass otherwise.

        A pass is one store transaction; letting it finish (up to ``timeout``)
        rather than cancelling it keeps its log lines and metrics in step with
        what it committed.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if not self._in_pass:
            task.cancel()
        _, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def run_once(self) -> TickResult:
        """One pass: claim and do the due rows, count and log what was done."""
        self._in_pass = True
        try:
            result = await self._alerts.tick(limit=self._limit)
        finally:
            self._in_pass = False
        self._account(result)
        return result

    async def _run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            try:
                result = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store error (or a bug): log, pause, go on
                self.passes += 1
                backoff = min(max(backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
                _log.warning(
                    "alert_scheduler_failed",
                    error=self._redactor.cut(f"{type(exc).__name__}: {exc}", 300),
                    retry_in=backoff,
                )
                if self._stopping:
                    return
                await self._clock.sleep(backoff)
                continue
            self.passes += 1
            if backoff:
                backoff = 0.0
                _log.info("alert_scheduler_recovered")
            if self._stopping:
                return
            await self._clock.sleep(self._wait(result))

    def _wait(self, result: TickResult) -> float:
        """How long to sleep after ``result``: until the next due row, at most ``max_wait``.

        ``more``: at once (the pass stopped at its limit). A row already due
        that the pass did not do (its alert did not fit the queue) is retried
        after ``max_wait``, not in a busy loop.
        """
        if result.more:
            return 0.0
        if result.next_due is None:
            return self._max_wait
        wait = result.next_due - self._clock.time()
        if wait <= 0:
            did = result.resolved or result.released or result.expired
            return 0.0 if did else self._max_wait
        return min(wait, self._max_wait)

    def _account(self, result: TickResult) -> None:
        """Metrics and log lines of one pass (target names and counts only, no app key)."""
        metrics = self._metrics
        for target, n in result.resolved.items():
            if n:
                metrics.alerts_auto_resolved.labels(target).inc(n)
        for target, n in result.released.items():
            if n:
                metrics.alerts_flap_released.labels(target).inc(n)
        for kind, target, identity in result.sent:
            # One line per alert sent on an identity's behalf: what an on-call
            # engineer greps for when an incident closed by itself.
            event = "alert_auto_resolved" if kind == "resolved" else "alert_flap_released"
            _log.info(event, target=target, check=Identity.from_key(identity).check)
        if result.expired:
            _log.debug("alert_states_expired", count=result.expired)
