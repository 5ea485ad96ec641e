"""The HTTP edge: app factory, routes, ingest views, admin views, probes, errors and auth."""

from __future__ import annotations

from forwarder.web.app import create_app
from forwarder.web.server import Runner

__all__ = ["Runner", "create_app"]
