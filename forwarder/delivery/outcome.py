"""What a target's answer to a batch does: to the queue, the target's health, metrics and logs.

:class:`~forwarder.delivery.sender.TargetSender` sends a batch and decides
from the verdict what it came to; :class:`Outcomes` carries that out and keeps
the books. A batch is acknowledged (delivered, or written to the log by a log
target), rescheduled with backoff, dead-lettered with a reason, or held (a
redirect gives its lease back). Failures that stop the whole target (a refused
token, a redirect, a 429, a run of retries) set :attr:`Outcomes.pause_until`,
which the sender's loop waits out, and show on the target's
:class:`~forwarder.delivery.health.TargetHealth` for ``/-/ready``.

Kept apart from the sender so the loop reads as the order of sending, and the
bookkeeping of each outcome can be read, and changed, in one place.

Text from upstream (BigPanda's answer, the HTTP client's exception) may echo
the token or carry it in a URL; it is masked, then cut, before it is logged or
kept (:meth:`forwarder.obs.logs.Redactor.cut`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from forwarder.clock import Clock
from forwarder.config import RetryConfig, TargetConfig
from forwarder.delivery.health import TargetHealth
from forwarder.delivery.retry import Verdict, backoff, parse_retry_after
from forwarder.delivery.transport import Response
from forwarder.model import Entry
from forwarder.obs.logs import Redactor
from forwarder.obs.metrics import Metrics
from forwarder.queue import Queue

# What is kept of upstream text: an error line, and a dead letter's response.
ERROR_LIMIT: Final = 200
RESPONSE_LIMIT: Final = 1024
# The failure class in the forwarder's own words, for /-/ready.
_NO_ANSWER: Final = {
    "timeout": "no answer (timeout)",
    "connection": "no answer (connection failed)",
}


@dataclass(slots=True)
class _Episode:
    """A run of consecutive failures, so a retry storm logs once, not per attempt."""

    started: float = 0.0
    attempts: int = 0
    errors: set[str] = field(default_factory=set)


# No repr: ``_echoable`` holds the target's secrets in the clear.
@dataclass(kw_only=True, eq=False, repr=False)
class Outcomes:
    """One target's bookkeeping of what its batches came to; one per sender.

    ``health`` is the sender's own :class:`TargetHealth` (what ``/-/ready``
    reports), updated in place.
    """

    cfg: TargetConfig
    retry: RetryConfig
    queue: Queue
    metrics: Metrics
    health: TargetHealth
    clock: Clock
    rng: random.Random
    log: Any
    # Monotonic time before which the target sends nothing (backoff, a
    # refused token, a redirect). The sender's loop waits it out.
    pause_until: float = 0.0
    name: str = field(init=False)
    _episode: _Episode | None = field(default=None, init=False)
    # Masks what this target could echo back: its token and app keys (the
    # route app keys are added as batches carry them), and by shape any
    # credential in a URL or an Authorization value.
    _redactor: Redactor = field(default_factory=Redactor, init=False)
    _echoable: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.cfg.name
        self._echoable = {self.cfg.token.reveal(), self.cfg.app_key.reveal()}
        self._redactor.set_secrets(self._echoable)

    def mask(self, app_key: str) -> None:
        """Mask ``app_key`` in upstream text from now on: a route's key is sent, so can echo."""
        if app_key not in self._echoable:
            self._echoable.add(app_key)
            self._redactor.set_secrets(self._echoable)

    def answered(
        self,
        entries: Sequence[Entry],
        response: Response | None,
        failure: Exception | None,
        *,
        started: float,
        logged: bool,
    ) -> str | None:
        """Count the request; return its answer as masked, cut error text for the log.

        The text is ``HTTP <status>[: <body>]`` for an answer, or ``failure``
        (the exception) when none came. ``started`` is the monotonic time the
        request began; ``logged`` says the target is a log target, which makes
        no HTTP request to count. A 429 sets the rate-limit gauge later (in
        :meth:`retry_later`); anything else, no answer included, clears it here.
        """
        error: str | None = None
        if failure is not None:
            error = self._redactor.cut(_describe(failure), ERROR_LIMIT)
        if not logged:  # no HTTP request was made for a log target
            code = str(response.status) if response is not None else "0"
            self.metrics.requests.labels(self.name, code).inc()
            self.metrics.request_duration.labels(self.name).observe(
                self.clock.monotonic() - started
            )
        self.metrics.batch_size.observe(len(entries))
        status = response.status if response is not None else None
        if response is not None:
            error = f"HTTP {response.status}"
            if response.body:
                error += ": " + self._redactor.cut(
                    response.body, ERROR_LIMIT, already_cut=response.truncated
                )
            if response.body_error:
                # The status line decides; the body is only reported.
                self.log.warning(
                    "response_body_unreadable",
                    status=status,
                    count=len(entries),
                    error=self._redactor.cut(response.body_error, ERROR_LIMIT),
                )
        if status != 429:
            self._not_rate_limited()
        return error

    async def delivered(self, entries: Sequence[Entry], status: int | None) -> None:
        """BigPanda took the batch: it leaves the queue, and any failure episode ends."""
        await self.queue.ack(entries)
        now = self.clock.time()
        self.metrics.alerts_delivered.labels(self.name).inc(len(entries))
        latency = self.metrics.delivery_latency.labels(self.name)
        for e in entries:
            latency.observe(max(0.0, now - e.created))
        if self._episode is not None:
            self.log.info(
                "delivery_recovered",
                attempts=self._episode.attempts,
                outage_seconds=round(self.clock.monotonic() - self._episode.started, 1),
            )
            self._episode = None
        self.health.recovered()
        self.metrics.target_up.labels(self.name).set(1)
        self.log.info(
            "delivered",
            count=len(entries),
            alert_id=entries[0].check,
            alert_ids=[e.check for e in entries],
            attempt=max(e.attempts for e in entries) + 1,
            status=status,
        )

    async def logged(self, entries: Sequence[Entry]) -> None:
        """A log target wrote the batch to the log: it leaves the queue, and is not sent later."""
        await self.queue.ack(entries)
        self.metrics.alerts_logged.labels(self.name).inc(len(entries))
        self.log.info(
            "dry_run_logged",
            count=len(entries),
            alert_id=entries[0].check,
            alert_ids=[e.check for e in entries],
            kept=False,
            message="batch written to this log (dry_run_batch); not sent to BigPanda,"
            " not kept for later sending",
        )

    async def retry_later(
        self,
        entries: Sequence[Entry],
        verdict: Verdict,
        status: int | None,
        response: Response | None,
        error: str,
    ) -> None:
        """A retryable failure: back off the target, reschedule the batch, log once per episode.

        Alerts older than ``retry.max_age`` are dead-lettered as ``expired``
        instead of being tried again.
        """
        reason = verdict.reason or "connection"
        self.metrics.delivery_failures.labels(self.name, reason).inc()
        self.health.consecutive_failures += 1
        self.health.up = False
        self.health.last_error = error
        self.health.reason = (
            f"HTTP {status}" if status is not None else _NO_ANSWER.get(reason, "no answer")
        )
        self.metrics.target_up.labels(self.name).set(0)
        delay = backoff(
            self.health.consecutive_failures,
            initial=self.retry.initial,
            maximum=self.retry.max,
            rng=self.rng,
        )
        hinted = parse_retry_after(
            response.retry_after if response else None,
            now=datetime.fromtimestamp(self.clock.time(), UTC),
        )
        if hinted is not None:
            # Capped at retry.max: a Retry-After of a day must not stall the
            # target for a day (the operator's bound on any wait wins).
            delay = max(delay, min(hinted, self.retry.max))
        if status == 429:
            self._rate_limited(delay, hinted)
        self.pause_until = max(self.pause_until, self.clock.monotonic() + delay)
        now = self.clock.time()
        expired = [e for e in entries if now - e.created > self.retry.max_age]
        if expired:
            await self.dead_letter(expired, "expired", status, response, error)
        keep = [e for e in entries if now - e.created <= self.retry.max_age]
        if keep:
            await self.queue.retry_later(keep, at=now + delay, error=error)
            self.metrics.retries.labels(self.name).inc(len(keep))
        if self._episode is None:
            self._episode = _Episode(started=self.clock.monotonic())
            self.log.warning(
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
                self.log.warning("delivery_retrying_new_error", reason=reason, error=error)
            self._episode.errors.add(reason)

    async def dead_letter(
        self,
        entries: Sequence[Entry],
        reason: str,
        status: int | None,
        response: Response | None,
        error: str | None,
    ) -> None:
        """Move the batch to the dead-letter store with its reason and BigPanda's answer, masked."""
        kept = None
        if response is not None:
            kept = self._redactor.cut(response.body, RESPONSE_LIMIT, already_cut=response.truncated)
        await self.queue.dead_letter(
            entries, reason=reason, status=status, response=kept, error=error
        )
        self.metrics.dead_lettered.labels(self.name, reason).inc(len(entries))
        for e in entries:
            self.log.error(
                "dead_lettered",
                alert_id=e.check,
                attempt=e.attempts + 1,
                status=status,
                reason=reason,
                error=error,
            )

    def auth_failed(self, status: int | None) -> None:
        """401/403: BigPanda refused our credentials; every batch would be refused too.

        The failing batch is dead-lettered (see :mod:`forwarder.delivery.retry`),
        and the target pauses for ``retry.max`` so the rest of the queue is not
        burnt into the dead-letter store. A config reload (new token) resumes at once.
        """
        self.health.auth_failed = True
        self.health.up = False
        self.health.last_error = self.health.reason = f"HTTP {status}: authentication refused"
        self.metrics.target_up.labels(self.name).set(0)
        self.pause_until = self.clock.monotonic() + self.retry.max
        self.log.error(
            "target_auth_failed",
            status=status,
            pause_seconds=self.retry.max,
            hint="check the token and app key of this target, then reload",
        )

    async def redirected(
        self,
        entries: Sequence[Entry],
        status: int | None,
        response: Response | None,
        error: str | None,
    ) -> None:
        """3xx: the target URL has moved. Hold everything; an operator must fix the URL.

        The redirect is not followed (the token would go to the new URL). Like
        a refused token it is a config problem, so the target pauses for
        ``retry.max`` and is unready, but the batch is not at fault: its lease
        is given back, nothing is dead-lettered, and a reload with the right
        URL sends it at once.
        """
        location = response.location if response is not None else None
        shown = self._redactor.cut(location, ERROR_LIMIT) if location else None
        self.health.up = False
        self.health.redirect_to = shown or ""
        self.health.last_error = error
        self.health.reason = (
            f"the target URL redirects to {shown}"
            if shown
            else f"the target URL answers HTTP {status}, a redirect without a Location"
        )
        self.metrics.target_up.labels(self.name).set(0)
        self.pause_until = max(self.pause_until, self.clock.monotonic() + self.retry.max)
        await self.queue.release(entries)
        self.log.error(
            "target_redirects",
            status=status,
            location=shown,
            count=len(entries),
            pause_seconds=self.retry.max,
            hint="the redirect is not followed, so the token stays here; set the target's url"
            " to the right endpoint and reload. Alerts stay queued meanwhile",
        )

    def _rate_limited(self, delay: float, hinted: float | None) -> None:
        """429: show it (metric, readiness, one log line per spell) while the target waits."""
        first = self.health.rate_limited_for is None
        self.health.rate_limited_for = round(delay, 3)
        self.metrics.target_rate_limited.labels(self.name).set(1)
        if first:
            self.log.warning(
                "target_rate_limited",
                retry_after=hinted,
                wait_seconds=round(delay, 3),
                capped=hinted is not None and hinted > self.retry.max,
                hint="BigPanda is throttling this target; lower rate_limit or raise"
                " batch.max_alerts",
            )

    def _not_rate_limited(self) -> None:
        if self.health.rate_limited_for is not None:
            self.health.rate_limited_for = None
            self.metrics.target_rate_limited.labels(self.name).set(0)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
