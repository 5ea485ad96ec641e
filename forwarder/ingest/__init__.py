"""Ingest formats: pure parsers from a decoded JSON body to :class:`forwarder.model.Event`.

:data:`FORMATS` is the registry: the name of each ingest endpoint's format
and the parser for it. A new format is one module here and one line there
(plus its route in :mod:`forwarder.web.routes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from forwarder.config import IngestConfig
from forwarder.ingest.errors import ParseError
from forwarder.ingest.influxdb import parse_influxdb
from forwarder.ingest.kapacitor import parse_kapacitor
from forwarder.model import Event

__all__ = ["FORMATS", "ParseError", "Parser", "parse_influxdb", "parse_kapacitor"]


class Parser(Protocol):
    """Turns one decoded body into events; raises :class:`ParseError` for bad input."""

    def __call__(self, body: Any, *, task: str | None, config: IngestConfig) -> list[Event]: ...


def _kapacitor(body: Any, *, task: str | None, config: IngestConfig) -> list[Event]:
    return parse_kapacitor(body, task=task, httppost=config.httppost)


def _influxdb(body: Any, *, task: str | None, config: IngestConfig) -> list[Event]:
    return parse_influxdb(body)


FORMATS: Final[Mapping[str, Parser]] = {"kapacitor": _kapacitor, "influxdb": _influxdb}
