"""URL table: which view answers which path."""

from __future__ import annotations

from aiohttp import web

from forwarder.web import admin, ingest, probes
from forwarder.web.errors import json_errors


def setup_routes(app: web.Application) -> None:
    """Register every endpoint of the forwarder, and JSON answers for everything else.

    The ingest views answer their own errors; the others are wrapped in
    :func:`json_errors`. A wrong method on a known path gets a JSON 405 naming
    the allowed ones, and any other path a JSON 404.
    """
    app.router.add_post("/kapacitor", ingest.ingest_kapacitor)
    # A trailing slash is the same endpoint (no task): senders' URL fields
    # often end in one.
    app.router.add_post("/kapacitor/", ingest.ingest_kapacitor)
    app.router.add_post("/kapacitor/{task}", ingest.ingest_kapacitor)
    app.router.add_post("/kapacitor/{task}/", ingest.ingest_kapacitor)
    app.router.add_post("/influxdb", ingest.ingest_influxdb)
    app.router.add_post("/influxdb/", ingest.ingest_influxdb)
    app.router.add_get("/-/healthy", json_errors(probes.healthy))
    app.router.add_get("/-/ready", json_errors(probes.ready))
    app.router.add_post("/-/reload", json_errors(admin.reload))
    app.router.add_get("/metrics", json_errors(probes.metrics))
    app.router.add_get("/api/v1/dead-letters", json_errors(admin.list_dead_letters))
    app.router.add_get("/api/v1/dead-letters/{id}", json_errors(admin.show_dead_letter))
    app.router.add_post("/api/v1/dead-letters/replay", json_errors(admin.replay_dead_letters))
    app.router.add_post("/api/v1/dead-letters/purge", json_errors(admin.purge_dead_letters))
    app.router.add_get("/api/v1/alerts", json_errors(admin.list_alerts))
    for resource in list(app.router.resources()):
        assert isinstance(resource, web.Resource)  # plain and dynamic paths only
        allowed = sorted({route.method for route in resource})
        resource.add_route("*", probes.method_not_allowed(allowed))
    # [\s\S], not ".": a path may hold a newline (%0A), and it must still land here.
    app.router.add_route("*", r"/{path:[\s\S]*}", probes.not_found)
