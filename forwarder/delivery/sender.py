"""The sender of one target: leases batches from the queue and delivers them.

One :class:`TargetSender` per target runs a loop: wait out any backoff, wait
for a batch to fill or linger out, take a rate-limit token, lease, and hand
the batch to a delivery task (at most ``max_in_flight`` at once). A delivery
ends in exactly one of: acknowledged (deleted from the queue), rescheduled
(retryable failure, with backoff), split (413, 400, 422), held (a redirect:
given back to the queue while the target pauses), or dead-lettered with a
reason. Nothing is ever dropped. A log target (dry-run) acknowledges a batch
once it is written to the log: it is not kept for later sending.

The sender decides which of these a batch came to (and splits it itself,
since the halves are sent again); what each outcome does to the queue, the
target's health, metrics and logs is :mod:`forwarder.delivery.outcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Final

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import BatchConfig, RetryConfig, TargetConfig
from forwarder.delivery.health import TargetHealth
from forwarder.delivery.outcome import Outcomes
from forwarder.delivery.ratelimit import TokenBucket
from forwarder.delivery.retry import Action, classify_exception, classify_status
from forwarder.delivery.transport import LogTransport, Response, Transport
from forwarder.model import Entry
from forwarder.obs.logs import get_logger
from forwarder.obs.metrics import Metrics
from forwarder.queue import Queue

# How often an idle sender looks at the queue without being woken: picks up
# work another process queued (a replay by the CLI, another replica). One
# cheap query.
IDLE_POLL: Final = 1.0
# How often a replica that does not send for a target tries to take it over.
# A claim held by a dead replica is released by the database when its session
# ends, so take-over takes at most this long after that.
CLAIM_POLL: Final = 1.0


class TargetSender:
    """Delivers one target's queued alerts in order, with batching, retries and limits."""

    def __init__(
        self,
        cfg: TargetConfig,
        *,
        batch: BatchConfig,
        retry: RetryConfig,
        queue: Queue,
        transport: Transport,
        metrics: Metrics,
        lease_for: float,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        replica: str = "",
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.replica = replica
        self._sending = False  # whether this process holds the target's sender claim
        self.batch = batch
        self.retry = retry
        self.queue = queue
        self.transport = transport
        self.metrics = metrics
        self.lease_for = lease_for
        self.health = TargetHealth()
        self.clock = clock
        self._slots = asyncio.Semaphore(cfg.max_in_flight)
        self._bucket = TokenBucket(cfg.rate_limit, cfg.burst, clock=clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._wake = queue.new_work(cfg.name)
        self._log = get_logger(target=cfg.name)
        self._runner: asyncio.Task[None] | None = None
        self._outcome = Outcomes(
            cfg=cfg,
            retry=retry,
            queue=queue,
            metrics=metrics,
            health=self.health,
            clock=clock,
            rng=rng or random.Random(),
            log=self._log,
        )
        metrics.init_target(cfg.name)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the sending loop."""
        self._runner = asyncio.create_task(self._run(), name=f"sender-{self.name}")

    async def stop(self, timeout: float) -> None:
        """Take no new batches; let deliveries in flight finish within ``timeout``.

        Batches still in flight after that are cancelled and their leases
        given back, so they are sent again by the next sender (or process).
        """
        self._stopping.set()
        self._wake.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._sending:
            with contextlib.suppress(Exception):  # a lost session has released it already
                await self.queue.release_target(self.name)
            self._set_sending(False)
        await self.transport.close()

    # ----------------------------------------------------------------- the loop

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self._slots.acquire()
            entries: list[Entry] | None = None
            try:
                entries = await self._next_batch()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:  # a queue error must not kill the sender
                self._log.error("sender_error", error=repr(exc))
                self._slots.release()
                await self._sleep(IDLE_POLL, wake_on_work=False)
                continue
            if entries is None:
                self._slots.release()
                continue
            task = asyncio.create_task(self._deliver(entries))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _next_batch(self) -> list[Entry] | None:
        """A leased batch ready to send, or None after waiting for something to change."""
        clock = self.clock
        if not await self._claimed():
            await self._sleep(CLAIM_POLL, wake_on_work=False)
            return None
        pause = self._outcome.pause_until - clock.monotonic()
        if pause > 0:
            await self._sleep(pause, wake_on_work=False)
            return None
        self._wake.clear()
        count, oldest = await self.queue.peek(self.name)
        if count == 0:
            await self._sleep(IDLE_POLL, wake_on_work=True)
            return None
        if count < self.batch.max_alerts and oldest is not None:
            linger_left = oldest + self.batch.linger - clock.time()
            if linger_left > 0:
                await self._sleep(linger_left, wake_on_work=True)
                return None
        lease = await self.queue.lease(
            self.name, limit=self.batch.max_alerts, lease_for=self.lease_for
        )
        entries, earliest = lease.entries, lease.next_due
        if not entries:
            wait = IDLE_POLL if earliest is None else min(IDLE_POLL, earliest - clock.time())
            await self._sleep(max(wait, 0.01), wake_on_work=True)
            return None
        try:
            await self._bucket.acquire()
        except asyncio.CancelledError:
            await asyncio.shield(self.queue.release(entries))
            raise
        if self._stopping.is_set():
            await self.queue.release(entries)
            return None
        return entries

    async def _claimed(self) -> bool:
        """Whether this process may send for the target now.

        The rate limit and ``max_in_flight`` are the deployment's, not each
        replica's: one process at a time sends for a target, holding the
        queue's claim on it (always granted by a single-owner backend).
        """
        held = await self.queue.claim_target(self.name)
        if held != self._sending:
            self._set_sending(held)
            if held:
                self._log.info("target_claimed", replica=self.replica)
            else:
                self._log.warning(
                    "target_claim_lost",
                    replica=self.replica,
                    hint="another replica sends for this target until this one takes it back",
                )
        return held

    def _set_sending(self, held: bool) -> None:
        self._sending = held
        self.metrics.target_sending.labels(self.name).set(1 if held else 0)

    async def _sleep(self, seconds: float, *, wake_on_work: bool) -> None:
        """Sleep up to ``seconds``; end early on stop, and on new work if asked."""
        waiters = [
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self.clock.sleep(seconds)),
        ]
        if wake_on_work:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    # ----------------------------------------------------------------- delivery

    async def _deliver(self, entries: list[Entry]) -> None:
        try:
            await self._send(entries)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.queue.release(entries))
            raise
        except Exception as exc:  # bookkeeping failed: leave it to the lease to expire
            self._log.error("delivery_error", error=repr(exc), count=len(entries))
        finally:
            self._slots.release()
            self._wake.set()

    async def _send(self, entries: list[Entry]) -> bool:
        """Send one batch: True once settled (delivered or dead-lettered), False if not yet."""
        # BigPanda takes the latest status by timestamp; send oldest first.
        entries = sorted(entries, key=lambda e: e.timestamp)
        app_key = entries[0].app_key
        outcome = self._outcome
        outcome.mask(app_key)
        logged = isinstance(self.transport, LogTransport)
        started = self.clock.monotonic()
        response: Response | None = None
        failure: Exception | None = None
        try:
            response = await self.transport.send(app_key, [e.payload for e in entries])
            verdict = classify_status(response.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            verdict = classify_exception(exc)
            failure = exc
        error = outcome.answered(entries, response, failure, started=started, logged=logged)
        status = response.status if response is not None else None

        if verdict.action is Action.DONE:
            if logged:
                await outcome.logged(entries)
            else:
                await outcome.delivered(entries, status)
            return True
        if verdict.action is Action.SPLIT:
            self.metrics.delivery_failures.labels(self.name, verdict.reason or "clientError").inc()
            if len(entries) > 1:
                mid = len(entries) // 2
                self._log.info("batch_split", count=len(entries), status=status)
                # Each half is a request like any other: it waits for its token.
                await self._bucket.acquire()
                if not await self._send(entries[:mid]):
                    # The older half waits for a retry: sending the newer half now could
                    # deliver a newer state of an alert before an older one. Give its
                    # lease back; the queue holds back identities with a state waiting.
                    await self.queue.release(entries[mid:])
                    return False
                await self._bucket.acquire()
                return await self._send(entries[mid:])
            reason = "too_large" if status == 413 else verdict.reason or "clientError"
            await outcome.dead_letter(entries, reason, status, response, error)
            return True
        if verdict.action is Action.HOLD:
            self.metrics.delivery_failures.labels(self.name, verdict.reason or "redirect").inc()
            await outcome.redirected(entries, status, response, error)
            return False
        if verdict.action is Action.DEAD_LETTER:
            self.metrics.delivery_failures.labels(self.name, verdict.reason or "clientError").inc()
            if verdict.reason == "authError":
                outcome.auth_failed(status)
            await outcome.dead_letter(
                entries, verdict.reason or "clientError", status, response, error
            )
            return True
        await outcome.retry_later(entries, verdict, status, response, error or "")
        return False
