"""The scrape, with the alert-state gauges read from the store first.

``forwarder_alerts_open`` and ``forwarder_alerts_flapping`` count rows of the
alert-state store, which every replica writes, so they are read at each
scrape (like the queue gauges) rather than kept by this process. The rest of
the scrape is :func:`forwarder.web.probes.metrics`.
"""

from __future__ import annotations

from aiohttp import web

from forwarder.web import probes
from forwarder.web.keys import METRICS, QUEUE, RUNTIME


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: refresh the alert gauges, then the exposition as usual."""
    queue = request.app[QUEUE]
    if queue.is_open:
        targets = request.app[RUNTIME].current.config.targets
        await request.app[METRICS].alerts.refresh(queue.alerts.counts, targets)
    return await probes.metrics(request)
