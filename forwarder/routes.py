"""URL table: which view answers which path."""

from __future__ import annotations

from aiohttp import web

from forwarder import views


def setup_routes(app: web.Application) -> None:
    """Register every endpoint of the forwarder."""
    app.router.add_post("/kapacitor", views.ingest_kapacitor)
    app.router.add_post("/kapacitor/{task}", views.ingest_kapacitor)
    app.router.add_post("/influxdb", views.ingest_influxdb)
    app.router.add_get("/-/healthy", views.healthy)
    app.router.add_get("/-/ready", views.ready)
    app.router.add_post("/-/reload", views.reload)
    app.router.add_get("/metrics", views.metrics)
    app.router.add_get("/api/v1/dead-letters", views.list_dead_letters)
    app.router.add_get("/api/v1/dead-letters/{id}", views.show_dead_letter)
    app.router.add_post("/api/v1/dead-letters/replay", views.replay_dead_letters)
    app.router.add_post("/api/v1/dead-letters/purge", views.purge_dead_letters)
