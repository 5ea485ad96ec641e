"""Ingest formats: pure parsers from a decoded JSON body to :class:`forwarder.model.Event`."""

from __future__ import annotations

from forwarder.ingest.errors import IngestError
from forwarder.ingest.influxdb import parse_influxdb
from forwarder.ingest.kapacitor import parse_kapacitor

__all__ = ["IngestError", "parse_influxdb", "parse_kapacitor"]
