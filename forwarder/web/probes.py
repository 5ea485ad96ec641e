"""Probes and the scrape: liveness, readiness, metrics, and the JSON 404/405 answers.

These paths need no credentials (see :data:`forwarder.web.auth.PUBLIC_PATHS`),
so they show no upstream text: a target's state is flags and the forwarder's
own words (:meth:`forwarder.delivery.health.TargetHealth.public`), and the
queue's error is masked and cut. The details are in the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from forwarder.web.errors import error_response
from forwarder.web.keys import DELIVERER, METRICS, QUEUE, REDACTOR, RUNTIME

# The queue's error text is local (SQLite's, or the database server's), but
# it may name a DSN: masked, and no longer than this on an open endpoint.
_QUEUE_ERROR_LIMIT = 200


def method_not_allowed(allowed: list[str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A view answering 405 with ``Allow``, for the other methods of a known path."""
    allow = ",".join(allowed)

    async def handler(request: web.Request) -> web.Response:
        return error_response(405, "Method Not Allowed", headers={"Allow": allow})

    return handler


async def not_found(request: web.Request) -> web.Response:
    """Any path the forwarder does not serve."""
    return error_response(404, "Not Found")


async def healthy(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "healthy"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: the queue is open and writable, and every target can be sent to.

    Unready (503) while a target refuses our credentials (401/403) or its URL
    redirects (3xx): both need an operator and hold the target. A target being
    rate-limited (429) stays ready: alerts still queue and will be sent, so
    the answer is 200 with a ``warnings`` entry and ``rate_limited`` set.
    """
    queue = request.app[QUEUE]
    deliverer = request.app[DELIVERER]
    redactor = request.app[REDACTOR]
    problems: list[str] = []
    warnings: list[str] = []
    if not queue.is_open:
        problems.append("queue is not open")
    elif queue.last_error:
        problems.append(redactor.cut(queue.last_error, _QUEUE_ERROR_LIMIT))
    for name, health in deliverer.health().items():
        if health.auth_failed:
            problems.append(f"target {name}: BigPanda refused the credentials ({health.reason})")
        elif health.redirected:
            problems.append(f"target {name}: {health.reason}")
        if health.rate_limited_for is not None:
            warnings.append(
                f"target {name}: rate-limited by BigPanda (429); next attempt in"
                f" {health.rate_limited_for:g} s at most"
            )
    body: dict[str, Any] = {"targets": deliverer.describe()}
    if warnings:
        body["warnings"] = warnings
    if problems:
        body.update(status="not ready", error="; ".join(problems))
        return web.json_response(body, status=503)
    body["status"] = "ready"
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; the queue and alert-state collectors read the store first.

    Both count what every replica writes (queued alerts, open and flapping
    identities), so they are read at each scrape rather than kept here.
    """
    m = request.app[METRICS]
    queue = request.app[QUEUE]
    if queue.is_open:
        targets = request.app[RUNTIME].current.config.targets
        await m.queue.refresh(queue.stats, targets)
        await m.alerts.refresh(queue.alerts.counts, targets)
    # The OpenMetrics text format when the scraper asks for it (Prometheus
    # does, in its Accept header), the classic text format otherwise.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(m.registry), headers={"Content-Type": content_type})
