"""The application factory: builds the aiohttp app from a config.

Resources live in ``cleanup_ctx`` (the queue is opened before the senders
start and closed after they stop). State is reached through the typed
``web.AppKey``s of :mod:`forwarder.state`. Signals are not handled here but in
:mod:`forwarder.cli`, so tests can build and drive the real app.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from forwarder import logs
from forwarder.config import Config
from forwarder.delivery import Deliverer
from forwarder.metrics import Metrics
from forwarder.queue import SQLiteQueue
from forwarder.routes import setup_routes
from forwarder.state import (
    DELIVERER,
    METRICS,
    QUEUE,
    RELOADER,
    RUNTIME,
    Reloader,
    RuntimeHolder,
    build_runtime,
)


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    dry_run: bool = False,
) -> web.Application:
    """Build the forwarder app for ``config``.

    ``dry_run`` (``--dry-run``) logs batches instead of sending them; without
    it, dry-run still applies while the BigPanda targets have no credentials.
    """
    app = web.Application(client_max_size=config.server.max_body_bytes)
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    queue = SQLiteQueue(config.queue)
    app[METRICS] = metrics
    app[QUEUE] = queue
    app[RUNTIME] = RuntimeHolder(build_runtime(config))
    app[DELIVERER] = Deliverer(queue, metrics, force_dry_run=dry_run)
    app[RELOADER] = Reloader(app, config.source_path)
    for source in ("kapacitor", "influxdb"):
        metrics.init_source(source)
    metrics.config_loaded(config.digest, time.time())
    logs.set_secrets(config.secrets())
    setup_routes(app)
    app.cleanup_ctx.append(_queue_ctx)
    app.cleanup_ctx.append(_delivery_ctx)
    return app


async def _queue_ctx(app: web.Application) -> AsyncIterator[None]:
    queue = app[QUEUE]
    await queue.open()
    count, size, _ = queue.sizes()
    logs.get_logger().info("queue_opened", path=str(queue.path), queued=count, bytes=size)
    yield
    await queue.close()


async def _delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    deliverer = app[DELIVERER]
    deliverer.start(app[RUNTIME].current.config)
    yield
    await deliverer.stop(app[RUNTIME].current.config.server.shutdown_timeout)
