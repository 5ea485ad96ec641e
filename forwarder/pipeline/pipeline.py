"""The pure part of ingest: decoded body → events → stages → queue items.

A :class:`Pipeline` is compiled once per config (and again on reload): the
parser registry, then the list of stages the config needs. Today that is
route → map; deduplication, flap damping, silences and enrichment plug in as
further stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forwarder import jsonio
from forwarder.config import Config, iter_route_mappings
from forwarder.ingest import FORMATS
from forwarder.ingest.errors import ParseError
from forwarder.model import Event
from forwarder.pipeline.mapping import Mapper, MapStage
from forwarder.pipeline.route import RouteStage
from forwarder.pipeline.stage import Stage, Work


class Pipeline:
    """Parsing and the stages for one loaded config (rebuilt on reload).

    Construction compiles every template, so a bad one is a
    :class:`~forwarder.config.ConfigError` at load, naming the key.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mapper = Mapper(iter_route_mappings(config))
        self.stages: tuple[Stage, ...] = (RouteStage(config.routes), MapStage(self.mapper))

    def parse(self, source: str, body: Any, *, task: str | None = None) -> list[Event]:
        """Normalise a decoded body of format ``source`` (a name in the ingest registry)."""
        parser = FORMATS.get(source)
        if parser is None:
            raise ParseError(f"unknown source {source!r}")
        return parser(body, task=task, config=self.config.ingest)

    def run(self, events: Sequence[Event]) -> Work:
        """Run every stage over ``events``; raises StageError to refuse the request."""
        work = Work(events if isinstance(events, list) else list(events))
        for stage in self.stages:
            stage(work)
        return work

    def process(self, source: str, body: Any, *, task: str | None = None) -> Work:
        """Parse, then run the stages: everything ingest does before the commit."""
        return self.run(self.parse(source, body, task=task))

    def render(self, source: str, body: Any, *, task: str | None = None) -> list[dict[str, Any]]:
        """The alert objects an event would produce, ``app_key`` included but redacted.

        Used by ``forwarder render``; the real app key never leaves the process.
        """
        out: list[dict[str, Any]] = []
        for item in self.process(source, body, task=task).items:
            alert = jsonio.loads(item.payload)
            out.append({"app_key": "<redacted>" if item.app_key else "", **alert})
        return out
