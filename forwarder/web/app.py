"""The application factory: builds the aiohttp app from a config.

Resources live in ``cleanup_ctx``: the queue is opened first and closed
last; the senders start next, then the alert-state scheduler, which stops
first at shutdown (so the senders drain what its last pass queued). State is
reached through the typed ``web.AppKey``s of :mod:`forwarder.web.keys`.
Signals are not handled here but in :mod:`forwarder.cli`, so tests can build
and drive the real app.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import Config
from forwarder.delivery.deliverer import Deliverer
from forwarder.obs.logs import Redactor, get_logger
from forwarder.obs.metrics import Metrics
from forwarder.queue import Queue, create_queue
from forwarder.state.scheduler import AlertScheduler
from forwarder.web.body import BODY_READ_TIMEOUT
from forwarder.web.keys import (
    BODY_TIMEOUT,
    CLOCK,
    DELIVERER,
    METRICS,
    QUEUE,
    REDACTOR,
    REJECT_LOG_LIMITER,
    RELOADER,
    RUNTIME,
)
from forwarder.web.protolog import RateLimiter, protocol_logger
from forwarder.web.routes import setup_routes
from forwarder.web.runtime import Reloader, RuntimeHolder, build_runtime


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    redactor: Redactor | None = None,
    clock: Clock = SYSTEM_CLOCK,
    queue: Queue | None = None,
    dry_run: bool = False,
    body_read_timeout: float = BODY_READ_TIMEOUT,
) -> web.Application:
    """Build the forwarder app for ``config``.

    ``dry_run`` (``--dry-run``) logs batches instead of sending them; without
    it, dry-run still applies while the BigPanda targets have no credentials.
    ``redactor`` is the one the logs were configured with (the CLI passes it),
    so the loaded config's secrets are masked there; ``clock``, ``queue`` and
    ``body_read_timeout`` let tests drive time, storage and the body deadline.

    aiohttp's connection handler is told (``handler_args``) not to inflate
    bodies itself — :mod:`forwarder.web.body` does, bounded, after
    authentication — and to log through :func:`protocol_logger`, one
    rate-limited line per malformed request instead of a traceback. Serve the
    app with :class:`forwarder.web.server.Runner` so that aiohttp's own error
    answers are JSON too.
    """
    redactor = redactor if redactor is not None else Redactor()
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        handler_args={
            "auto_decompress": False,
            "logger": protocol_logger(clock.monotonic, redactor),
        },
    )
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    queue = queue if queue is not None else create_queue(config.queue, clock=clock)
    holder = RuntimeHolder(build_runtime(config))
    deliverer = Deliverer(queue, metrics, force_dry_run=dry_run, clock=clock)
    app[METRICS] = metrics
    app[QUEUE] = queue
    app[RUNTIME] = holder
    app[DELIVERER] = deliverer
    app[REDACTOR] = redactor
    app[CLOCK] = clock
    app[BODY_TIMEOUT] = body_read_timeout
    app[REJECT_LOG_LIMITER] = RateLimiter(clock=clock.monotonic)
    app[RELOADER] = Reloader(
        holder=holder,
        deliverer=deliverer,
        metrics=metrics,
        redactor=redactor,
        path=config.source_path,
    )
    for source in ("kapacitor", "influxdb"):
        metrics.init_source(source)
    metrics.config_loaded(config.digest, time.time())
    redactor.set_secrets(config.secrets())
    setup_routes(app)
    app.cleanup_ctx.append(_queue_ctx)
    app.cleanup_ctx.append(_delivery_ctx)
    app.cleanup_ctx.append(_scheduler_ctx)
    return app


async def _queue_ctx(app: web.Application) -> AsyncIterator[None]:
    queue = app[QUEUE]
    await queue.open()
    stats = await queue.stats()
    get_logger().info(
        "queue_opened", path=queue.description, queued=stats.events, bytes=stats.bytes
    )
    yield
    await queue.close()


async def _delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    deliverer = app[DELIVERER]
    await deliverer.start(app[RUNTIME].current.config)
    yield
    await deliverer.stop(app[RUNTIME].current.config.server.shutdown_timeout)


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """The alert-state scheduler runs while the daemon serves (every replica runs one)."""
    scheduler = AlertScheduler(app[QUEUE].alerts, app[METRICS], app[CLOCK], redactor=app[REDACTOR])
    scheduler.start()
    yield
    await scheduler.stop()
