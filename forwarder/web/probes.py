"""Probes and the scrape: liveness, readiness, metrics, and the JSON 404/405 answers.

These paths need no credentials (see :data:`forwarder.web.auth.PUBLIC_PATHS`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from forwarder.web.errors import error_response
from forwarder.web.keys import DELIVERER, METRICS, QUEUE, RUNTIME


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
    """Readiness: the queue is open and writable, and no target is refusing our credentials."""
    queue = request.app[QUEUE]
    deliverer = request.app[DELIVERER]
    problems: list[str] = []
    if not queue.is_open:
        problems.append("queue is not open")
    elif queue.last_error:
        problems.append(queue.last_error)
    for name, health in deliverer.health().items():
        if health.auth_failed:
            problems.append(
                f"target {name}: BigPanda refused the credentials ({health.last_error})"
            )
    body: dict[str, Any] = {"targets": deliverer.describe()}
    if problems:
        body.update(status="not ready", error="; ".join(problems))
        return web.json_response(body, status=503)
    body["status"] = "ready"
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; the queue collector reads the store first."""
    m = request.app[METRICS]
    queue = request.app[QUEUE]
    if queue.is_open:
        await m.queue.refresh(queue.stats, request.app[RUNTIME].current.config.targets)
    body = generate_latest(m.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
