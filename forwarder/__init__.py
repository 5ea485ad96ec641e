"""forwarder: a durable alert forwarder from Kapacitor and InfluxDB 2.x to BigPanda."""

from __future__ import annotations

__version__ = "0.1.0"
