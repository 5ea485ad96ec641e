"""The sender of one target: leases batches from the queue and delivers them.

One :class:`TargetSender` per target runs a loop: wait out any backoff, wait
for a batch to fill or linger out, take a rate-limit token, lease, and hand
the batch to a delivery task (at most ``max_in_flight`` at once). A delivery
ends in exactly one of: acknowledged (deleted from the queue), rescheduled
(retryable failure, with backoff), split (413), or dead-lettered with a
reason. Nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import BatchConfig, RetryConfig, TargetConfig
from forwarder.delivery.health import TargetHealth
from forwarder.delivery.ratelimit import TokenBucket
from forwarder.delivery.retry import (
    Action,
    Verdict,
    backoff,
    classify_exception,
    classify_status,
    parse_retry_after,
)
from forwarder.delivery.transport import LogTransport, Response, Transport
from forwarder.model import Entry
from forwarder.obs.logs import get_logger
from forwarder.obs.metrics import Metrics
from forwarder.queue import Queue

# How often an idle sender looks at the queue without being woken: picks up
# work another process queued (a replay by the CLI, another replica). One
# cheap query.
IDLE_POLL: Final = 1.0


@dataclass(slots=True)
class _Episode:
    """A run of consecutive failures, so a retry storm logs once, not per attempt."""

    started: float = 0.0
    attempts: int = 0
    errors: set[str] = field(default_factory=set)


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
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.batch = batch
        self.retry = retry
        self.queue = queue
        self.transport = transport
        self.metrics = metrics
        self.lease_for = lease_for
        self.health = TargetHealth()
        self.clock = clock
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(cfg.max_in_flight)
        self._bucket = TokenBucket(cfg.rate_limit, cfg.burst, clock=clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._wake = queue.new_work(cfg.name)
        self._pause_until = 0.0  # monotonic
        self._episode: _Episode | None = None
        self._log = get_logger(target=cfg.name)
        self._runner: asyncio.Task[None] | None = None
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
        pause = self._pause_until - clock.monotonic()
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
        """Send one batch: True once settled (delivered or dead-lettered), False if retrying."""
        # BigPanda takes the latest status by timestamp; send oldest first.
        entries = sorted(entries, key=lambda e: e.timestamp)
        started = self.clock.monotonic()
        response: Response | None = None
        error: str | None = None
        try:
            response = await self.transport.send(entries[0].app_key, [e.payload for e in entries])
            verdict = classify_status(response.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            verdict = classify_exception(exc)
            error = _describe(exc)
        code = str(response.status) if response is not None else "0"
        self.metrics.requests.labels(self.name, code).inc()
        self.metrics.request_duration.labels(self.name).observe(self.clock.monotonic() - started)
        self.metrics.batch_size.observe(len(entries))
        status = response.status if response is not None else None
        if error is None and response is not None:
            error = f"HTTP {response.status}: {response.body[:200]}"

        if verdict.action is Action.DONE:
            await self._delivered(entries, status)
            return True
        if verdict.action is Action.SPLIT:
            self.metrics.delivery_failures.labels(self.name, verdict.reason or "clientError").inc()
            if len(entries) > 1:
                mid = len(entries) // 2
                self._log.info("batch_split", count=len(entries), status=status)
                if not await self._send(entries[:mid]):
                    # The older half waits for a retry: sending the newer half now could
                    # deliver a newer state of an alert before an older one. Give its
                    # lease back; the queue holds back identities with a state waiting.
                    await self.queue.release(entries[mid:])
                    return False
                return await self._send(entries[mid:])
            await self._dead_letter(entries, "too_large", status, response, error)
            return True
        if verdict.action is Action.DEAD_LETTER:
            self.metrics.delivery_failures.labels(self.name, verdict.reason or "clientError").inc()
            if verdict.reason == "authError":
                self._auth_failed(status)
            await self._dead_letter(
                entries, verdict.reason or "clientError", status, response, error
            )
            return True
        await self._retry(entries, verdict, status, response, error or "")
        return False

    async def _delivered(self, entries: Sequence[Entry], status: int | None) -> None:
        await self.queue.ack(entries)
        now = self.clock.time()
        self.metrics.alerts_delivered.labels(self.name).inc(len(entries))
        latency = self.metrics.delivery_latency.labels(self.name)
        for e in entries:
            latency.observe(max(0.0, now - e.created))
        if self._episode is not None:
            self._log.info(
                "delivery_recovered",
                attempts=self._episode.attempts,
                outage_seconds=round(self.clock.monotonic() - self._episode.started, 1),
            )
            self._episode = None
        self.health.up = True
        self.health.auth_failed = False
        self.health.consecutive_failures = 0
        self.health.last_error = None
        self.metrics.target_up.labels(self.name).set(1)
        self._log.info(
            "delivered",
            count=len(entries),
            alert_id=entries[0].check,
            alert_ids=[e.check for e in entries],
            attempt=max(e.attempts for e in entries) + 1,
            status=status,
            # A log target "delivers" to the log; say so, so nobody mistakes
            # the 201 for BigPanda's answer.
            **({"dry_run": True} if isinstance(self.transport, LogTransport) else {}),
        )

    async def _retry(
        self,
        entries: Sequence[Entry],
        verdict: Verdict,
        status: int | None,
        response: Response | None,
        error: str,
    ) -> None:
        reason = verdict.reason or "connection"
        self.metrics.delivery_failures.labels(self.name, reason).inc()
        self.health.consecutive_failures += 1
        self.health.up = False
        self.health.last_error = error
        self.metrics.target_up.labels(self.name).set(0)
        delay = backoff(
            self.health.consecutive_failures,
            initial=self.retry.initial,
            maximum=self.retry.max,
            rng=self._rng,
        )
        hinted = parse_retry_after(
            response.retry_after if response else None,
            now=datetime.fromtimestamp(self.clock.time(), UTC),
        )
        if hinted is not None:
            delay = max(delay, min(hinted, self.retry.max_age))
        self._pause_until = max(self._pause_until, self.clock.monotonic() + delay)
        now = self.clock.time()
        expired = [e for e in entries if now - e.created > self.retry.max_age]
        if expired:
            await self._dead_letter(expired, "expired", status, response, error)
        keep = [e for e in entries if now - e.created <= self.retry.max_age]
        if keep:
            await self.queue.retry_later(keep, at=now + delay, error=error)
            self.metrics.retries.labels(self.name).inc(len(keep))
        if self._episode is None:
            self._episode = _Episode(started=self.clock.monotonic())
            self._log.warning(
                "delivery_retrying",
                reason=reason,
                status=status,
                error=error,
                alert_id=entries[0].check,
                count=len(entries),
                attempt=max(e.attempts for e in entries) + 1,
                retry_in=round(delay, 3),
            )
        self._episode.attempts += 1
        if reason not in self._episode.errors and len(self._episode.errors) < 8:
            if self._episode.errors:
                self._log.warning("delivery_retrying_new_error", reason=reason, error=error)
            self._episode.errors.add(reason)

    async def _dead_letter(
        self,
        entries: Sequence[Entry],
        reason: str,
        status: int | None,
        response: Response | None,
        error: str | None,
    ) -> None:
        await self.queue.dead_letter(
            entries,
            reason=reason,
            status=status,
            response=response.body[:1024] if response else None,
            error=error,
        )
        self.metrics.dead_lettered.labels(self.name, reason).inc(len(entries))
        for e in entries:
            self._log.error(
                "dead_lettered",
                alert_id=e.check,
                attempt=e.attempts + 1,
                status=status,
                reason=reason,
                error=error,
            )

    def _auth_failed(self, status: int | None) -> None:
        """401/403: BigPanda refused our credentials; every batch would be refused too.

        The failing batch is dead-lettered (see :mod:`forwarder.retry`), and the
        target pauses for ``retry.max`` so the rest of the queue is not burnt
        into the dead-letter store. A config reload (new token) resumes at once.
        """
        self.health.auth_failed = True
        self.health.up = False
        self.health.last_error = f"HTTP {status}: authentication refused"
        self.metrics.target_up.labels(self.name).set(0)
        self._pause_until = self.clock.monotonic() + self.retry.max
        self._log.error(
            "target_auth_failed",
            status=status,
            pause_seconds=self.retry.max,
            hint="check the token and app key of this target, then reload",
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
