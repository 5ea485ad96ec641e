"""The deliverer: one sender per configured target, rebuilt on reload."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import Config, TargetConfig
from forwarder.delivery.health import TargetHealth
from forwarder.delivery.sender import TargetSender
from forwarder.delivery.transport import HTTPTransport, LogTransport, Transport
from forwarder.obs.logs import get_logger
from forwarder.obs.metrics import Metrics
from forwarder.obs.replica import replica_id
from forwarder.queue import Queue, QueueUnavailable


class Deliverer:
    """Owns one :class:`TargetSender` per configured target; rebuilt on reload."""

    def __init__(
        self,
        queue: Queue,
        metrics: Metrics,
        *,
        force_dry_run: bool,
        clock: Clock = SYSTEM_CLOCK,
        replica: str | None = None,
    ) -> None:
        self.queue = queue
        self.metrics = metrics
        self.clock = clock
        self.replica = replica_id() if replica is None else replica
        metrics.replica_info.labels(self.replica).set(1)
        self.force_dry_run = force_dry_run
        self.dry_run = force_dry_run
        self.senders: dict[str, TargetSender] = {}
        self._log = get_logger()

    def _transport(self, cfg: TargetConfig) -> Transport:
        if self.dry_run or cfg.kind == "log":
            return LogTransport(cfg.name, self._log)
        return HTTPTransport(cfg)

    async def start(self, config: Config, *, rng: random.Random | None = None) -> None:
        """Start a sender for every target of ``config``.

        Dry-run is decided here, on every (re)load: ``--dry-run``, or BigPanda
        targets without credentials. A reload that adds the credentials starts
        sending; one that removes them goes back to logging.
        """
        self.dry_run = self.force_dry_run or bool(config.unconfigured_targets)
        if self.dry_run:
            self._log.warning(
                "dry_run",
                message="DRY-RUN: alerts are queued, then each batch is written to this log"
                " and removed from the queue; nothing is sent to BigPanda, and nothing is"
                " kept to send later",
                unconfigured_targets=config.unconfigured_targets,
                hint=dry_run_hint(config),
            )
        for name, tcfg in config.targets.items():
            sender = TargetSender(
                tcfg,
                batch=config.batch,
                retry=config.retry,
                queue=self.queue,
                transport=self._transport(tcfg),
                metrics=self.metrics,
                lease_for=config.queue.lease_timeout,
                clock=self.clock,
                rng=rng,
                replica=self.replica,
            )
            self.senders[name] = sender
            sender.start()
        self._log.info("senders_started", replica=self.replica, targets=sorted(self.senders))
        try:
            stats = await self.queue.stats()
        except QueueUnavailable:  # only a hint; the senders run already, and retry by themselves
            return
        for name in sorted(set(stats.targets) - set(config.targets)):
            count = stats.targets[name].events
            if count:
                self._log.warning(
                    "queued_for_unknown_target",
                    target=name,
                    count=count,
                    hint="these alerts wait until a target of this name is configured again",
                )

    async def stop(self, timeout: float) -> None:
        """Stop all senders, waiting up to ``timeout`` for deliveries in flight."""
        senders, self.senders = self.senders, {}
        await asyncio.gather(*(s.stop(timeout) for s in senders.values()))

    async def reconfigure(self, config: Config, *, timeout: float) -> None:
        """Replace the senders with ones built from ``config`` (queued alerts stay)."""
        await self.stop(timeout)
        await self.start(config)

    def health(self) -> Mapping[str, TargetHealth]:
        """Each target's health."""
        return {name: s.health for name, s in self.senders.items()}

    def describe(self) -> dict[str, Any]:
        """Per-target state for the readiness answer: flags and the forwarder's own words."""
        return {name: s.health.public() for name, s in self.senders.items()}


def dry_run_hint(config: Config) -> str:
    """What to change to leave dry-run, naming the keys actually empty in ``config``.

    Each with the environment variable it was read from, when it was
    (``targets.bigpanda.token (from ${BIGPANDA_TOKEN})``).
    """
    empty = config.empty_credentials()
    if empty:
        return "to send to BigPanda, set " + ", ".join(empty)
    return "started with --dry-run; start without it to send to BigPanda"
