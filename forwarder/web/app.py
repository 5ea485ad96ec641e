"""The application factory: builds the aiohttp app from a config.

Resources live in ``cleanup_ctx`` (the queue is opened before the senders
start and closed after they stop). State is reached through the typed
``web.AppKey``s of :mod:`forwarder.web.keys`. Signals are not handled here but
in :mod:`forwarder.cli`, so tests can build and drive the real app.
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
from forwarder.web.keys import CLOCK, DELIVERER, METRICS, QUEUE, REDACTOR, RELOADER, RUNTIME
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
) -> web.Application:
    """Build the forwarder app for ``config``.

    ``dry_run`` (``--dry-run``) logs batches instead of sending them; without
    it, dry-run still applies while the BigPanda targets have no credentials.
    ``redactor`` is the one the logs were configured with (the CLI passes it),
    so the loaded config's secrets are masked there; ``clock`` and ``queue``
    let tests drive time and storage.
    """
    app = web.Application(client_max_size=config.server.max_body_bytes)
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    redactor = redactor if redactor is not None else Redactor()
    queue = queue if queue is not None else create_queue(config.queue, clock=clock)
    holder = RuntimeHolder(build_runtime(config))
    deliverer = Deliverer(queue, metrics, force_dry_run=dry_run, clock=clock)
    app[METRICS] = metrics
    app[QUEUE] = queue
    app[RUNTIME] = holder
    app[DELIVERER] = deliverer
    app[REDACTOR] = redactor
    app[CLOCK] = clock
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
