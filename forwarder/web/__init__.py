"""The HTTP edge: app factory, routes, ingest views, admin views, probes, errors and auth."""

from __future__ import annotations

from forwarder.web.app import create_app

__all__ = ["create_app"]
