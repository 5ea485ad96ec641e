"""The typed ``web.AppKey``s through which views reach the app's parts.

Kept apart from :mod:`forwarder.web.app` so views can import the keys without
importing the factory.
"""

from __future__ import annotations

from aiohttp import web

from forwarder.clock import Clock
from forwarder.delivery.deliverer import Deliverer
from forwarder.obs.logs import Redactor
from forwarder.obs.metrics import Metrics
from forwarder.queue import Queue
from forwarder.web.protolog import RateLimiter
from forwarder.web.runtime import Reloader, RuntimeHolder

RUNTIME = web.AppKey("runtime", RuntimeHolder)
QUEUE = web.AppKey("queue", Queue)
METRICS = web.AppKey("metrics", Metrics)
DELIVERER = web.AppKey("deliverer", Deliverer)
RELOADER = web.AppKey("reloader", Reloader)
REDACTOR = web.AppKey("redactor", Redactor)
CLOCK = web.AppKey("clock", Clock)
BODY_TIMEOUT = web.AppKey("body_timeout", float)  # seconds to read a request body
REJECT_LOG_LIMITER = web.AppKey("reject_log_limiter", RateLimiter)  # ingest_rejected lines
