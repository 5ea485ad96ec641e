"""The pure part of ingest: decoded body → events → stages → queue items.

A :class:`Pipeline` is compiled once per config (and again on reload): the
parser registry, then the list of stages the config needs: route → map →
state (the alert-state store decides at the commit; :mod:`.state`). Silences
and enrichment plug in as further stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from forwarder import jsonio
from forwarder.config import Config, iter_route_mappings
from forwarder.ingest import FORMATS
from forwarder.ingest.errors import ParseError
from forwarder.model import Event, Identity
from forwarder.pipeline.mapping import Mapper, MapStage
from forwarder.pipeline.route import RouteStage
from forwarder.pipeline.stage import Stage, Work
from forwarder.pipeline.state import StateStage


class Pipeline:
    """Parsing and the stages for one loaded config (rebuilt on reload).

    Construction compiles every template, so a bad one is a
    :class:`~forwarder.config.ConfigError` at load, naming the key.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mapper = Mapper(iter_route_mappings(config))
        self.stages: tuple[Stage, ...] = (
            RouteStage(config.routes),
            MapStage(self.mapper, config.targets),
            StateStage(),
        )

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

    def render(self, source: str, body: Any, *, task: str | None = None) -> Preview:
        """The alert objects an event would produce, ``app_key`` included but redacted.

        Used by ``forwarder render``; the real app key never leaves the process.
        Alerts BigPanda would refuse come after the others, each with a warning.
        """
        work = self.process(source, body, task=task)
        alerts: list[dict[str, Any]] = []
        for item in [*work.items, *(r.item for r in work.refused)]:
            alert = jsonio.loads(item.payload)
            alerts.append({"app_key": "<redacted>" if item.app_key else "", **alert})
        first = len(work.items)
        warnings = [
            f"alert {first + i} (check {Identity.from_key(r.item.identity).check!r})"
            f" would be refused and dead-lettered ({r.reason}): {r.hint}"
            for i, r in enumerate(work.refused)
        ]
        return Preview(alerts, warnings)


@dataclass(frozen=True, slots=True)
class Preview:
    """What ``forwarder render`` shows: the alerts, and one warning per alert BigPanda refuses."""

    alerts: list[dict[str, Any]]
    warnings: list[str]
