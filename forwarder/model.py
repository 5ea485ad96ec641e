"""The normalised event model every ingest format is turned into.

Kapacitor alert-handler bodies, Kapacitor ``httpPost`` rows and InfluxDB 2.x
notification rows all become :class:`Event`, so routing and mapping never need
to know where an alert came from (except through ``source``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Level(enum.StrEnum):
    """Alert levels, as Kapacitor spells them.

    ``UNKNOWN`` stands for any level a source sends that has no Kapacitor
    equivalent (InfluxDB's ``unknown``); the default status map sends it as
    ``critical``, as Kapacitor's and Flux's BigPanda handlers do.
    """

    OK = "OK"
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"


class Source(enum.StrEnum):
    """Which ingest format produced an event."""

    KAPACITOR = "kapacitor"
    HTTPPOST = "httppost"
    INFLUXDB = "influxdb"


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~2 µs an event on the hot path
class Event:
    """One alert state change, independent of the format it arrived in.

    ``time`` is timezone-aware UTC. ``duration`` is in nanoseconds, as Kapacitor
    sends it. ``raw`` is the JSON object the event was parsed from (for alert
    bodies, the whole body; for ``httpPost`` rows, the row as a column map).
    """

    source: Source
    id: str
    message: str
    details: str
    level: Level
    time: datetime
    duration: int = 0
    name: str = ""
    task: str = ""
    group: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    previous_level: Level | None = None
    recoverable: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """The template context: the event fields under their model names."""
        return {
            "source": self.source.value,
            "id": self.id,
            "message": self.message,
            "details": self.details,
            "level": self.level.value,
            "time": self.time,
            "duration": self.duration,
            "name": self.name,
            "task": self.task,
            "group": self.group,
            "tags": self.tags,
            "fields": self.fields,
            "previous_level": self.previous_level.value if self.previous_level else None,
            "recoverable": self.recoverable,
            "raw": self.raw,
        }
