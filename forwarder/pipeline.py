"""The pure part of ingest: decoded body → events → routed, mapped queue items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from forwarder import jsonio
from forwarder.config import Config, iter_route_mappings
from forwarder.ingest import IngestError, parse_influxdb, parse_kapacitor
from forwarder.mapping import Mapper, RenderError
from forwarder.model import Event
from forwarder.queue import Outgoing
from forwarder.routing import route


@dataclass(slots=True)  # not frozen: built once per request on the ingest hot path
class Processed:
    """What one ingest request turns into."""

    events: list[Event]
    items: list[Outgoing]
    truncations: int


class Pipeline:
    """Parsing, routing and mapping for one loaded config (rebuilt on reload)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mapper = Mapper(iter_route_mappings(config))
        # With only the default route there is nothing to decide per event.
        only = config.routes[0] if len(config.routes) == 1 else None
        self._only_route = only if only is not None and only.match is None else None

    def parse(self, source: str, body: Any, *, task: str | None = None) -> list[Event]:
        """Normalise a decoded body from ``source`` (``kapacitor`` or ``influxdb``)."""
        if source == "influxdb":
            return parse_influxdb(body)
        return parse_kapacitor(body, task=task, httppost=self.config.ingest.httppost)

    def map_events(self, events: Sequence[Event]) -> Processed:
        """Route and map every event; a template failure refuses the whole request."""
        items: list[Outgoing] = []
        truncations = 0
        only = self._only_route
        for i, event in enumerate(events):
            r = only if only is not None else route(self.config.routes, event)
            try:
                mapped = self.mapper.map(event, r.mapping)
            except RenderError as exc:
                where = f"event {i}: " if len(events) > 1 else ""
                raise IngestError(f"{where}{exc}", reason="template_error") from None
            except ValueError as exc:  # a field too deeply nested to encode
                where = f"event {i}: " if len(events) > 1 else ""
                raise IngestError(f"{where}{exc}") from None
            truncations += mapped.truncations
            items.append(
                Outgoing(
                    target=r.target,
                    app_key=r.app_key.reveal(),
                    identity=mapped.identity,
                    payload=jsonio.dumps(mapped.alert),
                    timestamp=int(mapped.alert["timestamp"]),
                )
            )
        return Processed(
            events=events if isinstance(events, list) else list(events),
            items=items,
            truncations=truncations,
        )

    def render(self, source: str, body: Any, *, task: str | None = None) -> list[dict[str, Any]]:
        """The alert objects an event would produce, ``app_key`` included but redacted.

        Used by ``forwarder render``; the real app key never leaves the process.
        """
        processed = self.map_events(self.parse(source, body, task=task))
        out: list[dict[str, Any]] = []
        for item in processed.items:
            alert = jsonio.loads(item.payload)
            out.append({"app_key": "<redacted>" if item.app_key else "", **alert})
        return out
